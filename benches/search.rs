//! Full-text search latency over a long history: N messages (1,000,000 by default) in 100
//! rooms from 500 authors, searched through `Store::search` exactly as the search page
//! does (21 rows: a page of 20 and one to know there are more, newest first), on SQLite
//! always and on PostgreSQL when `HUBBUB_TEST_POSTGRES_URL` is set. Prints Markdown tables
//! (p50 / p95 / max per case and store, seeding time, database sizes) to stdout, progress
//! to stderr.
//!
//! ```sh
//! cargo bench --bench search
//! HUBBUB_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --bench search
//! scripts/bench-search.sh       # the same, with PostgreSQL at that URL by default
//! ```
//!
//! Environment:
//! - `HUBBUB_SEARCH_BENCH_MESSAGES`: how many messages to seed (default 1,000,000).
//! - `HUBBUB_SEARCH_BENCH_KEEP=1`: keep both databases afterwards (their place is printed),
//!   to look at query plans with `sqlite3` or `psql`.
//! - `HUBBUB_SEARCH_BENCH_SQLITE=/path/x.db`, `HUBBUB_SEARCH_BENCH_SCHEMA=name`: use this
//!   SQLite file or PostgreSQL schema instead of a fresh one, seeding it only when it has no
//!   messages (the texts are deterministic, so a kept database can be measured again without
//!   seeding it again); neither is removed afterwards.
//! - `HUBBUB_SEARCH_BENCH_STORES=sqlite` or `postgres`: measure only one of them.
//! - `HUBBUB_SEARCH_BENCH_PG_URL_EXTRA`: added to PostgreSQL's URL (after `&`), to try a
//!   session setting, e.g. `options[plan_cache_mode]=force_custom_plan`.
//!
//! The texts: 5 to 30 words each, drawn from a Zipf distribution (exponent 1.0) over 20,000
//! synthetic words. The words are made of syllables and end in a consonant the English
//! stemmers leave alone; about half of the stems also appear with "s", "ed", "ing" or "er",
//! as separate words of their own rank, so a stem's frequency is the sum of its forms'. A
//! query names a stem by its rank among stems (1 is the most frequent) and searches for its
//! bare form. Five more words are planted in one message in 100,000 each (a very rare word),
//! five others are in no message (a typo). 99 rooms share the messages equally; the 100th
//! is a quiet room with a twentieth of a room's share, so a common word is rare in it.
//! Everything comes from one fixed seed: every run writes the same messages.
//!
//! Each case runs `QUERIES` searches, cycling over five stems (or pairs) of about the same
//! rank and, for a search in one room, five rooms, after `WARMUP` searches that are not
//! timed. A time is one `Store::search` call from the caller's side: the query, the rows and
//! their excerpts, and the decoding. After the first seeding PostgreSQL's table gets a
//! `VACUUM ANALYZE` (as autovacuum would give it); SQLite is measured as the inserts left it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hubbub::domain::{DisplayName, MessageText, NewMessage, RoomName, SearchTerms, Write};
use hubbub::store::{self, DatabaseUrl, Store};

const DEFAULT_MESSAGES: usize = 1_000_000;
const ROOMS: usize = 100;
const AUTHORS: usize = 500;
const VOCABULARY: usize = 20_000;
const ZIPF_EXPONENT: f64 = 1.0;
const SHORTEST: usize = 5;
const LONGEST: usize = 30;
/// Messages per `Store::append` while seeding.
const BATCH: usize = 2_000;
/// What the search page asks for: 20 results and one more, to know there are more.
const PAGE: u32 = 21;
const QUERIES: usize = 200;
const WARMUP: usize = 20;
/// The goal for every case.
const GOAL_MS: f64 = 50.0;
const SEED: u64 = 0x5EA2_C4B3_0000_0014;

/// splitmix64: small, fast, and the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// Syllables: a stem is one to two onset-vowel pairs and a closed last syllable. Its last
/// letter is a consonant that ends no English suffix (no "s", "e", "d", "r", "l", "t", "y"),
/// so both stemmers keep a stem as it is and reduce "-s", "-ed", "-ing" and "-er" to it.
const ONSETS: [&str; 24] = [
    "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "t", "v", "z", "br", "tr", "gl", "st", "pl",
    "ch", "sh", "th", "fr", "gr", "sp",
];
const VOWELS: [&str; 5] = ["a", "e", "i", "o", "u"];
const CODAS: [&str; 6] = ["b", "g", "k", "m", "n", "p"];
const SUFFIXES: [&str; 4] = ["s", "ed", "ing", "er"];

