#!/usr/bin/env bash
# Many rooms at once, two hubbub builds compared: by default one room of 9,000 clients where
# 5 senders post 50 msg/s in total, and beside it 100 rooms of 10 clients each with one
# sender at 1 msg/s. Does the big room's fan-out slow the small rooms down? Each run starts
# a fresh server (SQLite in a temporary directory) pinned to core 0, with the load tool
# (`hubbub-load --group …`) on core 1; runs alternate between the two binaries (A, B, A,
# B, …) so both see the machine in the same state. Prints a Markdown table, one row per
# server per run, and with --write appends it to BENCHMARKS.md under a dated heading.
#
#   scripts/bench-rooms.sh [--write] [--bin-a PATH] [--bin-b PATH] [--name-a before] \
#                          [--name-b after] [--runs 2] [--duration 20s] [--warmup 3s] \
#                          [--groups "9000:5:50 10:1:1:100"] [--server-cpus 0] \
#                          [--load-per-group]
#
# --bin-a and --bin-b default to ./target/release/hubbub, built first (so with neither, the
# same build runs twice: a check of the method's noise). --groups takes `hubbub-load
# --group` values, CLIENTS:SENDERS:RATE[:ROOMS]; the table has a latency column per group.
# Every client is a connection on both sides: the open-file limit is raised to the hard
# limit, which must exceed the clients in total (`ulimit -Hn`). --server-cpus is the
# server's `taskset` CPU list (default 0; "0,1" lets it use both cores, shared with the
# load tool's core 1). --load-per-group runs one load tool per group (all on core 1, rooms
# prefixed g0-, g1-, …), so the big room's 9,000 sockets do not queue the small rooms'
# frames inside one process's event loop, as separate users' browsers would not; groups
# after the first start measuring 2 s later and stop 2 s earlier, inside the first's window.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

write=no runs=2 duration=20s warmup=3s groups="9000:5:50 10:1:1:100" server_cpus=0 per_group=no
bin_a=./target/release/hubbub bin_b=./target/release/hubbub name_a=before name_b=after
while [ $# -gt 0 ]; do
  case "$1" in
    --write) write=yes ;;
    --bin-a) bin_a=$2; shift ;;
    --bin-b) bin_b=$2; shift ;;
    --name-a) name_a=$2; shift ;;
    --name-b) name_b=$2; shift ;;
    --runs) runs=$2; shift ;;
    --duration) duration=$2; shift ;;
    --warmup) warmup=$2; shift ;;
    --groups) groups=$2; shift ;;
    --server-cpus) server_cpus=$2; shift ;;
    --load-per-group) per_group=yes ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

group_flags=() clients=0
for group in $groups; do
  group_flags+=(--group "$group")
  IFS=: read -r per_room _ _ rooms <<<"$group"
  clients=$((clients + per_room * ${rooms:-1}))
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -le $((clients + 1000)) ]; then
  echo "$clients clients need an open-file limit above $((clients + 1000)); it is $(ulimit -n)" >&2
  exit 1
fi

build_release
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port=3945

