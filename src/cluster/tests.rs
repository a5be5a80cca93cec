use std::collections::BTreeSet;

use tokio::time::Instant;

use super::*;

fn room(name: &str) -> RoomName {
    RoomName::parse(name).unwrap()
}

fn name(n: &str) -> DisplayName {
    DisplayName::parse(n).unwrap()
}

fn seat(r: &str, user: &UserId, n: &str) -> Seat {
    Seat {
        room: room(r),
        user: user.clone(),
        name: name(n),
    }
}

const EXPIRY: Duration = Duration::from_secs(30);

fn whole(node: &NodeId, seq: u64, seats: Vec<Seat>) -> NodePresence {
    NodePresence {
        node: node.clone(),
        seq,
        expiry: EXPIRY,
        seats,
    }
}

/// A node's whole presence with one user in `general`.
fn in_general(node: &NodeId, seq: u64, user: &UserId, n: &str) -> NodePresence {
    whole(node, seq, vec![seat("general", user, n)])
}

fn names_in(remote: &Remote, r: &str) -> Vec<String> {
    let mut names: Vec<String> = remote
        .room(&room(r))
        .map(|users| users.values().map(|e| e.name.to_string()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn node_ids_are_sixteen_hex_digits_and_parse_back() {
    let id = NodeId::generate();
    assert_eq!(NodeId::parse(id.as_str()), Some(id.clone()));
    assert_ne!(NodeId::generate(), id);
    for bad in [
        "",
        "0123456789abcdeF",
        "0123456789abcde",
        "0123456789abcdef0",
        "../x",
    ] {
        assert_eq!(NodeId::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn the_union_counts_a_user_on_two_nodes_once_and_keeps_them_until_both_let_go() {
    let now = Instant::now();
    let (a, b) = (NodeId::generate(), NodeId::generate());
    let (alice, bob) = (UserId::generate(), UserId::generate());
    let mut remote = Remote::default();
    let mut touched = BTreeSet::new();
    remote.replace(in_general(&a, 1, &alice, "alice"), now, &mut touched);
    remote.replace(
        whole(
            &b,
            7,
            vec![
                seat("general", &alice, "alice"),
                seat("design", &bob, "bob"),
            ],
        ),
        now,
        &mut touched,
    );
    assert_eq!(touched, BTreeSet::from([room("general"), room("design")]));
    assert_eq!(names_in(&remote, "general"), ["alice"]);

    touched.clear();
    let gone = Change::Gone {
        room: room("general"),
        user: alice.clone(),
    };
    remote
        .apply(&a, 2, vec![gone.clone()], now, &mut touched)
        .unwrap();
    assert_eq!(names_in(&remote, "general"), ["alice"], "still on b");
    remote.apply(&b, 8, vec![gone], now, &mut touched).unwrap();
    assert_eq!(names_in(&remote, "general"), Vec::<String>::new());
    assert_eq!(remote.rooms().collect::<Vec<_>>(), [&room("design")]);
    assert_eq!(remote.nodes(), 2);
}

#[test]
fn reports_apply_in_order_once_and_a_missing_one_is_a_gap() {
    let now = Instant::now();
    let a = NodeId::generate();
    let alice = UserId::generate();
    let mut remote = Remote::default();
    let mut touched = BTreeSet::new();
    let here = |n: &str| vec![Change::Here(seat("general", &alice, n))];

    assert_eq!(
        remote.apply(&a, 1, here("alice"), now, &mut touched),
        Err(Gap),
        "unknown"
    );
    assert_eq!(remote.alive(&a, 1, EXPIRY, now), Err(Gap));
    remote.replace(whole(&a, 3, Vec::new()), now, &mut touched);
    assert_eq!(remote.apply(&a, 3, here("old"), now, &mut touched), Ok(()));
    assert!(
        remote.room(&room("general")).is_none(),
        "report 3 is in the whole"
    );
    remote
        .apply(&a, 4, here("alice"), now, &mut touched)
        .unwrap();
    remote
        .apply(&a, 5, here("alice2"), now, &mut touched)
        .unwrap();
    assert_eq!(names_in(&remote, "general"), ["alice2"], "a rename");
    assert_eq!(remote.apply(&a, 7, here("x"), now, &mut touched), Err(Gap));
    assert_eq!(
        names_in(&remote, "general"),
        ["alice2"],
        "a gap changes nothing"
    );
    assert_eq!(remote.alive(&a, 5, EXPIRY, now), Ok(()));
    assert_eq!(remote.alive(&a, 6, EXPIRY, now), Err(Gap));

    // The whole, read after the gap, replaces it; an older whole is ignored.
    remote.replace(
        whole(&a, 7, vec![seat("design", &alice, "al")]),
        now,
        &mut touched,
    );
    assert_eq!(names_in(&remote, "general"), Vec::<String>::new());
    assert_eq!(names_in(&remote, "design"), ["al"]);
    remote.replace(whole(&a, 6, Vec::new()), now, &mut touched);
    assert_eq!(names_in(&remote, "design"), ["al"]);
}

#[test]
fn silent_nodes_expire_and_replacing_everyone_forgets_the_unlisted() {
    let start = Instant::now();
    let (a, b) = (NodeId::generate(), NodeId::generate());
    let (alice, bob) = (UserId::generate(), UserId::generate());
    let mut remote = Remote::default();
    let mut touched = BTreeSet::new();
    remote.replace(in_general(&a, 1, &alice, "alice"), start, &mut touched);
    remote.replace(in_general(&b, 1, &bob, "bob"), start, &mut touched);
    let later = start + Duration::from_secs(20);
    remote.alive(&b, 1, EXPIRY, later).unwrap();
    assert_eq!(
        remote.expire(start + Duration::from_secs(29), &mut touched),
        0
    );
    touched.clear();
    assert_eq!(
        remote.expire(start + Duration::from_secs(30), &mut touched),
        1
    );
    assert_eq!(touched, BTreeSet::from([room("general")]));
    assert_eq!(names_in(&remote, "general"), ["bob"]);

    remote.replace(in_general(&a, 1, &alice, "alice"), later, &mut touched);
    remote.replace_all(vec![whole(&a, 2, Vec::new())], later, &mut touched);
    assert_eq!(remote.nodes(), 1);
    assert!(remote.room(&room("general")).is_none());
}

#[test]
fn a_user_on_two_nodes_under_two_names_keeps_the_name_of_the_node_that_still_has_them() {
    let now = Instant::now();
    let (a, b) = (NodeId::generate(), NodeId::generate());
    let alice = UserId::generate();
    let mut remote = Remote::default();
    let mut touched = BTreeSet::new();
    remote.replace(in_general(&a, 1, &alice, "alice"), now, &mut touched);
    remote.replace(in_general(&b, 1, &alice, "al"), now, &mut touched);
    assert_eq!(names_in(&remote, "general"), ["al"], "the latest report's");
    let gone = Change::Gone {
        room: room("general"),
        user: alice.clone(),
    };
    remote.apply(&b, 2, vec![gone], now, &mut touched).unwrap();
    assert_eq!(
        names_in(&remote, "general"),
        ["alice"],
        "a's, which still has her"
    );
}

#[test]
fn no_more_nodes_than_the_cap_are_kept() {
    let now = Instant::now();
    let mut remote = Remote::default();
    let mut touched = BTreeSet::new();
    for _ in 0..MAX_NODES + 3 {
        let node = NodeId::generate();
        remote.replace(whole(&node, 1, Vec::new()), now, &mut touched);
    }
    assert_eq!(remote.nodes(), MAX_NODES);
}

#[test]
fn a_node_cannot_report_more_users_than_the_cap() {
    let now = Instant::now();
    let a = NodeId::generate();
    let mut remote = Remote::default();
    let mut touched = BTreeSet::new();
    let seats: Vec<Seat> = (0..MAX_SEATS_PER_NODE + 5)
        .map(|_| seat("general", &UserId::generate(), "x"))
        .collect();
    let first = seats[0].clone();
    remote.replace(whole(&a, 1, seats), now, &mut touched);
    assert_eq!(
        remote.room(&room("general")).unwrap().len(),
        MAX_SEATS_PER_NODE
    );
    // Leaving makes room again.
    let gone = Change::Gone {
        room: first.room.clone(),
        user: first.user.clone(),
    };
    let newcomer = seat("design", &UserId::generate(), "new");
    remote
        .apply(&a, 2, vec![gone, Change::Here(newcomer)], now, &mut touched)
        .unwrap();
    assert_eq!(names_in(&remote, "design"), ["new"]);
}

#[test]
fn published_sends_only_the_difference() {
    let (alice, bob, carol) = (UserId::generate(), UserId::generate(), UserId::generate());
    let general = room("general");
    let mut told = Published::default();
    told.reset(&[
        seat("general", &alice, "alice"),
        seat("general", &bob, "bob"),
    ]);

    let changes = told.diff(
        &general,
        vec![
            (alice.clone(), name("alice")),
            (bob.clone(), name("robert")),
            (carol.clone(), name("carol")),
        ],
    );
    assert_eq!(changes.len(), 2);
    assert!(changes.contains(&Change::Here(seat("general", &bob, "robert"))));
    assert!(changes.contains(&Change::Here(seat("general", &carol, "carol"))));

    assert_eq!(
        told.diff(&general, vec![(carol.clone(), name("carol"))])
            .len(),
        2
    );
    assert_eq!(
        told.diff(&general, Vec::new()),
        [Change::Gone {
            room: general.clone(),
            user: carol
        }]
    );
    assert!(told.diff(&general, Vec::new()).is_empty());
}