/// The words messages are made of, and the stems queries are made of.
struct Vocabulary {
    /// By rank: `words[0]` is the most frequent.
    words: Vec<String>,
    /// The Zipf distribution's cumulative weights, in rank order, ending at 1.
    cdf: Vec<f64>,
    /// Each stem's bare form, the most frequent stem first (by the summed weight of its
    /// forms).
    stems: Vec<String>,
}

impl Vocabulary {
    fn new(rng: &mut Rng) -> Self {
        let mut seen = HashSet::new();
        let mut bare: Vec<String> = Vec::new();
        // (word, index of its stem in `bare`)
        let mut forms: Vec<(String, usize)> = Vec::new();
        while forms.len() < VOCABULARY {
            let mut stem = String::new();
            for _ in 0..=rng.below(2) {
                stem.push_str(rng.pick(&ONSETS));
                stem.push_str(rng.pick(&VOWELS));
            }
            stem.push_str(rng.pick(&ONSETS));
            stem.push_str(rng.pick(&VOWELS));
            stem.push_str(rng.pick(&CODAS));
            if !seen.insert(stem.clone()) {
                continue;
            }
            let index = bare.len();
            // About half the stems have only their bare form; the others one to four more.
            let extra = match rng.below(20) {
                0..=9 => 0,
                10..=14 => 1,
                15..=17 => 2,
                18 => 3,
                _ => 4,
            };
            let mut suffixes = SUFFIXES;
            rng.shuffle(&mut suffixes);
            for suffix in &suffixes[..extra] {
                forms.push((format!("{stem}{suffix}"), index));
            }
            forms.push((stem.clone(), index));
            bare.push(stem);
        }
        forms.truncate(VOCABULARY);
        rng.shuffle(&mut forms);

        let weights: Vec<f64> = (1..=forms.len())
            .map(|rank| 1.0 / (rank as f64).powf(ZIPF_EXPONENT))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut cdf = Vec::with_capacity(weights.len());
        let mut sum = 0.0;
        for weight in &weights {
            sum += weight / total;
            cdf.push(sum);
        }
        let mut stem_weight = vec![0.0; bare.len()];
        for ((_, stem), weight) in forms.iter().zip(&weights) {
            stem_weight[*stem] += weight;
        }
        let mut order: Vec<usize> = (0..bare.len())
            .filter(|&stem| stem_weight[stem] > 0.0)
            .collect();
        order.sort_by(|&a, &b| stem_weight[b].total_cmp(&stem_weight[a]));
        Self {
            words: forms.into_iter().map(|(word, _)| word).collect(),
            cdf,
            stems: order.into_iter().map(|stem| bare[stem].clone()).collect(),
        }
    }

    fn word(&self, rng: &mut Rng) -> &str {
        let u = rng.unit();
        let rank = self.cdf.partition_point(|&c| c < u);
        &self.words[rank.min(self.words.len() - 1)]
    }

    fn text(&self, rng: &mut Rng) -> String {
        let n = SHORTEST + rng.below(LONGEST - SHORTEST + 1);
        let mut text = String::new();
        for i in 0..n {
            if i > 0 {
                text.push(' ');
            }
            text.push_str(self.word(rng));
        }
        text.push('.');
        text
    }

    /// The bare form of the stem of this rank (1 is the most frequent).
    fn stem(&self, rank: usize) -> &str {
        &self.stems[rank - 1]
    }
}

/// Words no generated word can be (the vocabulary's words never end in "x"), each put
/// into every `PLANT_EVERY`th message at its own offset: about ten messages each in a
/// million, spread evenly over the history.
const PLANTED: [&str; 5] = ["zanthrix", "quolvex", "brimtox", "kwenlox", "plunkrix"];
const PLANT_EVERY: usize = 100_000;
/// Words that no message holds (not generated, not planted): a typo, a word nobody wrote.
const ABSENT: [&str; 5] = ["zanthrox", "quolvix", "brimtex", "kwenlix", "plunkrox"];

