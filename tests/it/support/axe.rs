//! The accessibility check every page state in the browser tests passes: axe-core (the npm
//! package pinned in `package-lock.json`, installed by `build.rs`, never served to users)
//! injected by WebDriver and run with the WCAG 2.0, 2.1 and 2.2 A and AA rules plus axe's
//! best practices. A violation fails the test with each rule, element and help URL.

use std::path::PathBuf;
use std::sync::OnceLock;

use fantoccini::Client;
use serde::Deserialize;
use serde_json::json;

/// The rule sets checked: WCAG 2.0, 2.1 and 2.2 at levels A and AA, and best practices.
const TAGS: &[&str] = &[
    "wcag2a",
    "wcag2aa",
    "wcag21a",
    "wcag21aa",
    "wcag22a",
    "wcag22aa",
    "best-practice",
];

fn source() -> &'static str {
    static SOURCE: OnceLock<String> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("node_modules")
            .join("axe-core")
            .join("axe.min.js");
        std::fs::read_to_string(&path).unwrap_or_else(|err| {
            panic!(
                "cannot read {} ({err}): `npm ci` installs it (build.rs runs it when a package is missing)",
                path.display()
            )
        })
    })
}

#[derive(Debug, Deserialize)]
struct Violation {
    id: String,
    impact: Option<String>,
    help: String,
    #[serde(rename = "helpUrl")]
    help_url: String,
    nodes: Vec<Node>,
}

#[derive(Debug, Deserialize)]
struct Node {
    target: String,
    summary: Option<String>,
}

/// Runs axe on the page as it is now; panics listing every violation. `state` names what
/// the page shows (for the failure message).
pub async fn assert_accessible(browser: &Client, state: &str) {
    let loaded = browser
        .execute("return typeof window.axe === 'object';", vec![])
        .await
        .unwrap();
    if loaded != json!(true) {
        browser
            .execute(&format!("{}\n;return true;", source()), vec![])
            .await
            .unwrap();
    }
    let found = browser
        .execute_async(
            "const done = arguments[arguments.length - 1];
             window.axe
                 .run(document, {
                     runOnly: { type: 'tag', values: arguments[0] },
                     resultTypes: ['violations'],
                 })
                 .then(result => done({ violations: result.violations.map(v => ({
                     id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
                     nodes: v.nodes.map(n => ({
                         target: n.target.join(' '), summary: n.failureSummary,
                     })),
                 })) }))
                 .catch(err => done({ error: String(err) }));",
            vec![json!(TAGS)],
        )
        .await
        .unwrap();
    if let Some(error) = found.get("error") {
        panic!("axe could not run on {state}: {error}");
    }
    let violations: Vec<Violation> = serde_json::from_value(found["violations"].clone()).unwrap();
    if violations.is_empty() {
        return;
    }
    let mut report = format!(
        "{} accessibility violation(s) on {state}:\n",
        violations.len()
    );
    for violation in &violations {
        report.push_str(&format!(
            "- {} ({}): {}\n  {}\n",
            violation.id,
            violation.impact.as_deref().unwrap_or("?"),
            violation.help,
            violation.help_url
        ));
        for node in &violation.nodes {
            report.push_str(&format!(
                "    {}: {}\n",
                node.target,
                node.summary.as_deref().unwrap_or("").replace('\n', " / ")
            ));
        }
    }
    panic!("{report}");
}
