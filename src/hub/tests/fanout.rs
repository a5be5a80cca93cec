//! Big rooms: fan-out through a room's queue and its drainer, beside small rooms written at
//! once; order, newcomers, eviction, the backlog bound, and parts on several threads.

use super::*;
use crate::hub::fanout::{INLINE_MEMBERS, MAX_BACKLOG, MIN_PART};

/// `count` members in `room`, their first frames read.
fn crowd(hub: &Hub, room: &RoomName, count: usize) -> Vec<Joined> {
    (0..count)
        .map(|i| {
            let mut member =
                join(hub, room, UserId::generate(), name(&format!("m{i:05}"))).unwrap();
            drain(&mut member);
            member
        })
        .collect()
}

/// The message texts `joined` received, in order (`t…` words of `stored` messages).
fn texts(joined: &mut Joined) -> Vec<String> {
    texts_in(&drain(joined))
}

/// The message texts in `html`.
fn texts_in(html: &str) -> Vec<String> {
    html.split(r#"<p class="text">"#)
        .skip(1)
        .map(|rest| rest[..rest.find('<').unwrap()].to_owned())
        .collect()
}

/// Lets spawned drainers run until nothing is left to do (single-threaded runtime).
async fn settle() {
    for _ in 0..10_000 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_small_rooms_message_does_not_wait_for_a_big_rooms_fan_out() {
    let hub = Hub::new(HubSettings::default());
    let (big, small) = (RoomName::general(), RoomName::parse("small").unwrap());
    hub.load(&big, &[], false);
    hub.load(&small, &[], false);
    let mut many = crowd(&hub, &big, INLINE_MEMBERS * 4);
    let mut few = crowd(&hub, &small, 3);

    hub.deliver(&[
        stored(1, "general", "a", "tbig"),
        stored(2, "small", "b", "tsmall"),
    ]);
    // The test's task has not yielded, so the big room's drainer has not run yet; the small
    // room was written to at once all the same.
    for member in &mut few {
        assert_eq!(texts(member), ["tsmall"]);
    }
    assert!(texts(&mut many[0]).is_empty(), "queued for the drainer");
    settle().await;
    for member in &mut many {
        assert_eq!(texts(member), ["tbig"]);
    }
}

#[tokio::test]
async fn a_big_room_gets_every_message_once_in_order_and_newcomers_meet_the_feed() {
    let (hub, room) = hub_with(HubSettings {
        history_limit: 1000,
        ..HubSettings::default()
    });
    let mut early = crowd(&hub, &room, INLINE_MEMBERS + 50);
    let mut late = Vec::new();
    for id in 1..=60 {
        hub.deliver(&[stored(id, "general", "a", &format!("t{id:02}"))]);
        if id % 20 == 0 {
            // Joins while jobs are queued: the history holds what it missed.
            late.push((
                id,
                join(&hub, &room, UserId::generate(), name("late")).unwrap(),
            ));
        }
        if id % 7 == 0 {
            settle().await;
        }
    }
    settle().await;
    let all: Vec<String> = (1..=60).map(|id| format!("t{id:02}")).collect();
    for member in &mut early {
        assert_eq!(texts(member), all);
    }
    for (joined_after, member) in &mut late {
        let received = texts(member);
        let (history, live) = received.split_at(*joined_after as usize);
        assert_eq!(history, &all[..*joined_after as usize], "the snapshot");
        assert_eq!(
            live,
            &all[*joined_after as usize..],
            "then the feed: no gap, no overlap"
        );
    }
}

#[tokio::test]
async fn messages_queued_behind_a_fan_out_go_out_as_one_frame() {
    let (hub, room) = hub_with(HubSettings::default());
    let mut members = crowd(&hub, &room, INLINE_MEMBERS + 1);
    for id in 1..=5 {
        hub.deliver(&[stored(id, "general", "a", &format!("t{id}"))]);
    }
    settle().await;
    let member = &mut members[0];
    member
        .outbox
        .received
        .extend(member.outbox.outlet.take_queued());
    assert_eq!(member.outbox.received.len(), 1, "one frame");
    assert_eq!(texts(member), ["t1", "t2", "t3", "t4", "t5"]);
}

#[tokio::test]
async fn a_slow_member_of_a_big_room_is_evicted_once_and_the_others_go_on() {
    let (hub, room) = hub_with(HubSettings {
        send_queue: 3,
        ..HubSettings::default()
    });
    let slow = join(&hub, &room, UserId::generate(), name("slow")).unwrap(); // never reads
    let mut fast = crowd(&hub, &room, INLINE_MEMBERS + 10);
    for id in 1..=6 {
        hub.deliver(&[stored(id, "general", "a", &format!("t{id}"))]);
        settle().await;
        for member in &mut fast {
            drain(member);
        }
    }
    assert!(slow.evicted());
    assert_eq!(hub.stats().slow_evictions, 1);
    assert_eq!(hub.stats().connected, INLINE_MEMBERS + 10);
    assert!(!hub.present(&room).contains(&name("slow")));
}

#[tokio::test]
async fn the_commit_writer_waits_while_a_room_is_too_far_behind() {
    let (hub, room) = hub_with(HubSettings::default());
    let _members = crowd(&hub, &room, INLINE_MEMBERS + 1);
    let batch: Vec<ChatMessage> = (1..=MAX_BACKLOG as u64 + 1)
        .map(|id| stored(id, "general", "a", "t"))
        .collect();
    hub.deliver(&batch);
    // Nothing has been written yet: the writer would wait here.
    let waiting = futures_util::FutureExt::now_or_never(hub.fanout_caught_up());
    assert!(waiting.is_none(), "over the backlog bound");
    // Once the drainer has run, it need not.
    tokio::time::timeout(Duration::from_secs(10), hub.fanout_caught_up())
        .await
        .expect("the backlog was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_very_big_room_is_written_in_parts_and_every_member_sees_one_order() {
    let (hub, room) = hub_with(HubSettings {
        fanout_parts: 2,
        send_queue: 1000,
        ..HubSettings::default()
    });
    let mut members = crowd(&hub, &room, MIN_PART * 2 + 10);
    for id in 1..=20 {
        hub.deliver(&[stored(id, "general", "a", &format!("t{id:02}"))]);
        hub.fanout_caught_up().await;
    }
    let all: Vec<String> = (1..=20).map(|id| format!("t{id:02}")).collect();
    let done = tokio::time::Instant::now() + Duration::from_secs(10);
    for member in &mut members {
        let mut seen = Vec::new();
        while seen.len() < all.len() && tokio::time::Instant::now() < done {
            seen.extend(texts(member));
            tokio::task::yield_now().await;
        }
        assert_eq!(seen, all);
    }
}

#[tokio::test]
async fn typing_in_a_big_room_replaces_the_waiting_line_instead_of_queueing_behind_it() {
    let (hub, room) = hub_with(HubSettings::default());
    let mut members = crowd(&hub, &room, INLINE_MEMBERS + 20);
    // A message keeps the drainer busy (it has not run yet), then twenty people type.
    hub.deliver(&[stored(1, "general", "a", "t1")]);
    let now = Instant::now();
    for typist in &members[..20] {
        hub.typing(&room, typist.id, now);
    }
    settle().await;
    let reader = members.last_mut().unwrap();
    let mut frames = Vec::new();
    while let Ok(frame) = reader.outbox.try_recv() {
        frames.push(frame.as_str().to_owned());
    }
    assert_eq!(
        frames.len(),
        2,
        "the message, then one typing line: {frames:?}"
    );
    assert!(frames[0].contains(">t1<"));
    assert!(
        frames[1].contains("and 18 others are typing"),
        "the newest line only: {}",
        frames[1]
    );
}

#[tokio::test]
async fn a_typist_dropped_by_a_fan_out_no_longer_shows_as_typing() {
    let (hub, room) = hub_with(HubSettings {
        send_queue: 3,
        ..HubSettings::default()
    });
    let slow = join(&hub, &room, UserId::generate(), name("slow")).unwrap(); // never reads
    let mut fast = crowd(&hub, &room, 3);
    hub.typing(&room, slow.id, Instant::now());
    assert!(drain(&mut fast[0]).contains("slow is typing"));
    for id in 1..=6 {
        hub.deliver(&[stored(id, "general", "a", &format!("t{id}"))]);
        settle().await;
        if slow.evicted() {
            break;
        }
        for member in &mut fast {
            drain(member);
        }
    }
    assert!(slow.evicted());
    let after = drain(&mut fast[0]);
    assert!(
        after.contains(r#"<p id="typing" class="typing" hx-swap-oob="true"></p>"#),
        "the typing line is cleared: {after}"
    );
}

#[test]
fn a_drainer_dropped_unfinished_leaves_the_room_drainable_and_nobody_waiting() {
    let (hub, room) = hub_with(HubSettings::default());
    let mut members = crowd(&hub, &room, INLINE_MEMBERS + 1);
    let stopped = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    stopped.block_on(async {
        // Over the backlog bound, and the drainer (spawned here) never gets to run.
        for id in 1..=MAX_BACKLOG as u64 + 10 {
            hub.deliver(&[stored(id, "general", "a", "t")]);
        }
    });
    drop(stopped);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), hub.fanout_caught_up())
            .await
            .expect("nobody waits for a backlog nobody will write");
        for member in &mut members {
            drain(member);
        }
        hub.deliver(&[stored(1000, "general", "a", "tafter")]);
        settle().await;
        assert_eq!(texts(&mut members[0]), ["tafter"], "drained again");
    });
}