/// The rooms a search in one room cycles over: five of the ordinary rooms.
const QUERY_ROOMS: [usize; 5] = [7, 23, 48, 71, 94];
/// A quiet room: it gets `1 / QUIET_SHARE` of an ordinary room's messages (about 500 of a
/// million), so a common word has few matches in it.
const QUIET_ROOM: usize = ROOMS - 1;
const QUIET_SHARE: usize = 20;

fn room_name(room: usize) -> RoomName {
    RoomName::parse(&format!("room-{room:02}")).unwrap()
}

/// Where a case searches.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    AllRooms,
    /// Each of `QUERY_ROOMS` in turn.
    OneRoom,
    /// `QUIET_ROOM`.
    QuietRoom,
}

impl Scope {
    fn label(self) -> &'static str {
        match self {
            Scope::AllRooms => "all rooms",
            Scope::OneRoom => "one room",
            Scope::QuietRoom => "quiet room",
        }
    }

    fn rooms(self) -> Vec<Option<RoomName>> {
        match self {
            Scope::AllRooms => vec![None],
            Scope::OneRoom => QUERY_ROOMS.iter().map(|&r| Some(room_name(r))).collect(),
            Scope::QuietRoom => vec![Some(room_name(QUIET_ROOM))],
        }
    }
}

/// What a case searches for, and where.
struct Case {
    label: &'static str,
    /// What the words are, in the table.
    words: String,
    /// Five queries, each one or two words, cycled over.
    queries: Vec<String>,
    scope: Scope,
    /// The second page: `before` is the 20th result of the first page.
    second_page: bool,
}

fn cases(vocabulary: &Vocabulary) -> Vec<Case> {
    let around = |rank: usize| -> Vec<String> {
        (rank - 2..=rank + 2)
            .map(|r| vocabulary.stem(r).to_owned())
            .collect()
    };
    let pairs = |a: usize, b: usize| -> Vec<String> {
        (0..5)
            .map(|i| format!("{} {}", vocabulary.stem(a + i), vocabulary.stem(b + i)))
            .collect()
    };
    let listed = |words: &[&str]| -> Vec<String> { words.iter().map(|&w| w.to_owned()).collect() };
    let case = |label, words: &str, queries, scope, second_page| Case {
        label,
        words: words.to_owned(),
        queries,
        scope,
        second_page,
    };
    let mut cases = Vec::new();
    for scope in [Scope::AllRooms, Scope::OneRoom] {
        cases.push(case(
            "frequent word",
            "stem rank 18–22",
            around(20),
            scope,
            false,
        ));
        cases.push(case(
            "mid-frequency word",
            "stem rank 498–502",
            around(500),
            scope,
            false,
        ));
        cases.push(case(
            "rare word",
            "stem rank 4,998–5,002",
            around(5_000),
            scope,
            false,
        ));
        cases.push(case(
            "very rare word",
            "planted, one message in 100,000",
            listed(&PLANTED),
            scope,
            false,
        ));
        cases.push(case(
            "absent word",
            "in no message",
            listed(&ABSENT),
            scope,
            false,
        ));
        cases.push(case(
            "two mid-frequency words",
            "stem ranks 490–494 + 506–510",
            pairs(490, 506),
            scope,
            false,
        ));
        cases.push(case(
            "frequent + rare word",
            "stem ranks 18–22 + 4,998–5,002",
            pairs(18, 4_998),
            scope,
            false,
        ));
        cases.push(case(
            "frequent word, second page",
            "stem rank 18–22",
            around(20),
            scope,
            true,
        ));
    }
    cases.push(case(
        "frequent word",
        "stem rank 18–22",
        around(20),
        Scope::QuietRoom,
        false,
    ));
    cases.push(case(
        "mid-frequency word",
        "stem rank 498–502",
        around(500),
        Scope::QuietRoom,
        false,
    ));
    cases
}

/// A direct connection to the seeded database, for counting and sizing.
enum Direct {
    Sqlite(sqlx::SqlitePool, PathBuf),
    Postgres(sqlx::PgPool),
}

