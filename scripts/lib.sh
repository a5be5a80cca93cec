# Helpers the benchmark scripts share. Source it from the repository root:
#   . scripts/lib.sh

# Builds the release server and the load tool (both default members of the workspace).
build_release() {
  cargo build --release --quiet --bin hubbub --bin hubbub-load
}

# wait_port PORT: waits until something accepts connections on 127.0.0.1:PORT (at most 10 s).
wait_port() {
  for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "server on port $1 did not start" >&2; return 1
}

# append_to_benchmarks SCRIPT COMMAND TEXT: appends TEXT to BENCHMARKS.md under a heading
# naming the script, today's date and the commit, with the command line that made it.
append_to_benchmarks() {
  {
    echo
    echo "### $1, $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD)"
    echo
    echo "\`$2\`"
    echo
    echo "$3"
  } >>BENCHMARKS.md
  echo "appended to BENCHMARKS.md" >&2
}
