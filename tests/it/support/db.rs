//! A database of its own for every test: a SQLite file in a temporary directory, or a
//! schema of its own in the PostgreSQL server named by `HUBBUB_TEST_POSTGRES_URL`, dropped
//! when the test ends. Without that variable a PostgreSQL test skips, saying why (in CI it
//! fails). `both_backends!` runs one test body on each. Tests that break the database on
//! purpose reach it directly through [`TestDb::execute`] and read what was really stored
//! with [`TestDb::stored`].

use std::sync::atomic::{AtomicU64, Ordering};

use hubbub::store::DatabaseUrl;

use super::configured;

/// A name part no other test (in this process or another) has: process, counter, clock.
pub fn unique_suffix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

/// A database for one test: a SQLite file in a temporary directory, or a schema of its own
/// in the PostgreSQL server named by `HUBBUB_TEST_POSTGRES_URL`.
pub struct TestDb {
    pub url: DatabaseUrl,
    pub backend: Backend,
    /// Removed (with the SQLite file) when the test ends.
    _dir: Option<tempfile::TempDir>,
    /// `(server URL, schema)` to drop at the end.
    schema: Option<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const POSTGRES_ENV: &str = "HUBBUB_TEST_POSTGRES_URL";

/// Connects to `$db` with the pool type of its backend, runs `$body` with it as `$pool`,
/// closes the pool and gives `$body`'s result (a `Result`; a failed connect is its `Err`).
macro_rules! with_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db.backend {
            Backend::Sqlite => match sqlx::SqlitePool::connect($db.url.expose()).await {
                Ok($pool) => {
                    let done = $body;
                    $pool.close().await;
                    done
                }
                Err(err) => Err(err),
            },
            Backend::Postgres => match sqlx::PgPool::connect($db.url.expose()).await {
                Ok($pool) => {
                    let done = $body;
                    $pool.close().await;
                    done
                }
                Err(err) => Err(err),
            },
        }
    };
}

impl TestDb {
    pub fn sqlite() -> Self {
        super::log::init();
        let dir = tempfile::tempdir().unwrap();
        let url = DatabaseUrl::new(format!(
            "sqlite://{}",
            dir.path().join("hubbub.db").display()
        ));
        Self {
            url,
            backend: Backend::Sqlite,
            _dir: Some(dir),
            schema: None,
        }
    }

    /// A database the test set up itself (a private server, a file on a mount of its own);
    /// the test cleans it up.
    pub fn at(url: DatabaseUrl, backend: Backend) -> Self {
        super::log::init();
        Self {
            url,
            backend,
            _dir: None,
            schema: None,
        }
    }

    /// `None` (and a printed reason) when no PostgreSQL is configured; a panic in CI.
    pub async fn postgres(test: &str) -> Option<Self> {
        super::log::init();
        let server = configured(
            POSTGRES_ENV,
            test,
            "postgres://postgres@127.0.0.1:5432/test",
        )?;
        let schema = format!("hubbub_test_{}", unique_suffix());
        let admin = sqlx::PgPool::connect(&server).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let separator = if server.contains('?') { '&' } else { '?' };
        // Named after the schema, so that the end of the test can find its sessions.
        let url = DatabaseUrl::new(format!(
            "{server}{separator}options[search_path]={schema}&application_name={schema}"
        ));
        Some(Self {
            url,
            backend: Backend::Postgres,
            _dir: None,
            schema: Some((server, schema)),
        })
    }

    /// Runs SQL against the test database directly (for injecting faults).
    pub async fn execute(&self, sql: &str) -> Result<(), sqlx::Error> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        with_pool!(self, |pool| sqlx::raw_sql(sql)
            .execute(&pool)
            .await
            .map(drop))
    }

    /// Every stored message, `(id, text)`, read from the database directly.
    pub async fn stored(&self) -> Vec<(i64, String)> {
        const SQL: &str = "SELECT id, body FROM messages ORDER BY id";
        let rows: Result<_, sqlx::Error> =
            with_pool!(self, |pool| sqlx::query_as(SQL).fetch_all(&pool).await);
        rows.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((server, schema)) = self.schema.take() else {
            return;
        };
        // Drop the schema on a thread of its own: `Drop` cannot await.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(admin) = sqlx::PgPool::connect(&server).await {
                    // The test's server may still run in the test's runtime, which this
                    // drop blocks, in the middle of a commit: its transaction would hold
                    // locks DROP SCHEMA waits for, and the insert lock every PostgreSQL
                    // test shares, until the idle-in-transaction timeout (10 s), failing
                    // other tests meanwhile (seen twice in full runs). End those sessions.
                    let _ = sqlx::query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE application_name = $1 AND pid <> pg_backend_pid()",
                    )
                    .bind(&schema)
                    .execute(&admin)
                    .await;
                    let _ =
                        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                            .execute(&admin)
                            .await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

/// Runs a test body once per backend: `sqlite` always, `postgres` when configured.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(std::sync::Arc::new($crate::support::db::TestDb::sqlite())).await;
            }

            #[tokio::test]
            async fn postgres() {
                let test = concat!(module_path!(), "::postgres");
                if let Some(db) = $crate::support::db::TestDb::postgres(test).await {
                    super::$name(std::sync::Arc::new(db)).await;
                }
            }
        }
    };
}
