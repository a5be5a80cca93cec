//! The hub's own tests: rooms, fan-out, presence and typing on one node, driven through
//! detached outlets (no sockets) so each frame a member would get can be read back.

mod cluster;
mod fanout;

use std::collections::VecDeque;

use time::OffsetDateTime;

use super::*;
use crate::domain::MessageText;

fn stored(id: u64, room: &str, author: &str, text: &str) -> ChatMessage {
    ChatMessage {
        id,
        seq: id,
        room: RoomName::parse(room).unwrap(),
        author: DisplayName::parse(author).unwrap(),
        author_id: None,
        guest: false,
        sent_at: OffsetDateTime::now_utc(),
        text: MessageText::parse(text, 100).unwrap().unwrap(),
        edited: false,
        deleted: false,
        reactions: Vec::new(),
        reply: None,
    }
}

fn name(n: &str) -> DisplayName {
    DisplayName::parse(n).unwrap()
}

fn hub_with(settings: HubSettings) -> (Hub, RoomName) {
    let hub = Hub::new(settings);
    let room = RoomName::general();
    hub.load(&room, &[], false);
    (hub, room)
}

/// A frame as the hub offered it, read back from a detached outlet.
struct Received(bytes::Bytes);

impl Received {
    fn as_str(&self) -> &str {
        std::str::from_utf8(hubbub_wire::unmasked_payload(&self.0)).unwrap()
    }
}

/// What the tests get back from joining: the membership and its outlet's queue.
struct Joined {
    id: SessionId,
    outbox: Outbox,
}

impl Joined {
    /// Whether the hub told this session to end for being evicted (too slow, banned or
    /// signed out).
    fn evicted(&self) -> bool {
        self.outbox.outlet.ending() == Some(crate::outlet::Ending::Evicted)
    }
}

struct Outbox {
    outlet: Arc<Outlet>,
    received: VecDeque<bytes::Bytes>,
}

impl Outbox {
    fn try_recv(&mut self) -> Result<Received, ()> {
        self.received.extend(self.outlet.take_queued());
        self.received.pop_front().map(Received).ok_or(())
    }
}

fn join(hub: &Hub, room: &RoomName, user: UserId, name: DisplayName) -> Result<Joined, NotLoaded> {
    let outlet = Arc::new(Outlet::detached(hub.settings().send_queue));
    let membership = hub.join(room, user, name, Arc::clone(&outlet))?;
    Ok(Joined {
        id: membership.id,
        outbox: Outbox {
            outlet,
            received: VecDeque::new(),
        },
    })
}

fn drain(joined: &mut Joined) -> String {
    let mut all = String::new();
    while let Ok(frame) = joined.outbox.try_recv() {
        all.push_str(frame.as_str());
    }
    all
}

#[test]
fn joining_an_unloaded_room_is_refused() {
    let hub = Hub::new(HubSettings::default());
    let design = RoomName::parse("design").unwrap();
    assert_eq!(
        join(&hub, &design, UserId::generate(), name("a")).err(),
        Some(NotLoaded(design))
    );
}

