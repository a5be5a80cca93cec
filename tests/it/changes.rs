//! Messages people can fix: edits and deletes take a message's road (commit, sequencer,
//! broker, hub) and replace the message where it is shown; only its author may make them;
//! a message sent twice with one client id is stored and shown once.

use serde_json::json;

use crate::support::app::{TestApp, spawn_app, spawn_app_on, spawn_app_with};
use crate::support::client::TestClient;
use crate::support::cluster::Cluster;
use crate::support::db::TestDb;

/// What htmx sends for the edit form.
pub(crate) async fn edit(client: &mut TestClient, id: u64, text: &str) {
    let frame = json!({"kind": "edit", "id": id.to_string(), "text": text, "headers": {"HX-Request": "true"}});
    client.send_raw(frame.to_string()).await;
}

/// What htmx sends for the delete form.
pub(crate) async fn delete(client: &mut TestClient, id: u64) {
    let frame = json!({"kind": "delete", "id": id.to_string(), "headers": {"HX-Request": "true"}});
    client.send_raw(frame.to_string()).await;
}

/// A message with the page's id for it, as the composer sends it.
async fn say_once(client: &mut TestClient, text: &str, client_id: &str) {
    let frame = json!({"text": text, "client_id": client_id, "headers": {"HX-Request": "true"}});
    client.send_raw(frame.to_string()).await;
}

/// Says `text` and waits until `client` shows it; returns its id.
pub(crate) async fn posted(client: &mut TestClient, text: &str) -> u64 {
    client.say(text).await;
    client
        .until(text, |page| page.shown.iter().any(|m| m.text == text))
        .await;
    client
        .shown
        .iter()
        .rev()
        .find(|m| m.text == text)
        .unwrap()
        .id
}

/// An author edits and then deletes a message: every page shows each version in place, a
/// newcomer's history has the current one, and the deleted text is gone from the store.
async fn edit_then_delete(app: &TestApp) {
    let (alice_cookie, _) = app.visit("/").await;
    let mut alice = app.connect_to("general", Some(&alice_cookie)).await;
    let mut bob = app.connect().await;
    let first = posted(&mut alice, "helo everyone").await;
    let second = posted(&mut alice, "a second thought").await;
    bob.until("both", |page| page.shown.len() == 2).await;

    edit(&mut alice, first, "hello everyone").await;
    for page in [&mut alice, &mut bob] {
        page.until("the edit", |page| {
            page.message(first).is_some_and(|m| m.edited)
        })
        .await;
        assert_eq!(page.texts(), ["hello everyone", "a second thought"]);
        assert_eq!(page.ids(), [first, second], "edited in place");
    }
    // Anyone may react; toggling twice leaves one reaction.
    react(&mut bob, first, "👀").await;
    react(&mut bob, second, "✅").await;
    react(&mut bob, second, "✅").await;
    react(&mut bob, second, "❤️").await;
    alice
        .until("bob's reactions", |page| {
            page.message(second)
                .is_some_and(|m| m.reactions.len() == 1 && m.reactions[0].0 == "❤️")
        })
        .await;
    assert_eq!(reactions_of(&alice, first)[0].0, "👀");
    // The edit went the way of a message: committed, then broadcast as its own entry.
    let newcomer = app.connect().await;
    let shown = newcomer.message(first).unwrap();
    assert_eq!(
        (shown.text.as_str(), shown.edited),
        ("hello everyone", true)
    );

    assert_eq!(newcomer.message(first).unwrap().reactions.len(), 1);
    delete(&mut alice, second).await;
    for page in [&mut alice, &mut bob] {
        page.until("the delete", |page| {
            page.message(second).is_some_and(|m| m.deleted)
        })
        .await;
        assert_eq!(
            page.ids(),
            [first, second],
            "a deleted message keeps its place"
        );
        assert_eq!(page.message(second).unwrap().text, "");
        assert!(page.message(second).unwrap().reactions.is_empty());
    }
    let stored = app.db.stored().await;
    assert!(
        stored
            .iter()
            .all(|(_, body)| !body.contains("second thought")),
        "the deleted text is gone from the store: {stored:?}"
    );
    assert!(stored.iter().any(|(_, body)| body == "hello everyone"));
    // Paging back reads each message as it is now.
    let older = app
        .get(&format!("/rooms/general/history?before={}", second + 100))
        .await;
    assert!(older.body.contains("hello everyone") && older.body.contains("message deleted"));
    assert!(!older.body.contains("second thought") && !older.body.contains("helo"));
}