impl Direct {
    /// How many messages hold every word of `query` (in `room`, or in any).
    async fn count(&self, query: &str, room: Option<&str>) -> i64 {
        match self {
            Direct::Sqlite(pool, _) => {
                let terms = SearchTerms::parse(query).unwrap();
                let fts: Vec<String> = terms.words().iter().map(|w| format!("\"{w}\"")).collect();
                let fts = fts.join(" AND ");
                match room {
                    None => sqlx::query_scalar(
                        "SELECT count(*) FROM messages_search WHERE messages_search MATCH ?",
                    )
                    .bind(fts)
                    .fetch_one(pool)
                    .await
                    .unwrap(),
                    Some(room) => sqlx::query_scalar(
                        "SELECT count(*) FROM messages_search \
                         JOIN messages m ON m.id = messages_search.rowid \
                         WHERE messages_search MATCH ? AND m.room = ?",
                    )
                    .bind(fts)
                    .bind(room)
                    .fetch_one(pool)
                    .await
                    .unwrap(),
                }
            }
            Direct::Postgres(pool) => match room {
                None => sqlx::query_scalar(
                    "SELECT count(*) FROM messages \
                     WHERE search @@ plainto_tsquery('english', $1) AND target IS NULL",
                )
                .bind(query)
                .fetch_one(pool)
                .await
                .unwrap(),
                Some(room) => sqlx::query_scalar(
                    "SELECT count(*) FROM messages \
                     WHERE search @@ plainto_tsquery('english', $1) AND target IS NULL \
                     AND room = $2",
                )
                .bind(query)
                .bind(room)
                .fetch_one(pool)
                .await
                .unwrap(),
            },
        }
    }

    async fn messages(&self) -> i64 {
        const SQL: &str = "SELECT count(*) FROM messages";
        match self {
            Direct::Sqlite(pool, _) => sqlx::query_scalar(SQL).fetch_one(pool).await.unwrap(),
            Direct::Postgres(pool) => sqlx::query_scalar(SQL).fetch_one(pool).await.unwrap(),
        }
    }

    async fn room_messages(&self, room: &RoomName) -> i64 {
        const SQL: &str = "SELECT count(*) FROM messages WHERE room = $1";
        match self {
            Direct::Sqlite(pool, _) => sqlx::query_scalar(SQL)
                .bind(room.as_str())
                .fetch_one(pool)
                .await
                .unwrap(),
            Direct::Postgres(pool) => sqlx::query_scalar(SQL)
                .bind(room.as_str())
                .fetch_one(pool)
                .await
                .unwrap(),
        }
    }

