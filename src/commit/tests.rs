use super::*;
use crate::domain::Write;

#[tokio::test]
async fn health_reports_a_stopped_writer() {
    let stop = CancellationToken::new();
    let (committer, _hub, writer, _dir) = for_tests(stop.clone()).await;
    assert_eq!(committer.health(), Ok(()));

    stop.cancel();
    writer.await.unwrap();
    assert_eq!(committer.health(), Err("the commit writer has stopped"));
}

fn ids_shown(hub: &Hub) -> Vec<u64> {
    let html = hub.history_html(&RoomName::general()).unwrap_or_default();
    html.split("id=\"msg-")
        .skip(1)
        .filter_map(|rest| rest[..rest.find('"').unwrap_or(0)].parse().ok())
        .collect()
}

/// Another node's batch arrives (through the feed a broker uses) while the store cannot
/// be read: the catch-up before it fails, and the writer tries again by itself, later,
/// delivering everything in order; its own commits go on meanwhile and follow.
#[tokio::test]
async fn the_writer_retries_a_failed_catch_up_by_itself() {
    let stop = CancellationToken::new();
    let (committer, hub, _writer, dir) = for_tests(stop.clone()).await;
    committer.load_room(&RoomName::general()).await.unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    // "Another node": its own connections to the same database.
    let other = crate::store::open(&crate::store::DatabaseUrl::new(url.clone()))
        .await
        .unwrap();
    let say = |text: &str| {
        Write::Post(crate::domain::NewMessage::now(
            RoomName::general(),
            crate::domain::DisplayName::parse("other").unwrap(),
            crate::domain::MessageText::parse(text, 100)
                .unwrap()
                .unwrap(),
        ))
    };
    other.append(&[say("a"), say("b")]).await.unwrap(); // never published
    let batch = [say("c")];
    let appended = other.append(&batch).await.unwrap();
    let published = Committed {
        prev: appended.prev,
        messages: appended.committed(),
    };

    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::raw_sql("ALTER TABLE messages RENAME TO messages_away")
        .execute(&pool)
        .await
        .unwrap();
    committer.feed().remote(published).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(ids_shown(&hub).is_empty());
    sqlx::raw_sql("ALTER TABLE messages_away RENAME TO messages")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let deadline = Instant::now() + Duration::from_secs(5);
    while ids_shown(&hub) != [1, 2, 3] {
        assert!(Instant::now() < deadline, "{:?}", ids_shown(&hub));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answer = committer.submit(say("own")).unwrap();
    assert_eq!(answer.await.unwrap().unwrap(), 4);
    assert_eq!(ids_shown(&hub), [1, 2, 3, 4]);
}
