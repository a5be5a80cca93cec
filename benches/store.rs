//! Stored messages per second through the real ingest path (committer → store → hub),
//! with group commit on and off, on SQLite and (when `HUBBUB_TEST_POSTGRES_URL` is set)
//! on PostgreSQL.
//!
//! ```sh
//! cargo bench --bench store
//! HUBBUB_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --bench store
//! ```
//!
//! Each iteration sends `MESSAGES` messages from `SENDERS` concurrent senders, each of
//! which waits for its commit before sending the next (as a chat session does), and ends
//! when all are committed and delivered to the hub.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::future::join_all;
use hubbub::broker::LocalBroker;
use hubbub::commit::{CommitSettings, Committer};
use hubbub::domain::{DisplayName, MessageText, NewMessage, RoomName};
use hubbub::hub::{Hub, HubSettings};
use hubbub::sequencer::Sequencer;
use hubbub::store::{self, DatabaseUrl, Store};
use tokio_util::sync::CancellationToken;

const SENDERS: usize = 500;

async fn burst(committer: &Committer, messages: usize) {
    let per_sender = messages / SENDERS;
    let senders = (0..SENDERS).map(|s| {
        let committer = committer.clone();
        async move {
            let author = DisplayName::parse(&format!("sender-{s}")).unwrap();
            for i in 0..per_sender {
                let text = MessageText::parse(
                    &format!("message {i} from a sender in the benchmark"),
                    2000,
                )
                .unwrap()
                .unwrap();
                let message = NewMessage::now(RoomName::general(), author.clone(), text);
                committer
                    .submit(hubbub::domain::Write::Post(message))
                    .unwrap()
                    .await
                    .unwrap()
                    .unwrap();
            }
        }
    });
    join_all(senders).await;
}

fn bench_backend(
    c: &mut Criterion,
    name: &str,
    store: Arc<dyn Store>,
    runtime: &tokio::runtime::Runtime,
) {
    let mut group = c.benchmark_group(format!("store/{name}"));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    for (label, settings, messages) in [
        (
            "group commit (batch 512, window 1ms)",
            CommitSettings {
                max_batch: 512,
                window: Duration::from_millis(1),
            },
            20_000,
        ),
        (
            "one message per commit",
            CommitSettings {
                max_batch: 1,
                window: Duration::ZERO,
            },
            1_000,
        ),
    ] {
        let hub = Hub::new(HubSettings::default());
        // Loaded, so that delivering renders each message for the room's history.
        hub.load(&RoomName::general(), &[], false);
        let (committer, _writer) = runtime.block_on(async {
            let sequencer = Sequencer::start(Arc::clone(&store), hub).await.unwrap();
            Committer::start(
                Arc::clone(&store),
                sequencer,
                Arc::new(LocalBroker),
                settings,
                CancellationToken::new(),
            )
        });
        group.throughput(Throughput::Elements(messages as u64));
        group.bench_function(label, |b| {
            b.iter_custom(|iterations| {
                runtime.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iterations {
                        burst(&committer, messages).await;
                    }
                    started.elapsed()
                })
            });
        });
    }
    group.finish();
}

fn stores(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = DatabaseUrl::new(format!(
        "sqlite://{}",
        dir.path().join("bench.db").display()
    ));
    let store = runtime.block_on(store::open(&sqlite)).unwrap();
    bench_backend(c, "sqlite", store, &runtime);

    match std::env::var("HUBBUB_TEST_POSTGRES_URL") {
        Ok(server) => {
            let schema = format!("hubbub_bench_{}", std::process::id());
            let url = runtime.block_on(async {
                let admin = sqlx::PgPool::connect(&server).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&admin)
                    .await
                    .unwrap();
                let separator = if server.contains('?') { '&' } else { '?' };
                DatabaseUrl::new(format!("{server}{separator}options[search_path]={schema}"))
            });
            let store = runtime.block_on(store::open(&url)).unwrap();
            bench_backend(c, "postgres", store, &runtime);
            runtime.block_on(async {
                let admin = sqlx::PgPool::connect(&server).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                    .execute(&admin)
                    .await
                    .unwrap();
            });
        }
        Err(_) => {
            eprintln!("postgres benchmarks SKIPPED: set HUBBUB_TEST_POSTGRES_URL to run them")
        }
    }
}

criterion_group!(benches, stores);
criterion_main!(benches);