    /// The database's size, in words for the table.
    async fn size(&self) -> String {
        match self {
            Direct::Sqlite(pool, path) => {
                let len = |path: &Path| std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                let main = len(path);
                let wal = len(&PathBuf::from(format!("{}-wal", path.display())));
                // dbstat is compiled into most builds; without it, only the files.
                let index: Option<i64> = sqlx::query_scalar(
                    "SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'messages_search%'",
                )
                .fetch_one(pool)
                .await
                .ok();
                let mut size = format!(
                    "{} (file {} + WAL {})",
                    mib(main + wal),
                    mib(main),
                    mib(wal)
                );
                if let Some(index) = index {
                    size.push_str(&format!(
                        "; FTS5 index {}",
                        mib(u64::try_from(index).unwrap_or(0))
                    ));
                }
                size
            }
            Direct::Postgres(pool) => {
                let (total, heap, index): (i64, i64, i64) = sqlx::query_as(
                    "SELECT pg_total_relation_size('messages'), pg_relation_size('messages'), \
                     pg_relation_size('messages_search')",
                )
                .fetch_one(pool)
                .await
                .unwrap();
                let bytes = |n: i64| mib(u64::try_from(n).unwrap_or(0));
                format!(
                    "{} (`pg_total_relation_size('messages')`; heap {}, GIN index {})",
                    bytes(total),
                    bytes(heap),
                    bytes(index)
                )
            }
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// One store under test.
struct Backend {
    name: &'static str,
    store: Arc<dyn Store>,
    direct: Direct,
    /// Where it is, and whether it outlives the run.
    place: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Keep,
    Dir(tempfile::TempDir),
    Schema { server: String, schema: String },
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

async fn sqlite_backend(keep: bool) -> Backend {
    let (path, cleanup) = match std::env::var("HUBBUB_SEARCH_BENCH_SQLITE") {
        Ok(path) => (PathBuf::from(path), Cleanup::Keep),
        Err(_) => {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("search.db");
            if keep {
                let _ = dir.keep();
                (path, Cleanup::Keep)
            } else {
                (path, Cleanup::Dir(dir))
            }
        }
    };
    let url = format!("sqlite://{}", path.display());
    let store = store::open(&DatabaseUrl::new(&url)).await.unwrap();
    let options = url.parse::<sqlx::sqlite::SqliteConnectOptions>().unwrap();
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap();
    Backend {
        name: "SQLite",
        store,
        direct: Direct::Sqlite(pool, path.clone()),
        place: path.display().to_string(),
        cleanup,
    }
}

async fn postgres_backend(server: String, keep: bool) -> Backend {
    let (schema, given) = match std::env::var("HUBBUB_SEARCH_BENCH_SCHEMA") {
        Ok(schema) => (schema, true),
        Err(_) => (format!("search_bench_{}", std::process::id()), false),
    };
    assert!(
        schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "a schema name of lower-case letters, digits and _, please: {schema}"
    );
    let admin = sqlx::PgPool::connect(&server).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS {schema}"
    )))
    .execute(&admin)
    .await
    .unwrap();
    admin.close().await;
    let separator = if server.contains('?') { '&' } else { '?' };
    let mut url =
        format!("{server}{separator}options[search_path]={schema}&application_name={schema}");
    // Session settings to try a fix with, e.g. `options[plan_cache_mode]=force_custom_plan`.
    if let Ok(extra) = std::env::var("HUBBUB_SEARCH_BENCH_PG_URL_EXTRA")
        && !extra.is_empty()
    {
        url = format!("{url}&{extra}");
    }
    let store = store::open(&DatabaseUrl::new(&url)).await.unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    Backend {
        name: "PostgreSQL",
        store,
        direct: Direct::Postgres(pool),
        // The URL as `DatabaseUrl` shows it: without a password.
        place: format!("schema {schema} ({})", DatabaseUrl::new(&url)),
        cleanup: if given || keep {
            Cleanup::Keep
        } else {
            Cleanup::Schema { server, schema }
        },
    }
}

/// Writes `messages` messages, `BATCH` at a time; returns how long it took.
async fn seed(store: &dyn Store, vocabulary: &Vocabulary, messages: usize) -> Duration {
    let rooms: Vec<RoomName> = (0..ROOMS).map(room_name).collect();
    let authors: Vec<DisplayName> = (0..AUTHORS)
        .map(|a| DisplayName::parse(&format!("author-{a}")).unwrap())
        .collect();
    let mut rng = Rng(SEED ^ 0x7E47);
    let started = Instant::now();
    let mut written = 0;
    let mut next_report = 100_000;
    while written < messages {
        let n = BATCH.min(messages - written);
        let batch: Vec<Write> = (written..written + n)
            .map(|i| {
                // Every ordinary room an equal share, the quiet one 1/QUIET_SHARE of it.
                let slot = rng.below((ROOMS - 1) * QUIET_SHARE + 1);
                let room = rooms[if slot == 0 {
                    QUIET_ROOM
                } else {
                    (slot - 1) / QUIET_SHARE
                }]
                .clone();
                let author = authors[rng.below(AUTHORS)].clone();
                let mut text = vocabulary.text(&mut rng);
                let offset = i % PLANT_EVERY;
                if offset.is_multiple_of(1_000) && offset / 1_000 < PLANTED.len() {
                    text = format!("{} {text}", PLANTED[offset / 1_000]);
                }
                let text = MessageText::parse(&text, 2_000).unwrap().unwrap();
                Write::Post(NewMessage::now(room, author, text))
            })
            .collect();
        store.append(&batch).await.unwrap();
        written += n;
        if written >= next_report {
            eprintln!(
                "  {written} messages in {:.0} s",
                started.elapsed().as_secs_f64()
            );
            next_report += 100_000;
        }
    }
    started.elapsed()
}

/// One row of the table.
struct Measured {
    store: &'static str,
    case: String,
    words: String,
    matching: String,
    results: String,
    p50: f64,
    p95: f64,
    max: f64,
}

/// Nearest-rank percentile of sorted milliseconds.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn range(values: &[i64]) -> String {
    let min = values.iter().min().copied().unwrap_or(0);
    let max = values.iter().max().copied().unwrap_or(0);
    if min == max {
        thousands(min)
    } else {
        format!("{}–{}", thousands(min), thousands(max))
    }
}