#[tokio::test]
async fn an_author_edits_and_deletes_and_every_page_shows_it_in_place() {
    edit_then_delete(&spawn_app().await).await;
}

#[tokio::test]
async fn edits_and_deletes_on_postgresql() {
    let Some(db) = TestDb::postgres("changes::edits_and_deletes_on_postgresql").await else {
        return;
    };
    let app = spawn_app_on(std::sync::Arc::new(db), "127.0.0.1:0", |_| {}).await;
    edit_then_delete(&app).await;
}

/// Every way of naming a message one may not change gets a notice that says why, and
/// changes nothing anyone sees.
#[tokio::test]
async fn nobody_changes_a_message_that_is_not_theirs_to_change() {
    let app = spawn_app().await;
    let (alice_cookie, _) = app.visit("/").await;
    let mut alice = app.connect_to("general", Some(&alice_cookie)).await;
    let mut mallory = app.connect().await;
    let hers = posted(&mut alice, "alice's words").await;
    let gone = posted(&mut alice, "soon gone").await;
    delete(&mut alice, gone).await;
    alice
        .until("the delete", |page| {
            page.message(gone).is_some_and(|m| m.deleted)
        })
        .await;
    let mut elsewhere = app.connect_to("elsewhere", Some(&alice_cookie)).await;
    let other_room = posted(&mut elsewhere, "in another room").await;
    mallory.until("both", |page| page.shown.len() == 2).await;

    let refusals: [(&str, u64, &str); 7] = [
        (
            "edit",
            hers,
            "Not saved: only its author can change a message.",
        ),
        (
            "delete",
            hers,
            "Not deleted: only its author can change a message.",
        ),
        (
            "edit",
            999_999,
            "Not saved: that message is not in this room",
        ),
        (
            "delete",
            other_room,
            "Not deleted: that message is not in this room",
        ),
        ("edit", gone, "Not saved: that message was deleted."),
        ("delete", gone, "Not deleted: that message was deleted."),
        (
            "edit",
            other_room,
            "Not saved: that message is not in this room",
        ),
    ];
    for (kind, id, notice) in refusals {
        // The author herself may not change a message of another room from here.
        let client = if id == gone || id == other_room {
            &mut alice
        } else {
            &mut mallory
        };
        if kind == "edit" {
            edit(client, id, "rewritten").await;
        } else {
            delete(client, id).await;
        }
        let said = client.wait_for_notice().await;
        assert!(said.starts_with(notice), "{kind} {id}: {said}");
    }
    // Broken or empty changes are refused before they reach the store.
    for (frame, notice) in [
        (
            json!({"kind": "edit", "id": hers.to_string(), "text": "   "}),
            "An edit cannot leave",
        ),
        (
            json!({"kind": "edit", "id": "12abc", "text": "x"}),
            "`id` must be a message id",
        ),
        (json!({"kind": "delete"}), "missing field `id`"),
        (
            json!({"kind": "edit", "id": hers.to_string()}),
            "missing field `text`",
        ),
    ] {
        mallory.send_raw(frame.to_string()).await;
        let said = mallory.wait_for_notice().await;
        assert!(said.contains(notice), "{frame}: {said}");
    }
    // Nothing changed for anyone: a marker arrives with nothing replaced before it.
    let replaced = alice.swaps.get("replace").copied().unwrap_or(0);
    let marker = posted(&mut mallory, "marker").await;
    alice
        .until("the marker", |page| page.message(marker).is_some())
        .await;
    assert_eq!(alice.swaps.get("replace").copied().unwrap_or(0), replaced);
    let shown = alice.message(hers).unwrap();
    assert_eq!(
        (shown.text.as_str(), shown.edited),
        ("alice's words", false)
    );
    // The refusals are counted.
    assert_eq!(
        app.metric("hubbub_messages_rejected_total{reason=\"not_allowed\"}"),
        7.0
    );
}

