#!/usr/bin/env bash
# Soak: a long run of mixed load against one release hubbub, recording the server's memory
# and the chat's latency every minute, to show that memory stays flat and nothing degrades.
# Not a CI test: it takes `--minutes` (30 by default).
#
#   scripts/soak.sh [--write] [--minutes 30] [--idle 2000] [--clients 500] [--senders 10] \
#                   [--rate 200]
#
# The mix, all at once:
# - `--idle` connections held for the whole run in room `lobby` (they only get presence);
# - every minute, `--clients` fresh connections to one of three rooms (`soak-0..2`, in turn)
#   of which `--senders` post `--rate` messages per second for 50 s, then all disconnect:
#   connection churn, fan-out, commits, and a history that grows all the time;
# - every two seconds, a page load and a "load older" page from the history (HTTP);
# - renames and refused posts are not part of the mix (the limits have their own tests).
# The server runs on core 0, the load on core 1. Each minute prints (and with --write,
# BENCHMARKS.md gets) one row: the server's RSS with the minute's clients connected and
# after they left, latency percentiles, messages sent, loss, dropped connections, and the
# database size.
set -euo pipefail
cd "$(dirname "$0")/.."

write=no minutes=30 idle=2000 clients=500 senders=10 rate=200
while [ $# -gt 0 ]; do
  case "$1" in
    --write) write=yes ;;
    --minutes) minutes=$2; shift ;;
    --idle) idle=$2; shift ;;
    --clients) clients=$2; shift ;;
    --senders) senders=$2; shift ;;
    --rate) rate=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

cargo build --release --quiet --bin hubbub --bin hubbub-load
work=$(mktemp -d)
port=3951
base="http://127.0.0.1:$port"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

taskset -c 0 ./target/release/hubbub --addr "127.0.0.1:$port" \
  --database "sqlite://$work/soak.db" --log warn \
  --message-rate 1000000 --message-burst 1000000 >"$work/server.log" 2>&1 &
server=$!
pids+=("$server")
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
rss_start=$(rss "$server")

# The idle population, for the whole run.
taskset -c 1 ./target/release/hubbub-load --url "$base/" --room lobby --idle \
  --clients "$idle" --duration "$((minutes * 60))s" >"$work/idle.json" 2>/dev/null &
idle_pid=$!
pids+=("$idle_pid")

# Page loads and history pages, every two seconds.
(
  while true; do
    room="soak-$((RANDOM % 3))"
    curl -s -o /dev/null "$base/rooms/$room" || true
    page=$(curl -s "$base/rooms/$room" || true)
    # The oldest message shown links the page before it, as the browser's "load older" does.
    older=$(grep -o 'history?before=[0-9]*' <<<"$page" | head -n 1 || true)
    [ -n "$older" ] && curl -s -o /dev/null "$base/rooms/$room/$older" || true
    sleep 2
  done
) &
pids+=("$!")

rows="$work/rows.jsonl"
echo "minute | RSS loaded KiB | RSS after KiB | p50 / p99 / max ms | sent | lost | dropped | db MiB" >&2
for minute in $(seq "$minutes"); do
  started=$(date +%s)
  room="soak-$((minute % 3))"
  report=$(taskset -c 1 ./target/release/hubbub-load --url "$base/" --room "$room" \
    --clients "$clients" --senders "$senders" --rate "$rate" --warmup 2s --duration 50s \
    --drain 3s --server-pid "$server" 2>/dev/null | tail -n 1 || true)
  sleep 2 # let the minute's clients go
  after=$(rss "$server")
  db=$(du -k "$work"/soak.db* | awk '{ s += $1 } END { printf "%.1f", s / 1024 }')
  line=$(python3 -c '
import json, sys
r = json.loads(sys.argv[1]) if sys.argv[1] else {}
l = r.get("latency_ms", {})
print(json.dumps({"minute": int(sys.argv[2]), "rss_loaded": r.get("rss_end_kib"),
  "rss_after": int(sys.argv[3]), "p50": l.get("p50"), "p99": l.get("p99"), "max": l.get("max"),
  "sent": r.get("sent"), "lost": r.get("lost"), "dropped": r.get("dropped"),
  "connected": r.get("connected"), "db_mib": float(sys.argv[4])}))
' "$report" "$minute" "$after" "$db")
  echo "$line" >>"$rows"
  python3 -c '
import json, sys
r = json.loads(sys.argv[1])
f = lambda v: "?" if v is None else "%.1f" % v
print("%6d | %s | %s | %s / %s / %s | %s | %s | %s | %s" % (r["minute"], r["rss_loaded"], r["rss_after"],
      f(r["p50"]), f(r["p99"]), f(r["max"]), r["sent"], r["lost"], r["dropped"], r["db_mib"]))
' "$line" >&2
  # Keep to one row a minute.
  left=$((started + 60 - $(date +%s)))
  [ "$left" -gt 0 ] && sleep "$left"
done

# The idle population's own report: were its connections kept the whole time?
wait "$idle_pid" || true
idle_report=$(tail -n 1 "$work/idle.json" 2>/dev/null || true)
table=$(python3 - "$rows" "$rss_start" "$idle" "$idle_report" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rss_start, idle = int(sys.argv[2]), int(sys.argv[3])
try:
    held = json.loads(sys.argv[4])
    idle_alive = f"{held['connected'] - held['dropped']:,} of {held['connected']:,} connected, {held['connect_failures']} failed to connect"
except (ValueError, KeyError):
    idle_alive = "no report from the idle clients"
f = lambda v, p=1: "?" if v is None else f"{v:.{p}f}"
print("| minute | RSS, minute's clients connected | RSS after they left | p50 / p99 / max ms | messages sent | lost | dropped | database |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['minute']} | {f(r['rss_loaded'] and r['rss_loaded'] / 1024)} MiB | {r['rss_after'] / 1024:.1f} MiB "
          f"| {f(r['p50'])} / {f(r['p99'])} / {f(r['max'])} | {r['sent']} | {r['lost']} | {r['dropped']} | {r['db_mib']} MiB |")
# Flatness: a least-squares slope of RSS-after over the run after its first five minutes
# (allocator arenas and caches settle first), and the range in that window.
tail = [r for r in rows if r["minute"] > 5] or rows
xs = [r["minute"] for r in tail]; ys = [r["rss_after"] for r in tail]
n = len(xs); mx = sum(xs) / n; my = sum(ys) / n
den = sum((x - mx) ** 2 for x in xs) or 1
slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den
print()
print(f"Server RSS at start (before any client): {rss_start / 1024:.1f} MiB; {idle} idle connections "
      f"held throughout: at the end {idle_alive}.")
print(f"RSS after each minute's clients left, minutes {xs[0]}–{xs[-1]}: {min(ys) / 1024:.1f}–{max(ys) / 1024:.1f} MiB, "
      f"least-squares slope {slope:+.1f} KiB per minute.")
lost = sum(r["lost"] or 0 for r in rows); sent = sum(r["sent"] or 0 for r in rows)
dropped = sum(r["dropped"] or 0 for r in rows)
print(f"Messages sent {sent:,}, lost {lost:,}, connections dropped {dropped:,}.")
PY
)
echo "$table"
if [ "$write" = yes ]; then
  {
    echo
    echo "### scripts/soak.sh, $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD)"
    echo
    echo "\`scripts/soak.sh --minutes $minutes --idle $idle --clients $clients --senders $senders --rate $rate\`"
    echo
    echo "$table"
  } >>BENCHMARKS.md
  echo "appended to BENCHMARKS.md" >&2
fi