#[test]
fn a_newcomer_gets_history_presence_and_rooms_in_one_frame_then_live_messages() {
    let (hub, room) = hub_with(HubSettings {
        history_limit: 2,
        ..HubSettings::default()
    });
    hub.deliver(&[
        stored(1, "general", "a", "one"),
        stored(2, "general", "a", "two"),
        stored(3, "general", "a", "three"),
    ]);
    let mut member = join(&hub, &room, UserId::generate(), name("bob")).unwrap();
    let first = member.outbox.try_recv().unwrap();
    let first = first.as_str();
    assert!(first.contains(r#"hx-swap-oob="innerHTML""#) && !first.contains(">one<"));
    assert!(first.contains("before=2"), "older messages can be loaded");
    assert!(first.contains(r#"<section id="presence""#) && first.contains(r#"<nav id="rooms""#));
    assert!(member.outbox.try_recv().is_err(), "one frame");

    hub.deliver(&[
        stored(4, "general", "a", "four"),
        stored(5, "design", "a", "elsewhere"),
    ]);
    let live = drain(&mut member);
    assert!(live.contains(">four<") && !live.contains("elsewhere"));
}

#[test]
fn every_member_gets_the_same_bytes() {
    let (hub, room) = hub_with(HubSettings::default());
    let mut a = join(&hub, &room, UserId::generate(), name("a")).unwrap();
    let mut b = join(&hub, &room, UserId::generate(), name("b")).unwrap();
    drain(&mut a);
    drain(&mut b);
    hub.deliver(&[stored(1, "general", "a", "shared")]);
    let from_a = a.outbox.try_recv().unwrap();
    let from_b = b.outbox.try_recv().unwrap();
    assert_eq!(
        from_a.as_str().as_ptr(),
        from_b.as_str().as_ptr(),
        "one render, shared"
    );
}

#[test]
fn guests_who_share_a_name_are_listed_apart() {
    let (hub, room) = hub_with(HubSettings::default());
    let (sam, other_sam) = (UserId::generate(), UserId::generate());
    let _one = join(&hub, &room, sam.clone(), name("sam")).unwrap();
    let _two = join(&hub, &room, other_sam.clone(), name("sam")).unwrap();
    let _bob = join(&hub, &room, UserId::generate(), name("bob")).unwrap();
    let (listed, total) = hub.presence_list(&room);
    assert_eq!(total, 3);
    let shown: Vec<(String, Option<String>)> = listed
        .into_iter()
        .map(|l| (l.name.to_string(), l.guest_mark))
        .collect();
    let mut sams = [sam, other_sam];
    sams.sort();
    assert_eq!(
        shown,
        [
            ("bob".to_owned(), None),
            ("sam".to_owned(), Some(sams[0].guest_mark())),
            ("sam".to_owned(), Some(sams[1].guest_mark())),
        ]
    );

    // The twin of the last name shown is among those not shown.
    let (hub, room) = hub_with(HubSettings::default());
    let mut keep = Vec::new();
    for i in 0..render::PRESENCE_SHOWN {
        keep.push(join(&hub, &room, UserId::generate(), name(&format!("a{i:03}"))).unwrap());
    }
    keep.push(join(&hub, &room, UserId::generate(), name("a099")).unwrap());
    let (listed, total) = hub.presence_list(&room);
    assert_eq!((listed.len(), total), (render::PRESENCE_SHOWN, 101));
    let last = listed.last().unwrap();
    assert_eq!(last.name, name("a099"));
    assert!(last.guest_mark.is_some(), "{last:?}");
    assert!(listed[..98].iter().all(|l| l.guest_mark.is_none()));
}

#[test]
fn presence_is_per_user_and_tabs_count_once() {
    let (hub, room) = hub_with(HubSettings::default());
    let alice = UserId::generate();
    let one = join(&hub, &room, alice.clone(), name("alice")).unwrap();
    let two = join(&hub, &room, alice.clone(), name("alice")).unwrap();
    let _bob = join(&hub, &room, UserId::generate(), name("bob")).unwrap();
    assert_eq!(hub.present(&room), [name("alice"), name("bob")]);
    assert_eq!(hub.room_counts()[0].online, 2);
    hub.leave(&room, one.id);
    assert_eq!(hub.present(&room).len(), 2, "alice still has a tab open");
    hub.leave(&room, two.id);
    assert_eq!(hub.present(&room), [name("bob")]);
    hub.rename(&UserId::generate(), &name("nobody"));
    assert_eq!(hub.present(&room), [name("bob")]);
}

#[tokio::test]
async fn typing_is_throttled_hidden_from_the_typist_and_expires() {
    tokio::time::pause();
    let settings = HubSettings {
        typing_throttle: Duration::from_secs(2),
        typing_expiry: Duration::from_secs(5),
        ..HubSettings::default()
    };
    let (hub, room) = hub_with(settings);
    let mut alice = join(&hub, &room, UserId::generate(), name("alice")).unwrap();
    let mut bob = join(&hub, &room, UserId::generate(), name("bob")).unwrap();
    drain(&mut alice);
    drain(&mut bob);

    let start = Instant::now();
    hub.typing(&room, alice.id, start);
    assert!(drain(&mut bob).contains(">alice is typing…<"));
    assert!(
        !drain(&mut alice).contains("alice is typing"),
        "not to herself"
    );

    hub.typing(&room, alice.id, start + Duration::from_secs(1));
    assert_eq!(drain(&mut bob), "", "throttled");
    hub.typing(&room, alice.id, start + Duration::from_secs(3));
    assert!(
        drain(&mut bob).contains("alice is typing"),
        "announced again after the throttle"
    );

    hub.tick(start + Duration::from_secs(7));
    assert!(
        !drain(&mut bob).contains(r#"id="typing""#),
        "renewed at 3 s, so nothing expires at 7 s"
    );
    hub.tick(start + Duration::from_secs(8) + Duration::from_millis(1));
    let expired = drain(&mut bob);
    assert!(
        expired.contains(r#"<p id="typing" class="typing" hx-swap-oob="true"></p>"#),
        "{expired}"
    );
}

#[test]
fn a_full_outbox_evicts_without_blocking_the_others() {
    let (hub, room) = hub_with(HubSettings {
        send_queue: 2,
        ..HubSettings::default()
    });
    let slow = join(&hub, &room, UserId::generate(), name("slow")).unwrap(); // holds its first frame
    let mut fast = join(&hub, &room, UserId::generate(), name("fast")).unwrap();
    for i in 0..5 {
        drain(&mut fast);
        hub.deliver(&[stored(i, "general", "a", &format!("m{i}"))]);
    }
    assert!(slow.evicted());
    assert!(!fast.evicted());
    let stats = hub.stats();
    assert_eq!(
        (stats.connected, stats.slow_evictions, stats.messages_posted),
        (1, 1, 5)
    );
}

#[test]
fn an_evicted_user_leaves_presence_and_the_counts_at_once() {
    let (hub, room) = hub_with(HubSettings {
        send_queue: 2,
        ..HubSettings::default()
    });
    let _slow = join(&hub, &room, UserId::generate(), name("slow")).unwrap();
    let mut fast = join(&hub, &room, UserId::generate(), name("fast")).unwrap();
    for i in 0..3 {
        drain(&mut fast);
        hub.deliver(&[stored(i, "general", "a", "m")]);
    }
    assert_eq!(hub.stats().slow_evictions, 1);
    assert_eq!(hub.present(&room), [name("fast")]);
    assert_eq!(hub.room_counts()[0].online, 1);
    hub.tick(Instant::now());
    let sent = drain(&mut fast);
    assert!(
        sent.contains(r#"<section id="presence""#) && !sent.contains(">slow<"),
        "{sent}"
    );
}

#[tokio::test]
async fn no_typist_ever_sees_their_own_name() {
    tokio::time::pause();
    let (hub, room) = hub_with(HubSettings::default());
    let mut alice = join(&hub, &room, UserId::generate(), name("alice")).unwrap();
    let mut bob = join(&hub, &room, UserId::generate(), name("bob")).unwrap();
    let mut carol = join(&hub, &room, UserId::generate(), name("carol")).unwrap();
    let now = Instant::now();
    hub.typing(&room, alice.id, now);
    hub.typing(&room, bob.id, now);
    assert!(drain(&mut carol).contains(">alice and bob are typing…<"));
    assert!(!drain(&mut alice).contains("alice and") && !drain(&mut bob).contains("and bob"));

    // Bob's message ends his typing; Alice, still typing, must not see herself.
    hub.deliver(&[stored(1, "general", "bob", "hi")]);
    let to_alice = drain(&mut alice);
    assert!(
        to_alice.contains(r#"<p id="typing" class="typing" hx-swap-oob="true"></p>"#),
        "{to_alice}"
    );
    assert!(drain(&mut carol).contains(">alice is typing…<"));
    assert!(drain(&mut bob).contains(">alice is typing…<"));
}

#[test]
fn loading_many_rooms_nobody_joins_stays_bounded() {
    let hub = Hub::new(HubSettings {
        idle_rooms: 5,
        ..HubSettings::default()
    });
    for i in 0..50 {
        hub.load(
            &RoomName::parse(&format!("visited-{i}")).unwrap(),
            &[],
            false,
        );
    }
    assert!(hub.stats().rooms_loaded <= 5, "{:?}", hub.stats());
}

#[test]
fn idle_rooms_leave_memory_beyond_the_limit() {
    let hub = Hub::new(HubSettings {
        idle_rooms: 1,
        ..HubSettings::default()
    });
    for room in ["a", "b", "c"] {
        let room = RoomName::parse(room).unwrap();
        hub.load(&room, &[], false);
        let member = join(&hub, &room, UserId::generate(), name("x")).unwrap();
        hub.leave(&room, member.id);
    }
    assert_eq!(hub.stats().rooms_loaded, 1);
}

#[test]
fn a_join_that_leaves_the_listed_names_as_they_are_sends_only_the_count() {
    let (hub, room) = hub_with(HubSettings::default());
    // Far enough apart for the status pace of a 100-member room (10 ms).
    let mut clock = Instant::now();
    let mut later = || {
        clock += Duration::from_secs(1);
        clock
    };
    let mut first = join(&hub, &room, UserId::generate(), name("a000")).unwrap();
    let _others: Vec<Joined> = (1..render::PRESENCE_SHOWN)
        .map(|i| join(&hub, &room, UserId::generate(), name(&format!("a{i:03}"))).unwrap())
        .collect();
    hub.tick(later());
    assert!(drain(&mut first).contains(r#"<section id="presence""#));

    // Sorts after the hundred names shown: only the count changes.
    let _late = join(&hub, &room, UserId::generate(), name("zed")).unwrap();
    hub.tick(later());
    let update = drain(&mut first);
    assert!(!update.contains("<section"), "{update}");
    assert!(
        update.contains(r#"<span id="presence-count" class="count" hx-swap-oob="true">101</span>"#)
            && update.contains(">and 1 more<"),
        "{update}"
    );

    // Sorts among them: the whole list again.
    let _early = join(&hub, &room, UserId::generate(), name("a")).unwrap();
    hub.tick(later());
    let update = drain(&mut first);
    assert!(update.contains(r#"<section id="presence""#), "{update}");
    assert!(
        update.contains(">a</span>") && !update.contains(">a099<"),
        "{update}"
    );
    assert!(update.contains(">and 2 more<"), "{update}");
}

#[test]
fn status_updates_are_paced_by_room_size() {
    let (hub, room) = hub_with(HubSettings::default());
    let mut watcher = join(&hub, &room, UserId::generate(), name("watcher")).unwrap();
    let _crowd: Vec<Joined> = (0..999)
        .map(|i| join(&hub, &room, UserId::generate(), name(&format!("u{i:03}"))).unwrap())
        .collect();
    let start = Instant::now();
    hub.tick(start);
    drain(&mut watcher);

    // 1,000 members: at most one status update per 100 ms.
    let _late = join(&hub, &room, UserId::generate(), name("late")).unwrap();
    hub.tick(start + Duration::from_millis(50));
    assert_eq!(drain(&mut watcher), "", "too soon after the last update");
    hub.tick(start + Duration::from_millis(101));
    let update = drain(&mut watcher);
    assert!(update.contains(">1001<"), "{update}");
    // The room list's count rode along in the same update.
    assert!(update.contains(r#"<nav id="rooms""#), "{update}");
}