/// The composer's id makes a message sent twice (a double submit, a resend after a
/// reconnect, from another tab of the same user) stored and shown once; the same id from
/// someone else is their own message.
#[tokio::test]
async fn a_message_sent_twice_with_one_client_id_is_stored_and_shown_once() {
    let app = spawn_app().await;
    let (cookie, _) = app.visit("/").await;
    let mut tab = app.connect_to("general", Some(&cookie)).await;
    let mut other_tab = app.connect_to("general", Some(&cookie)).await;
    let mut someone = app.connect().await;
    let id = "5b0e8c1a-3f4d-4e2b-9a6c-7d8e9f0a1b2c";
    say_once(&mut tab, "only once", id).await;
    say_once(&mut tab, "only once", id).await;
    say_once(&mut other_tab, "only once", id).await;
    // Someone else's page happens to draw the same id: a message of theirs.
    say_once(&mut someone, "theirs", id).await;
    let marker = posted(&mut someone, "marker").await;
    for page in [&mut tab, &mut other_tab, &mut someone] {
        page.until("the marker", |page| page.message(marker).is_some())
            .await;
        assert_eq!(page.texts(), ["only once", "theirs", "marker"]);
        assert_eq!(page.notice, None, "a resend is answered as sent");
    }
    let stored = app.db.stored().await;
    assert_eq!(
        stored
            .iter()
            .filter(|(_, body)| body == "only once")
            .count(),
        1,
        "{stored:?}"
    );
    // A new id is a new message, with the same text.
    say_once(
        &mut tab,
        "only once",
        "0f3a9c2e-7b1d-4e5f-a6b7-c8d9e0f1a2b3",
    )
    .await;
    tab.until("the second", |page| page.shown.len() == 4).await;
    // A malformed id is refused with a notice, not stored.
    say_once(&mut tab, "bad id", "<script>").await;
    let said = tab.wait_for_notice().await;
    assert!(said.contains("client_id"), "{said}");
}

/// Edits, deletes and a message's author tag: each page can tell its own messages (the
/// tag is the same for every tab of a user and differs between users), and the tag is
/// not the user id.
#[tokio::test]
async fn a_page_can_tell_its_own_messages_without_learning_anyones_id() {
    let app = spawn_app().await;
    let (cookie, _) = app.visit("/").await;
    let mut alice = app.connect_to("general", Some(&cookie)).await;
    let mut bob = app.connect().await;
    posted(&mut alice, "from alice").await;
    posted(&mut bob, "from bob").await;
    bob.until("both", |page| page.shown.len() == 2).await;
    let tags: Vec<_> = bob.shown.iter().map(|m| m.author_tag.clone()).collect();
    assert!(
        tags.iter()
            .all(|t| t.as_ref().is_some_and(|t| t.len() == 16))
    );
    assert_ne!(tags[0], tags[1]);
    let page = app
        .request_with("GET", "/", &[("Cookie", cookie.as_str())])
        .await;
    let mine = tags[0].as_ref().unwrap();
    assert!(
        page.body.contains(&format!("data-me=\"{mine}\"")),
        "the page says which tag is its user's"
    );
    assert!(!cookie.contains(mine.as_str()), "the tag is not the id");
}