#[tokio::test]
async fn the_commit_writer_does_not_wait_for_a_big_rooms_fan_out() {
    let (hub, room) = hub_with(HubSettings {
        fanout_rest: Duration::from_secs(5),
        ..HubSettings::default()
    });
    let mut members = crowd(&hub, &room, INLINE_MEMBERS * 4);
    hub.deliver(&[stored(1, "general", "a", "t1")]);
    // What the writer does after each delivery: the frame is queued, not written, and
    // the writer goes on to its next batch (another room's message must not wait).
    let waited = futures_util::FutureExt::now_or_never(hub.fanout_caught_up());
    assert!(waited.is_some(), "the writer went on");
    assert!(texts(&mut members[0]).is_empty(), "queued for the drainer");
    settle().await;
    for member in &mut members {
        assert_eq!(texts(member), ["t1"]);
    }
}

/// Every frame the member got from now on, as the message texts in each.
fn frames(member: &mut Joined) -> Vec<Vec<String>> {
    std::iter::from_fn(|| member.outbox.try_recv().ok())
        .map(|frame| texts_in(frame.as_str()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_big_room_rests_after_a_frame_and_sends_what_came_meanwhile_as_one() {
    let rest = Duration::from_millis(50);
    let (hub, room) = hub_with(HubSettings {
        fanout_rest: rest,
        ..HubSettings::default()
    });
    let mut members = crowd(&hub, &room, INLINE_MEMBERS * 4);
    let start = Instant::now();
    hub.deliver(&[stored(1, "general", "a", "t1")]);
    settle().await;
    let last = members.last_mut().unwrap();
    assert_eq!(
        frames(last),
        [["t1"]],
        "an idle room's frame goes out at once"
    );
    // Committed while the room rests: queued, joined, and sent once the rest is over.
    hub.deliver(&[stored(2, "general", "a", "t2")]);
    hub.deliver(&[stored(3, "general", "a", "t3")]);
    let mut seen = Vec::new();
    while seen.is_empty() && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(1)).await;
        seen = frames(last);
    }
    assert_eq!(seen, [["t2", "t3"]], "one frame, in order");
    assert!(
        start.elapsed() >= rest,
        "the second frame waited for the rest: {:?}",
        start.elapsed()
    );
}
