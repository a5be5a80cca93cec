//! `hubbub-load`: point it at a chat page and it reports latency, throughput, loss and
//! duplicates. See the library (`hubbub_load`) and BENCHMARKS.md.

use clap::Parser;
use hubbub_load::LoadConfig;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = LoadConfig::parse();
    match hubbub_load::run(&config).await {
        Ok(report) => {
            eprint!("{}", report.table());
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
            if report.passed(config.max_loss) {
                std::process::ExitCode::SUCCESS
            } else {
                eprintln!(
                    "hubbub-load: FAILED ({} connect failures, {} dropped, loss {:.4}% (at most \
                     {:.4}%), {} misrouted)",
                    report.connect_failures,
                    report.dropped,
                    report.loss_ratio * 100.0,
                    config.max_loss * 100.0,
                    report.misrouted
                );
                std::process::ExitCode::FAILURE
            }
        }
        Err(err) => {
            eprintln!("hubbub-load: {err}");
            std::process::ExitCode::from(2)
        }
    }
}
