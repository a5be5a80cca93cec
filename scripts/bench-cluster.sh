#!/usr/bin/env bash
# Cross-node delivery: one hubbub node against two nodes sharing PostgreSQL and Redis, same
# load, interleaved. With two nodes the load tool spreads its clients (and senders) over
# both (`--also-url`), so about half of all deliveries cross from one node to the other
# through Redis. Both nodes run on core 0 (as the single node does), the load tool on
# core 1; PostgreSQL and Redis are the machine's own. Prints a Markdown table and, with
# --write, appends it to BENCHMARKS.md.
#
#   scripts/bench-cluster.sh [--write] [--clients 1000] [--senders 10] [--rates "500 1000"] \
#                            [--runs 2] [--duration 10s]
#
# $HUBBUB_BENCH_BIN names another hubbub binary to run (default ./target/release/hubbub, built
# first), to compare builds. Needs PostgreSQL at $HUBBUB_BENCH_POSTGRES (default postgres://postgres@127.0.0.1:5432)
# where it may create and drop the database `hubbub_bench`, and Redis at $HUBBUB_BENCH_REDIS
# (default redis://127.0.0.1:6379).
set -euo pipefail
cd "$(dirname "$0")/.."

write=no clients=1000 senders=10 rates="500 1000" runs=2 duration=10s
while [ $# -gt 0 ]; do
  case "$1" in
    --write) write=yes ;;
    --clients) clients=$2; shift ;;
    --senders) senders=$2; shift ;;
    --rates) rates=$2; shift ;;
    --runs) runs=$2; shift ;;
    --duration) duration=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
pg=${HUBBUB_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}
redis=${HUBBUB_BENCH_REDIS:-redis://127.0.0.1:6379}
bin=${HUBBUB_BENCH_BIN:-./target/release/hubbub}

cargo build --release --quiet --bin hubbub --bin hubbub-load
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

wait_port() {
  for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "server on port $1 did not start" >&2; return 1
}

node() { # port -> starts a node on the bench database; its pid in $started
  taskset -c 0 "$bin" --addr "127.0.0.1:$1" --database "$pg/hubbub_bench" \
    --redis "$redis" --redis-channel "hubbub-bench-$$" --log warn \
    --message-rate 1000000 --message-burst 1000000 >>"$work/server.log" 2>&1 &
  started=$!
}

run_one() { # nodes rate -> one JSON line
  local nodes=$1 rate=$2 a b="" also=()
  psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS hubbub_bench" -c "CREATE DATABASE hubbub_bench" >/dev/null
  node 3961; a=$started
  wait_port 3961
  if [ "$nodes" = 2 ]; then
    node 3962; b=$started
    wait_port 3962
    also=(--also-url "http://127.0.0.1:3962/")
  fi
  taskset -c 1 ./target/release/hubbub-load --url "http://127.0.0.1:3961/" "${also[@]}" \
    --clients "$clients" --senders "$senders" --rate "$rate" --duration "$duration" \
    --warmup 2s 2>/dev/null | tail -n 1 || true
  kill "$a" ${b:+"$b"} 2>/dev/null || true
  wait "$a" ${b:+"$b"} 2>/dev/null || true
}

results="$work/results.jsonl"
for run in $(seq "$runs"); do
  for rate in $rates; do
    for nodes in 1 2; do
      echo "run $run, rate $rate, $nodes node(s)" >&2
      line=$(run_one "$nodes" "$rate")
      [ -n "$line" ] && echo "{\"nodes\":$nodes,\"run\":$run,\"rate\":$rate,\"report\":$line}" >>"$results"
    done
  done
done
psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS hubbub_bench" >/dev/null || true

table=$(python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| nodes | run | target msg/s | sent msg/s | deliveries/s | loss | dropped | p50 / p99 / max ms |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    p = r["report"]; l = p["latency_ms"]
    print(f"| {r['nodes']} | {r['run']} | {r['rate']} | {p['messages_per_second']:.0f} | {p['deliveries_per_second']:,.0f} "
          f"| {p['loss_ratio']*100:.3f}% | {p['dropped']:,} of {p['connected']:,} | {l['p50']:.1f} / {l['p99']:.1f} / {l['max']:.1f} |")
PY
)
echo "$table"
if [ "$write" = yes ]; then
  {
    echo
    echo "#### scripts/bench-cluster.sh, $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD)"
    echo
    echo "\`scripts/bench-cluster.sh --clients $clients --senders $senders --rates \"$rates\" --runs $runs --duration $duration\`"
    echo
    echo "$table"
  } >>BENCHMARKS.md
  echo "appended to BENCHMARKS.md" >&2
fi
