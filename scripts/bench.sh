#!/usr/bin/env bash
# Side-by-side load runs of hubbub and the seed design (../shared/bench/seed-go), interleaved,
# each server pinned to core 0 and the load tool to core 1. Prints a Markdown table and, with
# --write, appends it to BENCHMARKS.md under a dated heading.
#
#   scripts/bench.sh [--write] [--clients N] [--senders N] [--rates "100 500 1000"] \
#                    [--runs 2] [--duration 10s] [--warmup 2s]
#
# Needs: cargo, python3, and for the seed design Go with Debian's gorilla/uuid packages:
#   apt-get install -y golang-go golang-github-gorilla-websocket-dev golang-github-google-uuid-dev
set -euo pipefail
cd "$(dirname "$0")/.."

write=no clients=1000 senders=10 rates="100 500 1000" runs=2 duration=10s warmup=2s
while [ $# -gt 0 ]; do
  case "$1" in
    --write) write=yes ;;
    --clients) clients=$2; shift ;;
    --senders) senders=$2; shift ;;
    --rates) rates=$2; shift ;;
    --runs) runs=$2; shift ;;
    --duration) duration=$2; shift ;;
    --warmup) warmup=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

cargo build --release --quiet --bin hubbub --bin hubbub-load
seed=/tmp/seed-go/seed-go
if [ ! -x "$seed" ]; then
  ../shared/bench/seed-go/build.sh "$seed" >&2
fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

wait_port() { # wait until the port accepts connections (at most 10 s)
  for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "server on port $1 did not start" >&2; return 1
}

run_one() { # server rate run -> one JSON line on stdout
  local server=$1 rate=$2 port pid
  if [ "$server" = hubbub ]; then
    port=3941
    rm -f "$work"/bench.db*
    taskset -c 0 ./target/release/hubbub --addr "127.0.0.1:$port" \
      --database "sqlite://$work/bench.db" --log warn \
      --message-rate 1000000 --message-burst 1000000 >"$work/server.log" 2>&1 &
  else
    port=3942
    taskset -c 0 "$seed" -addr "127.0.0.1:$port" >"$work/server.log" 2>&1 &
  fi
  pid=$!
  wait_port "$port"
  taskset -c 1 ./target/release/hubbub-load --url "http://127.0.0.1:$port/" \
    --clients "$clients" --senders "$senders" --rate "$rate" --duration "$duration" \
    --warmup "$warmup" --server-pid "$pid" 2>/dev/null | tail -n 1 || true
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
}

results="$work/results.jsonl"
for run in $(seq "$runs"); do
  for rate in $rates; do
    for server in hubbub seed; do   # interleaved: each rate runs both servers back to back
      echo "run $run, rate $rate, $server" >&2
      line=$(run_one "$server" "$rate")
      [ -n "$line" ] && echo "{\"server\":\"$server\",\"run\":$run,\"rate\":$rate,\"report\":$line}" >>"$results"
    done
  done
done

table=$(python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| server | run | target msg/s | sent msg/s | deliveries/s | loss | connections dropped | p50 / p99 / max ms | RSS per connection | connections/s | server CPU µs per delivery | load tool CPU |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    p = r["report"]; l = p["latency_ms"]
    rss = p.get("rss_per_connection_kib")
    per = p.get("server_cpu_us_per_delivery")
    cpu = "" if per is None else f"{per:.3f}"
    own = p.get("load_cpu_percent")
    tool = "" if own is None else f"{own:.0f}%"
    print(f"| {'hubbub (SQLite)' if r['server']=='hubbub' else 'seed design'} | {r['run']} | {r['rate']} "
          f"| {p['messages_per_second']:.0f} | {p['deliveries_per_second']:,.0f} | {p['loss_ratio']*100:.3f}% "
          f"| {p['dropped']:,} of {p['connected']:,} "
          f"| {l['p50']:.1f} / {l['p99']:.1f} / {l['max']:.1f} | {'' if rss is None else f'{rss:.1f} KiB'} "
          f"| {p['connections_per_second']:,.0f} | {cpu} | {tool} |")
PY
)
echo "$table"
if [ "$write" = yes ]; then
  {
    echo
    echo "### scripts/bench.sh, $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD)"
    echo
    echo "\`scripts/bench.sh --clients $clients --senders $senders --rates \"$rates\" --runs $runs --duration $duration --warmup $warmup\`"
    echo
    echo "$table"
  } >>BENCHMARKS.md
  echo "appended to BENCHMARKS.md" >&2
fi
