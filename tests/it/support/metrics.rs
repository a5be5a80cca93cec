//! What an operator sees: the metrics page, read over HTTP as a scraper would (and checked
//! to be well-formed OpenMetrics each time), or straight from a node's hub where a test
//! only needs a number; and waiting for a series to reach a value, since sessions end and
//! commits land asynchronously.

use std::collections::HashSet;

use super::app::TestApp;
use super::eventually::{Seen, eventually};

impl TestApp {
    /// `/metrics`, checked to be well-formed OpenMetrics text.
    pub async fn scrape(&self) -> String {
        let response = self.get("/metrics").await;
        assert_eq!(response.status, 200, "{}", response.body);
        assert_eq!(
            response.headers["content-type"],
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        check_openmetrics(&response.body);
        response.body
    }

    /// Scrapes until `series` has `expected`; returns that scrape.
    pub async fn wait_for_scrape(&self, series: &str, expected: f64) -> String {
        eventually(&format!("{series} to reach {expected}"), async || {
            let text = self.scrape().await;
            if value(&text, series) == expected {
                Ok(text)
            } else {
                Err(Seen(text))
            }
        })
        .await
    }

    /// One series (`name` or `name{labels}`), read from the hub without a request.
    pub fn metric(&self, series: &str) -> f64 {
        value(&self.hub.metrics().encode(), series)
    }

    /// Waits until [`Self::metric`] reads `expected`.
    pub async fn wait_for_metric(&self, series: &str, expected: f64) {
        eventually(&format!("{series} to reach {expected}"), async || {
            let now = self.metric(series);
            if now == expected { Ok(()) } else { Err(now) }
        })
        .await;
    }
}

/// The value of one series (`name` or `name{labels}`), which must be there.
pub fn value(text: &str, series: &str) -> f64 {
    let prefix = format!("{series} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{series} missing from\n{text}"))
        .parse()
        .unwrap()
}

/// A small OpenMetrics check: `# EOF` ends the text; every sample is `name[{labels}] value`
/// with a numeric value, of a family declared by a `# TYPE` line before it; no sample
/// appears twice.
fn check_openmetrics(text: &str) {
    assert!(text.ends_with("# EOF\n"), "no # EOF at the end:\n{text}");
    let mut families = HashSet::new();
    let mut samples = HashSet::new();
    let lines: Vec<&str> = text.lines().collect();
    for line in &lines[..lines.len() - 1] {
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            let (family, kind) = declared.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(family.starts_with("hubbub_"), "{line}");
            families.insert(family.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment: {line}");
        let (series, value) = line.rsplit_once(' ').unwrap();
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        let name = series.split('{').next().unwrap();
        let family = ["_total", "_bucket", "_count", "_sum", "_created"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|family| families.contains(*family))
            .unwrap_or(name);
        assert!(families.contains(family), "undeclared family: {line}");
        assert!(samples.insert(series.to_owned()), "twice: {line}");
    }
}
