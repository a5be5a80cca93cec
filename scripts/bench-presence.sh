#!/usr/bin/env bash
# Presence across nodes under a connect storm: two hubbub nodes on PostgreSQL and Redis,
# N idle clients (each its own guest) spread over both in #general by the load tool
# (`--also-url`). For each binary given (say, before and after a change; runs interleave
# them), reports connections/s, the RSS node A gains per connection it holds, node A's
# CPU time from start to the end of the hold, the most people node B's page counted (polled
# every 100 ms), and when (counted from the first connect) it first counted everyone,
# which with shared presence means A's users reached B. Both nodes are pinned to core 0, the load tool to core 1; PostgreSQL and Redis are the
# machine's own. Prints a Markdown table.
#
#   scripts/bench-presence.sh [--clients 4000] [--runs 2] [--hold 10s] [BINARY ...]
#
# BINARY defaults to ./target/release/hubbub (built first). Needs PostgreSQL at
# $HUBBUB_BENCH_POSTGRES (default postgres://postgres@127.0.0.1:5432), where it may create
# and drop the database `hubbub_bench`, and Redis at $HUBBUB_BENCH_REDIS (default
# redis://127.0.0.1:6379).
set -euo pipefail
cd "$(dirname "$0")/.."

clients=4000 runs=2 hold=10s binaries=()
while [ $# -gt 0 ]; do
  case "$1" in
    --clients) clients=$2; shift ;;
    --runs) runs=$2; shift ;;
    --hold) hold=$2; shift ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) binaries+=("$1") ;;
  esac
  shift
done
pg=${HUBBUB_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}
redis=${HUBBUB_BENCH_REDIS:-redis://127.0.0.1:6379}

cargo build --release --quiet --bin hubbub --bin hubbub-load
[ ${#binaries[@]} -gt 0 ] || binaries=(./target/release/hubbub)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

wait_port() {
  for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "server on port $1 did not start" >&2; return 1
}

cpu_seconds() { # pid -> user + system CPU seconds so far
  awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"
}

count_on() { # port -> the presence count on that node's page
  curl -s "http://127.0.0.1:$1/" | sed -n 's/.*<span id="presence-count" class="count">\([0-9]*\)<.*/\1/p'
}

run_one() { # binary -> one JSON line
  local bin=$1 a b
  psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS hubbub_bench" -c "CREATE DATABASE hubbub_bench" >/dev/null
  # Both nodes on one channel of their own.
  local channel="hubbub-bench-$$-$RANDOM"
  taskset -c 0 "$bin" --addr 127.0.0.1:3971 --database "$pg/hubbub_bench" --redis "$redis" \
    --redis-channel "$channel" --log warn --max-connections 20000 >>"$work/server.log" 2>&1 &
  a=$!
  wait_port 3971
  taskset -c 0 "$bin" --addr 127.0.0.1:3972 --database "$pg/hubbub_bench" --redis "$redis" \
    --redis-channel "$channel" --log warn --max-connections 20000 >>"$work/server.log" 2>&1 &
  b=$!
  wait_port 3972
  sleep 1
  local started_at cpu_start
  cpu_start=$(cpu_seconds "$a")
  started_at=$(date +%s.%N)
  taskset -c 1 ./target/release/hubbub-load --url "http://127.0.0.1:3971/" \
    --also-url "http://127.0.0.1:3972/" --clients "$clients" --idle --duration "$hold" \
    --server-pid "$a" 2>/dev/null | tail -n 1 >"$work/report.json" &
  local load=$! seen=0 seen_at="" count
  while kill -0 "$load" 2>/dev/null; do
    count=$(count_on 3972)
    count=${count:-0}
    if [ -z "$seen_at" ] && [ "$count" -ge "$clients" ]; then
      seen_at=$(date +%s.%N)
    fi
    [ "$count" -le "$seen" ] || seen=$count
    sleep 0.1
  done
  wait "$load" || true
  local cpu_end
  cpu_end=$(cpu_seconds "$a")
  kill "$a" "$b" 2>/dev/null || true
  wait "$a" "$b" 2>/dev/null || true
  python3 - "$work/report.json" "$bin" "$started_at" "${seen_at:-}" "${seen:-0}" "$cpu_start" "$cpu_end" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
bin, started, seen_at, seen, cpu0, cpu1 = sys.argv[2:8]
print(json.dumps({
    "binary": bin,
    "report": report,
    "all_on_b_after_s": (float(seen_at) - float(started)) if seen_at else None,
    "count_on_b": int(seen),
    "cpu_a_s": float(cpu1) - float(cpu0),
}))
PY
}

results="$work/results.jsonl"
for run in $(seq "$runs"); do
  for bin in "${binaries[@]}"; do
    echo "run $run, $bin" >&2
    run_one "$bin" | sed "s/^{/{\"run\":$run,/" >>"$results"
  done
done
psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS hubbub_bench" >/dev/null || true

python3 - "$results" "$clients" <<'PY'
import json, sys
clients = int(sys.argv[2])
print("| run | binary | connected | connections/s | node A RSS per connection | node A CPU s | most B's page counted | all on B after |")
print("|---|---|---|---|---|---|---|---|")
for line in open(sys.argv[1]):
    r = json.loads(line); p = r["report"]
    per = None
    if p.get("rss_after_connect_kib") is not None and p.get("rss_before_kib") is not None:
        per = (p["rss_after_connect_kib"] - p["rss_before_kib"]) / (p["connected"] / 2)
    after = f"{r['all_on_b_after_s']:.2f} s" if r["all_on_b_after_s"] is not None else "never"
    print(f"| {r['run']} | {r['binary']} | {p['connected']:,} | {p['connections_per_second']:,.0f} "
          f"| {per:.2f} KiB | {r['cpu_a_s']:.2f} | {r['count_on_b']:,} of {clients:,} | {after} |")
PY
