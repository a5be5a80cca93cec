//! The `hubbub` binary: parse the configuration, start logging, bind, serve until a signal.

use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use hubbub::config::LogFormat;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `hubbub admin …`: an operator command on the store, then exit.
    if std::env::args_os().nth(1).is_some_and(|arg| arg == "admin") {
        let admin = hubbub::admin::Admin::parse_from(std::env::args_os().skip(1));
        let said = hubbub::admin::run(admin).await?;
        println!("{said}");
        return Ok(());
    }
    let config = hubbub::Config::parse();
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log))
        .with_context(|| format!("--log {:?} is not a valid log filter", config.log))?;
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stdout().is_terminal()).init(),
        // One JSON object per line, the event's fields at the top level.
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    config.validate()?;

    let listener = hubbub::http::serve::bind(config.addr)
        .with_context(|| format!("cannot listen on {}", config.addr))?;
    let addr = listener.local_addr()?;
    tracing::info!("hubbub listening on http://{addr}");

    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    hubbub::run(config, listener, shutdown).await?;
    tracing::info!("hubbub stopped");
    Ok(())
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM.
async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: closing connections with 1012");
    shutdown.cancel();
}