run_one() { # binary -> the load tool's JSON report on stdout (nothing if the run failed)
  local pid
  rm -f "$work"/rooms.db*
  # Loopback clients are exempt from the per-address limits; they are raised all the same
  # so that a build without that exemption is measured, not refused.
  taskset -c "$server_cpus" "$1" --addr "127.0.0.1:$port" --database "sqlite://$work/rooms.db" --log warn \
    --message-rate 1000000 --message-burst 1000000 \
    --ip-message-rate 1000000 --ip-message-burst 1000000 \
    --max-connections $((clients + 1000)) --max-connections-per-ip $((clients + 1000)) \
    >>"$work/server.log" 2>&1 &
  pid=$!
  wait_port "$port"
  if [ "$per_group" = no ]; then
    taskset -c 1 ./target/release/hubbub-load --url "http://127.0.0.1:$port/" "${group_flags[@]}" \
      --duration "$duration" --warmup "$warmup" --server-pid "$pid" 2>"$work/load.log" \
      | tail -n 1 || true
  else
    local i=0 loads=() later
    # Durations in whole seconds ("20s") here.
    later="$(( ${duration%s} > 5 ? ${duration%s} - 4 : 1 ))s"
    for group in $groups; do
      local w=$warmup d=$duration
      if [ "$i" -gt 0 ]; then w="$(( ${warmup%s} + 2 ))s" d=$later; fi
      taskset -c 1 ./target/release/hubbub-load --url "http://127.0.0.1:$port/" --group "$group" \
        --room-prefix "g$i" --duration "$d" --warmup "$w" --server-pid "$pid" \
        2>"$work/load-$i.log" | tail -n 1 >"$work/report-$i.json" &
      loads+=($!)
      i=$((i + 1))
    done
    wait "${loads[@]}" || true
    cp "$work/load-0.log" "$work/load.log"
    # One report from the per-group ones: the groups side by side, counts added up, the
    # server's CPU as the first (longest) run measured it, the load tools' CPU added up.
    python3 - "$work" "$i" <<'PY'
import json, sys
work, n = sys.argv[1], int(sys.argv[2])
try:
    parts = [json.load(open(f"{work}/report-{i}.json")) for i in range(n)]
except (OSError, ValueError):
    sys.exit(0)
merged = dict(parts[0])
merged["groups"] = [g for p in parts for g in p["groups"]]
for key in ("deliveries", "expected_deliveries", "lost", "misrouted", "dropped", "connected"):
    merged[key] = sum(p[key] for p in parts)
cpus = [p.get("load_cpu_percent") for p in parts]
merged["load_cpu_percent"] = None if None in cpus else sum(cpus)
print(json.dumps(merged))
PY
  fi
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

results="$work/results.jsonl"
for run in $(seq "$runs"); do
  for side in a b; do
    if [ "$side" = a ]; then name=$name_a bin=$bin_a; else name=$name_b bin=$bin_b; fi
    echo "run $run, $name ($bin)" >&2
    report=$(run_one "$bin")
    [ -n "$report" ] || { echo "  no report; the load tool said:" >&2; tail -n 3 "$work/load.log" >&2; }
    python3 -c 'import json, sys
print(json.dumps({"server": sys.argv[1], "run": int(sys.argv[2]),
                  "report": json.loads(sys.argv[3]) if sys.argv[3] else None}))' \
      "$name" "$run" "$report" >>"$results"
  done
done

table=$(python3 - "$results" "$groups" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
groups = sys.argv[2].split()
print("| server | run | " + " | ".join(f"`{g}` p50 / p99 ms" for g in groups)
      + " | delivered | lost | misrouted | dropped | server CPU | load tool CPU |")
print("|---|---|" + "---|" * len(groups) + "---|---|---|---|---|---|")
for r in rows:
    p = r["report"]
    if p is None:
        print(f"| {r['server']} | {r['run']} | " + " | ".join("" for _ in groups) + " | no report | | | | | |")
        continue
    latency = [f"{g['latency_ms']['p50']:.1f} / {g['latency_ms']['p99']:.1f}" for g in p["groups"]]
    cpu = p.get("server_cpu_seconds")
    server_cpu = "" if cpu is None else f"{cpu * 100 / max(p['measured_seconds'], 1e-9):.0f}%"
    own = p.get("load_cpu_percent")
    tool = "" if own is None else f"{own:.0f}%"
    print(f"| {r['server']} | {r['run']} | " + " | ".join(latency)
          + f" | {p['deliveries']:,} of {p['expected_deliveries']:,} | {p['lost']:,} | {p['misrouted']:,} "
          f"| {p['dropped']:,} of {p['connected']:,} | {server_cpu} | {tool} |")
PY
)
echo "$table"
if [ "$write" = yes ]; then
  append_to_benchmarks scripts/bench-rooms.sh \
    "scripts/bench-rooms.sh --bin-a $bin_a --bin-b $bin_b --name-a \"$name_a\" --name-b \"$name_b\" --runs $runs --duration $duration --warmup $warmup --groups \"$groups\" --server-cpus $server_cpus$([ "$per_group" = no ] || echo " --load-per-group")" \
    "$table"
fi
