#!/usr/bin/env bash
# Side-by-side load runs of hubbub and the seed design (../shared/bench/seed-go), interleaved,
# each server pinned to core 0 and the load tool to core 1. Prints a Markdown table and, with
# --write, appends it to BENCHMARKS.md under a dated heading.
#
#   scripts/bench.sh [--write] [--clients N] [--senders N] [--rates "100 500 1000"] \
#                    [--runs 2] [--duration 10s] [--warmup 2s] \
#                    [--hubbub-a PATH] [--hubbub-b PATH] [--name-a NAME] [--name-b NAME] [--no-seed]
#                    [--bun]
#
# --hubbub-a is the hubbub binary to run (default ./target/release/hubbub, built first). With
# --hubbub-b a second hubbub binary runs too, interleaved with the first (each rate runs A,
# B, then the seed design), so an old and a new build are compared in one session, on the
# machine as it is then. Their rows are labelled --name-a and --name-b (default "hubbub" and
# "hubbub B"). --no-seed leaves the seed design out (no Go needed). --bun runs Bun's native
# pub/sub server (../shared/bench/bun-pubsub) too, after the seed design, installed into
# /tmp/bun-pubsub from the npm registry on first use (npm needed).
#
# Needs: cargo, python3, and for the seed design Go with Debian's gorilla/uuid packages:
#   apt-get install -y golang-go golang-github-gorilla-websocket-dev golang-github-google-uuid-dev
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

write=no clients=1000 senders=10 rates="100 500 1000" runs=2 duration=10s warmup=2s
bin_a=./target/release/hubbub bin_b="" name_a=hubbub name_b="hubbub B" seed_too=yes bun_too=no
while [ $# -gt 0 ]; do
  case "$1" in
    --write) write=yes ;;
    --clients) clients=$2; shift ;;
    --senders) senders=$2; shift ;;
    --rates) rates=$2; shift ;;
    --runs) runs=$2; shift ;;
    --duration) duration=$2; shift ;;
    --warmup) warmup=$2; shift ;;
    --hubbub-a) bin_a=$2; shift ;;
    --hubbub-b) bin_b=$2; shift ;;
    --name-a) name_a=$2; shift ;;
    --name-b) name_b=$2; shift ;;
    --no-seed) seed_too=no ;;
    --bun) bun_too=yes ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
servers="a"
[ -z "$bin_b" ] || servers="$servers b"
[ "$seed_too" = no ] || servers="$servers seed"
[ "$bun_too" = no ] || servers="$servers bun"

build_release
seed=/tmp/seed-go/seed-go
if [ "$seed_too" = yes ] && [ ! -x "$seed" ]; then
  ../shared/bench/seed-go/build.sh "$seed" >&2
fi
bun_dir=/tmp/bun-pubsub
bun=$bun_dir/node_modules/@oven/bun-linux-x64/bin/bun
if [ "$bun_too" = yes ] && [ ! -x "$bun" ]; then
  rm -rf "$bun_dir" && cp -r ../shared/bench/bun-pubsub "$bun_dir"
  (cd "$bun_dir" && npm ci --silent) >&2
fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

run_one() { # server (a, b or seed) rate -> one JSON line on stdout
  local server=$1 rate=$2 port pid bin
  if [ "$server" = bun ]; then
    port=3944
    taskset -c 0 "$bun" "$bun_dir/server.js" --addr "127.0.0.1:$port" >"$work/server.log" 2>&1 &
  elif [ "$server" != seed ]; then
    if [ "$server" = a ]; then port=3941 bin=$bin_a; else port=3943 bin=$bin_b; fi
    rm -f "$work"/bench.db*
    taskset -c 0 "$bin" --addr "127.0.0.1:$port" \
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
    for server in $servers; do   # interleaved: each rate runs every server back to back
      case "$server" in
        a) label="$name_a (SQLite)" ;;
        b) label="$name_b (SQLite)" ;;
        bun) label="Bun $("$bun" --version) publish" ;;
        *) label="seed design" ;;
      esac
      echo "run $run, rate $rate, $label" >&2
      line=$(run_one "$server" "$rate")
      [ -n "$line" ] && echo "{\"server\":\"$label\",\"run\":$run,\"rate\":$rate,\"report\":$line}" >>"$results"
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
    print(f"| {r['server']} | {r['run']} | {r['rate']} "
          f"| {p['messages_per_second']:.0f} | {p['deliveries_per_second']:,.0f} | {p['loss_ratio']*100:.3f}% "
          f"| {p['dropped']:,} of {p['connected']:,} "
          f"| {l['p50']:.1f} / {l['p99']:.1f} / {l['max']:.1f} | {'' if rss is None else f'{rss:.1f} KiB'} "
          f"| {p['connections_per_second']:,.0f} | {cpu} | {tool} |")
PY
)
echo "$table"
if [ "$write" = yes ]; then
  command="scripts/bench.sh --clients $clients --senders $senders --rates \"$rates\" --runs $runs --duration $duration --warmup $warmup"
  [ "$bin_a" = ./target/release/hubbub ] || command="$command --hubbub-a $bin_a"
  [ -z "$bin_b" ] || command="$command --hubbub-b $bin_b --name-a \"$name_a\" --name-b \"$name_b\""
  [ "$seed_too" = yes ] || command="$command --no-seed"
  [ "$bun_too" = no ] || command="$command --bun"
  append_to_benchmarks scripts/bench.sh "$command" "$table"
fi