fn thousands(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

async fn measure(backend: &Backend, case: &Case) -> Option<Measured> {
    let store = &*backend.store;
    let terms: Vec<SearchTerms> = case
        .queries
        .iter()
        .map(|q| SearchTerms::parse(q).unwrap())
        .collect();
    // Every (query, room, before) a case cycles over: each query in all rooms, or in each
    // of the rooms, and before `u64::MAX` (the first page) or the first page's 20th result.
    let mut combos: Vec<(&SearchTerms, Option<&RoomName>, u64)> = Vec::new();
    let rooms = case.scope.rooms();
    for room in rooms.iter().map(Option::as_ref) {
        for query in &terms {
            if !case.second_page {
                combos.push((query, room, u64::MAX));
                continue;
            }
            let first = store.search(query, room, u64::MAX, PAGE).await.unwrap();
            // A small seeding may leave a room a page or less of a word.
            if first.len() >= 20 {
                combos.push((query, room, first[19].message.id));
            }
        }
    }
    if combos.is_empty() {
        eprintln!(
            "{}: {}: no second page anywhere, skipped",
            backend.name, case.label
        );
        return None;
    }
    let mut times = Vec::with_capacity(QUERIES);
    let mut found = Vec::with_capacity(QUERIES);
    for i in 0..WARMUP + QUERIES {
        let (query, room, before) = combos[i % combos.len()];
        let started = Instant::now();
        let results = store.search(query, room, before, PAGE).await.unwrap();
        let took = started.elapsed();
        if i >= WARMUP {
            times.push(took.as_secs_f64() * 1000.0);
            found.push(i64::try_from(results.len()).unwrap());
        }
    }
    times.sort_by(f64::total_cmp);

    // How many messages hold the words: in all rooms, or in each room searched.
    let mut counts = Vec::new();
    for query in &case.queries {
        for room in &rooms {
            let room = room.as_ref().map(RoomName::as_str);
            counts.push(backend.direct.count(query, room).await);
        }
    }
    Some(Measured {
        store: backend.name,
        case: format!("{}, {}", case.label, case.scope.label()),
        words: case.words.clone(),
        matching: range(&counts),
        results: range(&found),
        p50: percentile(&times, 50.0),
        p95: percentile(&times, 95.0),
        max: times[times.len() - 1],
    })
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(run());
}

async fn run() {
    let messages: usize = match std::env::var("HUBBUB_SEARCH_BENCH_MESSAGES") {
        Ok(n) => n.replace(['_', ','], "").parse().unwrap(),
        Err(_) => DEFAULT_MESSAGES,
    };
    let keep = env_flag("HUBBUB_SEARCH_BENCH_KEEP");
    let only = std::env::var("HUBBUB_SEARCH_BENCH_STORES").unwrap_or_default();
    let wanted = |name: &str| only.is_empty() || only.split(',').any(|s| s.trim() == name);

    let mut rng = Rng(SEED);
    let vocabulary = Vocabulary::new(&mut rng);
    let cases = cases(&vocabulary);

    let mut backends = Vec::new();
    if wanted("sqlite") {
        backends.push(sqlite_backend(keep).await);
    }
    if wanted("postgres") {
        match std::env::var("HUBBUB_TEST_POSTGRES_URL") {
            Ok(server) if !server.is_empty() => {
                backends.push(postgres_backend(server, keep).await);
            }
            _ => eprintln!("postgres SKIPPED: set HUBBUB_TEST_POSTGRES_URL to measure it"),
        }
    }

    let mut rows = Vec::new();
    let mut seeded = Vec::new();
    let mut quiet = None;
    for backend in &backends {
        if matches!(backend.cleanup, Cleanup::Keep) {
            eprintln!("{} (kept afterwards): {}", backend.name, backend.place);
        }
        let stored = backend.direct.messages().await;
        let seeding = if stored == 0 {
            eprintln!("{}: seeding {messages} messages", backend.name);
            let took = seed(&*backend.store, &vocabulary, messages).await;
            eprintln!("{}: seeded in {:.1} s", backend.name, took.as_secs_f64());
            if let Direct::Postgres(pool) = &backend.direct {
                let started = Instant::now();
                sqlx::query("VACUUM ANALYZE messages")
                    .execute(pool)
                    .await
                    .unwrap();
                eprintln!(
                    "{}: VACUUM ANALYZE in {:.1} s",
                    backend.name,
                    started.elapsed().as_secs_f64()
                );
            }
            let rate = messages as f64 / took.as_secs_f64();
            format!(
                "{:.1} s ({} messages/s, {BATCH} a batch)",
                took.as_secs_f64(),
                thousands(rate as i64)
            )
        } else {
            assert_eq!(
                stored,
                i64::try_from(messages).unwrap(),
                "{} holds {stored} messages, not the {messages} asked for",
                backend.place
            );
            eprintln!("{}: {stored} messages already there", backend.name);
            "(seeded by an earlier run)".to_owned()
        };
        seeded.push((backend.name, seeding, backend.direct.size().await));
        quiet = Some(backend.direct.room_messages(&room_name(QUIET_ROOM)).await);
        for case in &cases {
            let Some(row) = measure(backend, case).await else {
                continue;
            };
            eprintln!(
                "{}: {}: p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms",
                row.store, row.case, row.p50, row.p95, row.max
            );
            rows.push(row);
        }
    }

    let rooms = |rooms: &[usize]| -> String {
        let names: Vec<String> = rooms.iter().map(|&r| room_name(r).to_string()).collect();
        names.join(", ")
    };
    println!(
        "{} messages in {ROOMS} rooms from {AUTHORS} authors, {SHORTEST}–{LONGEST} words each \
         (Zipf, exponent {ZIPF_EXPONENT}, over {VOCABULARY} words); {QUERIES} searches a case \
         after {WARMUP} untimed, limit {PAGE}, one at a time. \"One room\" cycles over {}; \
         the quiet room is {} ({} messages).",
        thousands(i64::try_from(messages).unwrap()),
        rooms(&QUERY_ROOMS),
        rooms(&[QUIET_ROOM]),
        quiet.map_or_else(|| "?".to_owned(), thousands),
    );
    if let Ok(extra) = std::env::var("HUBBUB_SEARCH_BENCH_PG_URL_EXTRA")
        && !extra.is_empty()
    {
        println!();
        println!("PostgreSQL connections with `{extra}` added to the URL.");
    }
    println!();
    println!(
        "| store | case | words | messages holding them | results on the page | p50 ms | p95 ms | max ms | p95 < {GOAL_MS:.0} ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {} |",
            row.store,
            row.case,
            row.words,
            row.matching,
            row.results,
            row.p50,
            row.p95,
            row.max,
            if row.p95 < GOAL_MS { "yes" } else { "**no**" }
        );
    }
    println!();
    println!("| store | seeding | size |");
    println!("|---|---|---|");
    for (name, seeding, size) in &seeded {
        println!("| {name} | {seeding} | {size} |");
    }
    println!();
    println!("Words searched for (each case cycles over these):");
    println!();
    let mut listed = HashSet::new();
    for case in &cases {
        if listed.insert(case.words.clone()) {
            println!("- {}: {}", case.words, case.queries.join(", "));
        }
    }

    for backend in backends {
        let Backend {
            name,
            store,
            direct,
            place,
            cleanup,
        } = backend;
        drop(store);
        match direct {
            Direct::Sqlite(pool, _) => pool.close().await,
            Direct::Postgres(pool) => pool.close().await,
        }
        match cleanup {
            Cleanup::Keep => eprintln!("{name} kept: {place}"),
            Cleanup::Dir(dir) => drop(dir),
            Cleanup::Schema { server, schema } => {
                let admin = sqlx::PgPool::connect(&server).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                    .execute(&admin)
                    .await
                    .unwrap();
                admin.close().await;
            }
        }
    }
}
