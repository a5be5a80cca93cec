//! Moderators: an operator makes an account a moderator with `hubbub admin grant NAME` (the
//! real binary, on the test's own store); a moderator deletes anyone's message through the
//! same road as any delete, and loses the right with `hubbub admin revoke NAME`, at once.

use std::process::Command;
use std::sync::Arc;

use crate::both_backends;
use crate::changes::{delete, posted};
use crate::support::app::{TestApp, spawn_app_on};
use crate::support::db::TestDb;

/// Claims `name` for a new visitor; the cookies to send as them (guest and session).
pub(crate) async fn signed_up(app: &TestApp, name: &str) -> String {
    let (guest, _) = app.visit("/").await;
    let origin = app.url("");
    let response = app
        .request_body(
            "POST",
            "/signup",
            &[
                ("Cookie", &guest),
                ("Origin", &origin),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            &format!("name={name}&password=a+long+enough+secret"),
        )
        .await;
    assert_eq!(response.status, 303, "{}", response.body);
    let session = response
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_owned())
        .find(|c| c.starts_with("hubbub_session="))
        .unwrap();
    format!("{guest}; {session}")
}

/// Runs `hubbub admin ARGS --database URL`: its exit status, stdout and stderr.
pub(crate) fn admin(db: &TestDb, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_hubbub"))
        .arg("admin")
        .args(args)
        .arg("--database")
        .arg(db.url.expose())
        .env_remove("HUBBUB_DATABASE_URL")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn moderators_delete_anyones_messages(db: Arc<TestDb>) {
    let app = spawn_app_on(Arc::clone(&db), "127.0.0.1:0", |_| {}).await;
    let mod_cookie = signed_up(&app, "Mia").await;
    let (troll, _) = app.visit("/").await;
    let mut mia = app.connect_to("general", Some(&mod_cookie)).await;
    let mut trolling = app.connect_to("general", Some(&troll)).await;
    let first = posted(&mut trolling, "something abusive").await;

    // Not yet a moderator: refused, as anyone's delete of another's message is.
    delete(&mut mia, first).await;
    let notice = mia.wait_for_notice().await;
    assert!(notice.contains("Not deleted"), "{notice}");
    let page = app
        .request_with("GET", "/", &[("Cookie", &mod_cookie)])
        .await;
    assert!(!page.body.contains("data-moderator"));

    // The operator's command, on the store the server uses.
    let (ok, out, err) = admin(&db, &["grant", "mia"]);
    assert!(ok, "{out}{err}");
    assert_eq!(out.trim(), "Mia is a moderator now.");
    let page = app
        .request_with("GET", "/", &[("Cookie", &mod_cookie)])
        .await;
    assert!(
        page.body.contains("data-moderator"),
        "the page offers Delete"
    );
    let account = app
        .request_with("GET", "/account", &[("Cookie", &mod_cookie)])
        .await;
    assert!(account.body.contains("a moderator"));

    // Now it goes through, for every page, on the open socket (the store decides).
    delete(&mut mia, first).await;
    for page in [&mut mia, &mut trolling] {
        page.until("the removal", |page| {
            page.message(first).is_some_and(|m| m.deleted)
        })
        .await;
    }
    // The guest's page is offered no such thing: its own delete of Mia's message fails.
    let hers = posted(&mut mia, "please keep it civil").await;
    delete(&mut trolling, hers).await;
    let notice = trolling.wait_for_notice().await;
    assert!(notice.contains("Not deleted"), "{notice}");

    // Revoked: at once, on the same socket.
    let (ok, out, _) = admin(&db, &["revoke", "MIA"]);
    assert!(ok);
    assert_eq!(out.trim(), "Mia is no longer a moderator.");
    let second = posted(&mut trolling, "more abuse").await;
    delete(&mut mia, second).await;
    let notice = mia.wait_for_notice().await;
    assert!(notice.contains("Not deleted"), "{notice}");
    app.stop().await;
}
both_backends!(moderators_delete_anyones_messages);

/// The admin command says what is wrong, and changes nothing, for a name nobody holds,
/// a name that cannot be one, or no command at all.
#[tokio::test]
async fn admin_commands_explain_what_is_wrong() {
    let db = Arc::new(TestDb::sqlite());
    let app = spawn_app_on(Arc::clone(&db), "127.0.0.1:0", |_| {}).await;
    signed_up(&app, "Mia").await;
    let (ok, _, err) = admin(&db, &["grant", "nobody"]);
    assert!(!ok);
    assert!(
        err.contains("no account holds the name \"nobody\""),
        "{err}"
    );
    let (ok, _, err) = admin(&db, &["grant", "   "]);
    assert!(!ok);
    assert!(err.contains("A name is 1 to 32 characters"), "{err}");
    let (ok, _, err) = admin(&db, &["promote", "Mia"]);
    assert!(!ok);
    assert!(err.contains("unrecognized subcommand"), "{err}");
    let page = app.get("/account").await;
    assert_eq!(page.status, 303);
    app.stop().await;
}
