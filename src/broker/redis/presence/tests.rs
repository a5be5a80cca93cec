use redis::Value;

use super::format::{Body, decode};
use super::*;
use crate::cluster::Read;
use crate::cluster::{Change, Heard, NodePresence, Seat};
use crate::domain::{DisplayName, RoomName, SessionToken, SignOut, UserId};

fn link() -> PresenceLink {
    PresenceLink::new(
        "test",
        Duration::from_secs(30),
        Hub::new(crate::hub::HubSettings::default()),
        Arc::new(Metrics::new()),
    )
}

#[test]
fn every_kind_round_trips() {
    let link = link();
    let alice = UserId::generate();
    let general = RoomName::general();
    let tag = SessionToken::generate().unwrap().tag();
    let cases = [
        (
            Body::Alive {
                seq: 3,
                expiry_ms: 2500,
            },
            Heard::Alive {
                node: link.node.clone(),
                seq: 3,
                expiry: Duration::from_millis(2500),
            },
        ),
        (
            Body::Changes {
                seq: 4,
                here: vec![("general".into(), alice.to_string(), "alice <b>".into())],
                gone: vec![("general".into(), alice.to_string())],
            },
            Heard::Changes {
                node: link.node.clone(),
                seq: 4,
                changes: vec![
                    Change::Here(Seat {
                        room: general.clone(),
                        user: alice.clone(),
                        name: DisplayName::parse("alice <b>").unwrap(),
                    }),
                    Change::Gone {
                        room: general.clone(),
                        user: alice.clone(),
                    },
                ],
            },
        ),
        (
            Body::Left {},
            Heard::Left {
                node: link.node.clone(),
            },
        ),
        (
            Body::Renamed {
                users: vec![(alice.to_string(), "al".into())],
            },
            Heard::Renamed(vec![(alice.clone(), DisplayName::parse("al").unwrap())]),
        ),
        (
            Body::Read {
                reads: vec![(alice.to_string(), "general".into(), 3, 1)],
            },
            Heard::Read(vec![Read {
                user: alice.clone(),
                room: general.clone(),
                unread: 3,
                mentions: 1,
            }]),
        ),
        (
            Body::SignedOut {
                ends: vec![
                    (alice.to_string(), "one".into(), tag.to_string()),
                    (alice.to_string(), "all".into(), tag.to_string()),
                    (alice.to_string(), "all".into(), String::new()),
                ],
            },
            Heard::SignedOut(vec![
                SignOut::One {
                    user: alice.clone(),
                    tag,
                },
                SignOut::All {
                    user: alice.clone(),
                    keep: Some(tag),
                },
                SignOut::All {
                    user: alice.clone(),
                    keep: None,
                },
            ]),
        ),
    ];
    for (body, heard) in cases {
        let (node, decoded) = decode(&link.encode(body)).unwrap();
        assert_eq!(node, link.node);
        assert_eq!(decoded, heard);
    }
}