/// Edits and deletes count against the same rate limits as messages.
#[tokio::test]
async fn changes_count_against_the_posting_rate() {
    let app = spawn_app_with(|config| {
        config.message_rate = 1;
        config.message_burst = 3;
    })
    .await;
    let (cookie, _) = app.visit("/").await;
    let mut alice = app.connect_to("general", Some(&cookie)).await;
    let id = posted(&mut alice, "one").await;
    edit(&mut alice, id, "two").await;
    delete(&mut alice, id).await;
    edit(&mut alice, id, "four").await;
    let said = alice.wait_for_notice().await;
    assert!(said.contains("too fast"), "{said}");
}

/// An edit on one node is seen on the other, live through Redis, and in its history.
#[tokio::test]
async fn an_edit_and_a_delete_cross_nodes() {
    let Some(cluster) = Cluster::new("changes::an_edit_and_a_delete_cross_nodes").await else {
        return;
    };
    let [a, b] = cluster.nodes().await;
    let (cookie, _) = a.visit("/").await;
    let mut alice = a.connect_to("general", Some(&cookie)).await;
    let mut bob = b.connect().await;
    let first = posted(&mut alice, "frist").await;
    let second = posted(&mut alice, "oops").await;
    bob.until("both", |page| page.shown.len() == 2).await;
    // Bob's node is not Alice's, yet only Alice may change her message there too.
    edit(&mut bob, first, "taken over").await;
    assert!(bob.wait_for_notice().await.contains("only its author"));

    let mut alice_on_b = b.connect_to("general", Some(&cookie)).await;
    edit(&mut alice, first, "first").await;
    delete(&mut alice_on_b, second).await;
    react(&mut bob, first, "🎉").await;
    for page in [&mut alice, &mut bob, &mut alice_on_b] {
        page.until("the edit and the delete", |page| {
            page.message(first)
                .is_some_and(|m| m.edited && m.reactions.len() == 1)
                && page.message(second).is_some_and(|m| m.deleted)
        })
        .await;
        assert_eq!(page.message(first).unwrap().text, "first");
    }
    for node in [&a, &b] {
        let newcomer = node.connect().await;
        assert_eq!(newcomer.texts(), ["first", ""]);
    }
    cluster
        .assert_everyone_saw_history(&[&a, &b], &mut [&mut alice, &mut bob])
        .await;
}

/// What htmx sends for a reaction.
async fn react(client: &mut TestClient, id: u64, emoji: &str) {
    let frame = json!({"kind": "react", "id": id.to_string(), "emoji": emoji, "headers": {"HX-Request": "true"}});
    client.send_raw(frame.to_string()).await;
}

fn reactions_of(client: &TestClient, id: u64) -> Vec<(String, usize, String)> {
    client
        .message(id)
        .map(|m| m.reactions.clone())
        .unwrap_or_default()
}

