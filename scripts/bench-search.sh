#!/usr/bin/env bash
# Full-text search latency over a long history (benches/search.rs): seeds 1,000,000 messages
# in 100 rooms into a fresh SQLite file and a fresh schema of the PostgreSQL server below,
# then times Store::search as the search page calls it. Prints Markdown tables (p50 / p95 /
# max per case, seeding time, sizes) on stdout, progress on stderr.
#
#   scripts/bench-search.sh [extra cargo bench arguments]
#
# Environment (see benches/search.rs for all of it):
#   HUBBUB_TEST_POSTGRES_URL      default postgres://postgres@127.0.0.1:5432/test; set it
#                                 empty to measure SQLite alone
#   HUBBUB_SEARCH_BENCH_MESSAGES  default 1000000
#   HUBBUB_SEARCH_BENCH_KEEP=1    keep both databases, to look at query plans afterwards
set -euo pipefail
cd "$(dirname "$0")/.."

export HUBBUB_TEST_POSTGRES_URL=${HUBBUB_TEST_POSTGRES_URL-postgres://postgres@127.0.0.1:5432/test}
[ -n "$HUBBUB_TEST_POSTGRES_URL" ] || unset HUBBUB_TEST_POSTGRES_URL
exec cargo bench --bench search "$@"