#[test]
fn broken_or_hostile_reports_are_refused_not_panics() {
    let link = link();
    let alice = UserId::generate();
    let good = String::from_utf8(link.encode(Body::Typing {
        seats: vec![("general".into(), alice.to_string(), "alice".into())],
    }))
    .unwrap();
    assert!(decode(good.as_bytes()).is_ok(), "{good}");
    let node = link.node.as_str();
    let cases = [
        String::new(),
        "null".to_owned(),
        "[]".to_owned(),
        good.replace(r#""v":1"#, r#""v":2"#),
        good.replace(node, "../../etc"),
        good.replace(r#""kind":"typing""#, r#""kind":"shout""#),
        good.replace(r#""general""#, r#""General""#),
        good.replace(r#""general""#, r#""a b""#),
        good.replace(&alice.to_string(), "not-a-user"),
        good.replace(r#""alice""#, r#""""#),
        good.replace(r#""alice""#, r#"" alice""#),
        good.replace(r#""alice""#, r#""ali\u202ece""#),
        good.replace(r#""alice""#, &format!("\"{}\"", "x".repeat(33))),
        format!(r#"{{"v":1,"node":"{node}","kind":"changes","seq":-1,"here":[],"gone":[]}}"#),
        format!(
            r#"{{"v":1,"node":"{node}","kind":"changes","seq":1,"here":[["general"]],"gone":[]}}"#
        ),
        format!(r#"{{"v":1,"node":"{node}","kind":"alive"}}"#),
    ];
    for payload in cases {
        assert!(decode(payload.as_bytes()).is_err(), "{payload}");
    }
    assert!(decode(&[0xff, 0xfe]).is_err());
}

#[test]
fn broken_or_hostile_reads_and_sign_outs_are_refused() {
    let link = link();
    let node = link.node.as_str();
    let alice = UserId::generate();
    let tag = SessionToken::generate().unwrap().tag();
    let read = |body: &str| format!(r#"{{"v":1,"node":"{node}","kind":"read","reads":[{body}]}}"#);
    let out =
        |body: &str| format!(r#"{{"v":1,"node":"{node}","kind":"signed_out","ends":[{body}]}}"#);
    assert!(decode(read(&format!(r#"["{alice}","general",2,1]"#)).as_bytes()).is_ok());
    assert!(decode(out(&format!(r#"["{alice}","one","{tag}"]"#)).as_bytes()).is_ok());
    let cases = [
        read(&format!(r#"["{alice}","general",2,3]"#)),
        read(&format!(r#"["{alice}","general",100001,0]"#)),
        read(&format!(r#"["{alice}","general",-1,0]"#)),
        read(&format!(r#"["{alice}","General",2,1]"#)),
        read(&format!(r#"["{alice}","general",2]"#)),
        read(r#"["nobody","general",2,1]"#),
        out(&format!(r#"["{alice}","one",""]"#)),
        out(&format!(r#"["{alice}","one","0000000000000000"]"#)),
        out(&format!(r#"["{alice}","some","{tag}"]"#)),
        out(&format!(
            r#"["{alice}","all","{}"]"#,
            tag.to_string().to_uppercase()
        )),
        out(&format!(r#"["{alice}","all"]"#)),
        out(r#"["nobody","all",""]"#),
    ];
    for payload in cases {
        assert!(decode(payload.as_bytes()).is_err(), "{payload}");
    }
}

#[test]
fn a_hash_is_read_as_a_node_writes_it_and_bad_fields_are_skipped() {
    let link = link();
    let node = NodeId::generate();
    let alice = UserId::generate();
    let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
    let good = [
        (bulk("seq"), bulk("12")),
        (bulk("expiry"), bulk("30000")),
        (bulk(&format!("general {alice}")), bulk("alice")),
    ];
    let mut entries = good.to_vec();
    entries.extend([
        (bulk("general"), bulk("no user")),
        (bulk(&format!("General {alice}")), bulk("alice")),
        (bulk(&format!("design {alice}")), bulk("")),
        (Value::BulkString(vec![0xff]), bulk("x")),
    ]);
    let whole = link.whole(node.clone(), &Value::Map(entries)).unwrap();
    assert_eq!(
        whole,
        NodePresence {
            node: node.clone(),
            seq: 12,
            expiry: Duration::from_secs(30),
            seats: vec![Seat {
                room: RoomName::general(),
                user: alice.clone(),
                name: DisplayName::parse("alice").unwrap(),
            }],
        }
    );
    // Three bad fields (the one that is not text is not even a pair), counted once.
    assert!(
        link.metrics
            .encode()
            .contains("hubbub_broker_payloads_malformed_total 1")
    );

    assert_eq!(
        link.whole(node.clone(), &Value::Map(Vec::new())),
        None,
        "gone"
    );
    // The same as a flat array (RESP2), and without its number or with a bad expiry.
    let flat: Vec<Value> = good
        .iter()
        .flat_map(|(k, v)| [k.clone(), v.clone()])
        .collect();
    assert!(
        link.whole(node.clone(), &Value::Array(flat.clone()))
            .is_some()
    );
    assert_eq!(
        link.whole(node.clone(), &Value::Array(flat[2..].to_vec())),
        None
    );
    let mut short = flat;
    short[3] = bulk("10");
    assert_eq!(link.whole(node, &Value::Array(short)), None, "10 ms");
}
