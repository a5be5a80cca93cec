//! Shared presence: what other nodes report, merged into this node's rooms, and what this
//! node keeps for them.

use super::*;
use crate::cluster::{Gap, Heard, NodeId, NodePresence, Seat};
use crate::hub::directory::UNTOLD_IDLE_ROOMS;

const EXPIRY: Duration = Duration::from_secs(30);

fn shared() -> (Hub, RoomName) {
    hub_with(HubSettings {
        share_presence: true,
        ..HubSettings::default()
    })
}

fn seat(room: &str, user: &UserId, n: &str) -> Seat {
    Seat {
        room: RoomName::parse(room).unwrap(),
        user: user.clone(),
        name: name(n),
    }
}

#[test]
fn presence_and_the_room_list_are_the_union_over_nodes() {
    let (hub, room) = shared();
    let alice = UserId::generate();
    let mut here = join(&hub, &room, alice.clone(), name("alice")).unwrap();
    drain(&mut here);
    let other = NodeId::generate();
    hub.hear(Heard::Whole(NodePresence {
        node: other.clone(),
        seq: 1,
        expiry: EXPIRY,
        seats: vec![
            seat("general", &UserId::generate(), "bob"),
            // Alice has a tab there too: she counts once, under her name here.
            seat("general", &alice, "alice-there"),
            seat("design", &UserId::generate(), "carol"),
        ],
    }))
    .unwrap();
    assert_eq!(hub.present(&room), [name("alice"), name("bob")]);
    let counts: Vec<(String, usize)> = hub
        .room_counts()
        .into_iter()
        .map(|c| (c.room.to_string(), c.online))
        .collect();
    assert_eq!(counts, [("general".into(), 2), ("design".into(), 1)]);
    hub.tick(Instant::now() + Duration::from_secs(1));
    let update = drain(&mut here);
    assert!(
        update.contains(">bob<") && !update.contains("alice-there"),
        "{update}"
    );
    assert!(update.contains(r#"<nav id="rooms""#), "{update}");

    // The other node stops: its users go at once.
    hub.hear(Heard::Left { node: other }).unwrap();
    assert_eq!(hub.present(&room), [name("alice")]);
    assert_eq!(
        hub.room_counts().len(),
        1,
        "design is no room of the store's"
    );
}

#[test]
fn local_presence_changes_are_taken_once_per_room() {
    let (hub, room) = shared();
    let alice = UserId::generate();
    let one = join(&hub, &room, alice.clone(), name("alice")).unwrap();
    let _two = join(&hub, &room, alice.clone(), name("alice")).unwrap();
    assert_eq!(
        hub.take_presence().unwrap(),
        [(room.clone(), vec![(alice.clone(), name("alice"))])]
    );
    assert!(hub.take_presence().unwrap().is_empty(), "taken");
    hub.leave(&room, one.id);
    assert!(
        hub.take_presence().unwrap().is_empty(),
        "a second tab leaving changes nothing"
    );
    hub.rename(&alice, &name("al"));
    assert_eq!(
        hub.take_presence().unwrap(),
        [(room.clone(), vec![(alice.clone(), name("al"))])]
    );
    assert_eq!(hub.take_signals().renamed, [(alice, name("al"))]);
    assert_eq!(hub.all_seats().len(), 1);

    // Without shared presence, nothing is kept for other nodes.
    let (alone, room) = hub_with(HubSettings::default());
    let _bob = join(&alone, &room, UserId::generate(), name("bob")).unwrap();
    alone.rename(&UserId::generate(), &name("x"));
    assert!(alone.take_presence().unwrap().is_empty());
    assert!(alone.take_signals().is_empty());
}

#[test]
fn an_empty_room_is_kept_until_the_other_nodes_heard_it_emptied() {
    let hub = Hub::new(HubSettings {
        share_presence: true,
        idle_rooms: 0,
        ..HubSettings::default()
    });
    let design = RoomName::parse("design").unwrap();
    hub.load(&design, &[], false);
    let bob = UserId::generate();
    let member = join(&hub, &design, bob, name("bob")).unwrap();
    drop(hub.take_presence());
    hub.leave(&design, member.id);
    assert!(hub.is_loaded(&design), "its departure is untold");
    assert_eq!(hub.take_presence().unwrap(), [(design.clone(), Vec::new())]);
    hub.load(&RoomName::parse("other").unwrap(), &[], false);
    assert!(
        !hub.is_loaded(&design),
        "told: forgotten like any idle room"
    );
}

#[test]
fn empty_rooms_waiting_to_be_told_are_bounded_and_then_everything_is_told_afresh() {
    let hub = Hub::new(HubSettings {
        share_presence: true,
        idle_rooms: 2,
        ..HubSettings::default()
    });
    // Visitors come and go through many rooms while nobody takes the news.
    for i in 0..UNTOLD_IDLE_ROOMS + 10 {
        let room = RoomName::parse(&format!("r{i}")).unwrap();
        hub.load(&room, &[], false);
        let member = join(&hub, &room, UserId::generate(), name("x")).unwrap();
        hub.leave(&room, member.id);
    }
    assert!(hub.stats().rooms_loaded <= 2 + UNTOLD_IDLE_ROOMS + 1);
    assert_eq!(hub.take_presence(), None, "lost: tell everything");
    assert!(hub.all_seats().is_empty());
    assert_eq!(
        hub.take_presence(),
        Some(Vec::new()),
        "told afresh, nothing untold"
    );
}

#[tokio::test]
async fn typing_on_another_node_is_shown_here_and_ends_with_its_typist() {
    tokio::time::pause();
    let (hub, room) = shared();
    let mut bob = join(&hub, &room, UserId::generate(), name("bob")).unwrap();
    drain(&mut bob);
    let (other, carol) = (NodeId::generate(), UserId::generate());
    hub.hear(Heard::Whole(NodePresence {
        node: other.clone(),
        seq: 1,
        expiry: EXPIRY,
        seats: vec![seat("general", &carol, "carol")],
    }))
    .unwrap();
    // Someone no node reported present does not type here.
    let ghost = seat("general", &UserId::generate(), "ghost");
    hub.hear(Heard::Typing(vec![ghost])).unwrap();
    assert!(!drain(&mut bob).contains("ghost"));
    hub.hear(Heard::Typing(vec![seat("general", &carol, "carol")]))
        .unwrap();
    assert!(drain(&mut bob).contains(">carol is typing…<"));
    // Her node reports her gone: her typing goes with her.
    hub.hear(Heard::Changes {
        node: other.clone(),
        seq: 2,
        changes: vec![crate::cluster::Change::Gone {
            room: room.clone(),
            user: carol.clone(),
        }],
    })
    .unwrap();
    assert!(drain(&mut bob).contains(r#"<p id="typing" class="typing" hx-swap-oob="true"></p>"#));

    // Typing elsewhere also expires here, and is not told back to the others.
    hub.hear(Heard::Changes {
        node: other,
        seq: 3,
        changes: vec![crate::cluster::Change::Here(seat(
            "general", &carol, "carol",
        ))],
    })
    .unwrap();
    hub.hear(Heard::Typing(vec![seat("general", &carol, "carol")]))
        .unwrap();
    assert!(drain(&mut bob).contains(">carol is typing…<"));
    hub.tick(Instant::now() + hub.settings().typing_expiry);
    assert!(drain(&mut bob).contains(r#"<p id="typing" class="typing" hx-swap-oob="true"></p>"#));
    assert!(hub.take_signals().typing.is_empty());
}

#[tokio::test]
async fn local_typing_is_told_to_the_other_nodes_as_throttled() {
    tokio::time::pause();
    let (hub, room) = shared();
    let alice = join(&hub, &room, UserId::generate(), name("alice")).unwrap();
    let now = Instant::now();
    hub.typing(&room, alice.id, now);
    hub.typing(&room, alice.id, now + Duration::from_millis(500));
    let typing = hub.take_signals().typing;
    assert_eq!(typing.len(), 1, "throttled");
    assert_eq!(typing[0].name, name("alice"));
}

/// Whether the broker would wake up now.
async fn has_news(hub: &Hub) -> bool {
    tokio::time::timeout(Duration::ZERO, hub.news())
        .await
        .is_ok()
}

#[tokio::test]
async fn every_local_presence_change_wakes_the_broker() {
    let (hub, room) = shared();
    assert!(!has_news(&hub).await);
    let alice = UserId::generate();
    let member = join(&hub, &room, alice.clone(), name("alice")).unwrap();
    assert!(has_news(&hub).await, "a join");
    assert!(!has_news(&hub).await, "one wake-up per news");
    hub.rename(&alice, &name("al"));
    assert!(has_news(&hub).await, "a rename");
    hub.hear(Heard::Renamed(vec![(alice.clone(), name("al2"))]))
        .unwrap();
    assert!(
        has_news(&hub).await,
        "a rename from another node changes presence here"
    );
    hub.typing(&room, member.id, Instant::now());
    assert!(has_news(&hub).await, "typing");
    hub.leave(&room, member.id);
    assert!(has_news(&hub).await, "a departure");

    let (alone, room) = hub_with(HubSettings::default());
    let member = join(&alone, &room, UserId::generate(), name("bob")).unwrap();
    alone.leave(&room, member.id);
    assert!(!has_news(&alone).await, "alone, nobody to tell");
}

#[test]
fn a_rename_on_another_node_renames_the_sessions_here() {
    let (hub, room) = shared();
    let alice = UserId::generate();
    let member = join(&hub, &room, alice.clone(), name("alice")).unwrap();
    drop(hub.take_presence());
    hub.hear(Heard::Renamed(vec![(alice.clone(), name("al"))]))
        .unwrap();
    assert_eq!(hub.name_of(&room, member.id), Some(name("al")));
    assert_eq!(
        hub.take_presence().unwrap(),
        [(room, vec![(alice, name("al"))])]
    );
    assert!(hub.take_signals().renamed.is_empty(), "not told back");
}

#[tokio::test]
async fn a_silent_nodes_users_leave_at_the_tick_after_the_expiry() {
    tokio::time::pause();
    let (hub, room) = shared();
    let start = Instant::now();
    let other = NodeId::generate();
    hub.hear(Heard::Whole(NodePresence {
        node: other.clone(),
        seq: 4,
        expiry: EXPIRY,
        seats: vec![seat("general", &UserId::generate(), "bob")],
    }))
    .unwrap();
    assert_eq!(
        hub.hear(Heard::Alive {
            node: other.clone(),
            seq: 5,
            expiry: EXPIRY / 2,
        }),
        Err(Gap),
        "a report was missed: read the whole again"
    );
    // The heartbeat renewed the node, under the expiry it asks for now.
    let expiry = EXPIRY / 2;
    hub.tick(start + expiry - Duration::from_millis(1));
    assert_eq!(hub.present(&room), [name("bob")]);
    hub.tick(start + expiry);
    assert!(hub.present(&room).is_empty());
    assert!(
        hub.metrics().encode().contains("hubbub_cluster_nodes 0"),
        "{}",
        hub.metrics().encode()
    );
}

#[test]
fn a_sign_out_closes_the_sockets_of_the_sessions_it_names_and_is_told_once() {
    use crate::domain::{SessionToken, SignOut};
    let (hub, room) = shared();
    let alice = UserId::generate();
    let (phone, laptop) = (
        SessionToken::generate().unwrap().tag(),
        SessionToken::generate().unwrap().tag(),
    );
    let on_phone = join(&hub, &room, alice.clone(), name("alice")).unwrap();
    let on_laptop = join(&hub, &room, alice.clone(), name("alice")).unwrap();
    let as_guest = join(&hub, &room, UserId::generate(), name("guest")).unwrap();
    let checked = tokio::time::Instant::now();
    hub.signed_in(
        on_phone.id,
        (&alice, phone),
        checked,
        &on_phone.outbox.outlet,
    );
    hub.signed_in(
        on_laptop.id,
        (&alice, laptop),
        checked,
        &on_laptop.outbox.outlet,
    );

    // Heard from another node: the phone's socket closes, for that reason; nothing is
    // told back.
    hub.hear(Heard::SignedOut(vec![SignOut::One {
        user: alice.clone(),
        tag: phone,
    }]))
    .unwrap();
    assert!(on_phone.evicted());
    assert!(!on_laptop.evicted() && !as_guest.evicted());
    assert!(hub.signed_in_closing(on_phone.id));
    assert!(hub.take_signals().signed_out.is_empty(), "not told back");

    // Made here: the laptop is kept (a password change there), and the other nodes hear.
    let keep = SignOut::All {
        user: alice.clone(),
        keep: Some(laptop),
    };
    assert_eq!(hub.sign_out(keep.clone()), 0);
    assert_eq!(hub.take_signals().signed_out, [keep]);
    let everywhere = SignOut::All {
        user: alice.clone(),
        keep: None,
    };
    assert_eq!(hub.sign_out(everywhere), 1);
    assert!(on_laptop.evicted() && !as_guest.evicted());
    assert!(hub.signed_in_closing(on_laptop.id));
    assert!(!hub.signed_in_closing(as_guest.id));

    // A socket checked before a sign-out and registered after it closes at once; one
    // whose session was checked after it (a new sign-in) stays.
    let late = join(&hub, &room, alice.clone(), name("alice")).unwrap();
    hub.signed_in(late.id, (&alice, phone), checked, &late.outbox.outlet);
    assert!(late.evicted());
    let again = join(&hub, &room, alice.clone(), name("alice")).unwrap();
    let fresh = SessionToken::generate().unwrap().tag();
    hub.signed_in(
        again.id,
        (&alice, fresh),
        tokio::time::Instant::now(),
        &again.outbox.outlet,
    );
    assert!(!again.evicted());
    assert!(
        !hub.signed_in_closing(again.id),
        "closing for another reason"
    );
}