/// Reactions toggle, live for everyone, count and name who reacted, come back in the
/// history, and go with a deleted message; a reaction outside the set, to a deleted
/// message or to one of another room is refused with a notice.
#[tokio::test]
async fn reactions_toggle_live_name_who_and_go_with_a_deleted_message() {
    let app = spawn_app().await;
    let alice_cookie = app.named("alice").await;
    let bob_cookie = app.named("bob").await;
    let mut alice = app.connect_to("general", Some(&alice_cookie)).await;
    let mut bob = app.connect_to("general", Some(&bob_cookie)).await;
    let id = posted(&mut alice, "lunch at noon?").await;
    bob.until("the message", |page| page.message(id).is_some())
        .await;

    react(&mut bob, id, "👍").await;
    react(&mut alice, id, "👍").await;
    react(&mut alice, id, "🎉").await;
    let both = |page: &crate::support::page::PageModel| {
        page.message(id).is_some_and(|m| {
            m.reactions
                == [
                    ("👍".to_owned(), 2, "bob, alice".to_owned()),
                    ("🎉".to_owned(), 1, "alice".to_owned()),
                ]
        })
    };
    alice.until("both reactions", both).await;
    bob.until("both reactions", both).await;
    // The same emoji again takes it back.
    react(&mut bob, id, "👍").await;
    let one = |page: &crate::support::page::PageModel| {
        page.message(id).is_some_and(|m| {
            m.reactions
                == [
                    ("👍".to_owned(), 1, "alice".to_owned()),
                    ("🎉".to_owned(), 1, "alice".to_owned()),
                ]
        })
    };
    alice.until("bob's thumb taken back", one).await;
    // A newcomer's history has them; so does a page of older messages.
    let newcomer = app.connect().await;
    assert!(one(&newcomer), "{:?}", reactions_of(&newcomer, id));
    let older = app
        .get(&format!("/rooms/general/history?before={}", id + 100))
        .await;
    assert!(older.body.contains(r#"data-emoji="🎉""#), "{}", older.body);

    // Refusals, each with a notice, nothing changed.
    let mut elsewhere = app.connect_to("elsewhere", Some(&alice_cookie)).await;
    let other_room = posted(&mut elsewhere, "in another room").await;
    react(&mut bob, other_room, "👍").await;
    assert!(
        bob.wait_for_notice()
            .await
            .starts_with("Not reacted: that message is not in this room")
    );
    react(&mut bob, id, "🙂").await;
    assert!(
        bob.wait_for_notice()
            .await
            .contains("That reaction is not one of")
    );
    // Deleting takes the reactions with it; a deleted message takes none.
    delete(&mut alice, id).await;
    bob.until("the delete", |page| {
        page.message(id)
            .is_some_and(|m| m.deleted && m.reactions.is_empty())
    })
    .await;
    react(&mut bob, id, "❤️").await;
    assert!(
        bob.wait_for_notice()
            .await
            .starts_with("Not reacted: that message was deleted.")
    );
    let left: Vec<(i64, String)> = app.db.stored().await;
    assert!(left.iter().all(|(_, body)| body != "lunch at noon?"));
}

/// A reply, as the composer sends it.
async fn reply(client: &mut TestClient, to: u64, text: &str) {
    let frame = json!({"text": text, "reply_to": to.to_string(), "client_id": "", "headers": {"HX-Request": "true"}});
    client.send_raw(frame.to_string()).await;
}

/// A reply carries a quote of what it answers that links to it; the quote follows the
/// original's edits and deletion, live and in the history; a reply to a message of another
/// room, a deleted one or an unknown one is refused with the text put back.
#[tokio::test]
async fn a_reply_quotes_what_it_answers_and_the_quote_keeps_up() {
    let app = spawn_app().await;
    let alice_cookie = app.named("alice").await;
    let mut alice = app.connect_to("general", Some(&alice_cookie)).await;
    let mut bob = app.connect().await;
    let question = posted(&mut alice, "who has the keys?").await;
    bob.until("the question", |page| page.message(question).is_some())
        .await;
    reply(&mut bob, question, "I do").await;
    let answered = |page: &crate::support::page::PageModel| {
        page.shown.iter().any(|m| {
            m.text == "I do"
                && m.reply.as_ref().is_some_and(|q| {
                    q.id == question && q.author == "alice" && q.text == "who has the keys?"
                })
        })
    };
    alice.until("the reply with its quote", answered).await;
    bob.until("the reply with its quote", answered).await;

    // The original is edited: every reply's quote says so, live and for a newcomer.
    edit(&mut alice, question, "who has the car keys?").await;
    let follows = |page: &crate::support::page::PageModel| {
        page.shown.iter().any(|m| {
            m.reply
                .as_ref()
                .is_some_and(|q| q.id == question && q.text == "who has the car keys?" && q.edited)
        })
    };
    bob.until("the quote after the edit", follows).await;
    assert!(follows(&app.connect().await.page), "a newcomer's history");
    let older = app.get("/rooms/general/history?before=1000").await.body;
    assert!(
        older.contains("who has the car keys?</span> <span class=\"edited\">"),
        "{older}"
    );

    // Deleted: the quote says so, and a new reply to it is refused.
    delete(&mut alice, question).await;
    let gone = |page: &crate::support::page::PageModel| {
        page.shown.iter().any(|m| {
            m.reply
                .as_ref()
                .is_some_and(|q| q.id == question && q.deleted)
        })
    };
    bob.until("the quote after the delete", gone).await;
    assert!(gone(&app.connect().await.page), "a newcomer's history");
    reply(&mut bob, question, "too late").await;
    let said = bob.wait_for_notice().await;
    assert!(
        said.starts_with("Not sent: the message you answer was deleted."),
        "{said}"
    );
    assert_eq!(bob.restored_input.as_deref(), Some("too late"));

    // Another room's message, or none at all: refused, nothing stored.
    let mut elsewhere = app.connect_to("elsewhere", Some(&alice_cookie)).await;
    let other = posted(&mut elsewhere, "over here").await;
    for to in [other, 999_999] {
        reply(&mut bob, to, "cross-room").await;
        let said = bob.wait_for_notice().await;
        assert!(
            said.starts_with("Not sent: the message you answer is not in this room."),
            "{said}"
        );
    }
    let stored = app.db.stored().await;
    assert!(
        stored
            .iter()
            .all(|(_, body)| body != "cross-room" && body != "too late")
    );
}

/// A reply crosses nodes with its quote, and the quote follows an edit made on the other
/// node.
#[tokio::test]
async fn a_reply_and_its_quote_cross_nodes() {
    let Some(cluster) = Cluster::new("changes::a_reply_and_its_quote_cross_nodes").await else {
        return;
    };
    let [a, b] = cluster.nodes().await;
    let (cookie, _) = a.visit("/").await;
    let mut alice = a.connect_to("general", Some(&cookie)).await;
    let mut bob = b.connect().await;
    let first = posted(&mut alice, "first draft").await;
    bob.until("it", |page| page.message(first).is_some()).await;
    reply(&mut bob, first, "looks good").await;
    alice
        .until("the reply", |page| {
            page.shown
                .iter()
                .any(|m| m.reply.as_ref().is_some_and(|q| q.text == "first draft"))
        })
        .await;
    edit(&mut alice, first, "second draft").await;
    bob.until("the quote after the edit", |page| {
        page.shown.iter().any(|m| {
            m.reply
                .as_ref()
                .is_some_and(|q| q.text == "second draft" && q.edited)
        })
    })
    .await;
}

/// The edit form's source: the text as written, plain; a bad id is a 400 that says what is
/// expected; an unknown, deleted or other room's message is a 404.
#[tokio::test]
async fn a_messages_source_is_its_text_as_written_and_bad_ids_are_clear_errors() {
    let app = spawn_app().await;
    let (cookie, _) = app.visit("/").await;
    let mut alice = app.connect_to("general", Some(&cookie)).await;
    alice.say("**bold** <b>raw</b>").await;
    let id = alice.wait_for_shown(1).await[0].id;
    let gone = posted(&mut alice, "soon gone").await;
    delete(&mut alice, gone).await;
    alice
        .until("the delete", |page| {
            page.message(gone).is_some_and(|m| m.deleted)
        })
        .await;

    let source = app
        .get(&format!("/rooms/general/messages/{id}/source"))
        .await;
    assert_eq!(source.status, 200);
    assert_eq!(source.body, "**bold** <b>raw</b>");
    assert!(
        source
            .headers
            .get("content-type")
            .is_some_and(|t| t.to_str().unwrap().starts_with("text/plain")),
        "{:?}",
        source.headers
    );
    for bad in ["0", "x", "-1", "1e3", "99999999999999999999999"] {
        let response = app
            .get(&format!("/rooms/general/messages/{bad}/source"))
            .await;
        assert_eq!(response.status, 400, "{bad}");
        assert!(
            response.body.contains("expected a message id"),
            "{bad}: {}",
            response.body
        );
    }
    for (room, id) in [("general", 999_999), ("general", gone), ("elsewhere", id)] {
        let response = app
            .get(&format!("/rooms/{room}/messages/{id}/source"))
            .await;
        assert_eq!(response.status, 404, "{room} {id}");
    }
}
