#!/usr/bin/env bash
# Issue 7, benchmark 5: start-up. Runs `llxprt auth anthropic status` as a whole process N times
# (default 20) against a temporary LLXPRT_HOME holding a few token files, and prints the median
# wall time and the largest peak memory (maximum resident set size).
#
#   bash benches/startup.sh [N]
#
# Wall time is taken around each run with bash's microsecond clock. Peak memory comes from
# `/usr/bin/time -v` when it exists, else (an upper bound) from the rusage `wait4` returns, through
# python3; the script installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${1:-20}"
cargo build --release --quiet --bin llxprt
bin="${CARGO_TARGET_DIR:-target}/release/llxprt"

home="$(mktemp -d)"
trap 'rm -rf "$home"' EXIT
mkdir -m 700 "$home/oauth"
expiry=$(($(date +%s) + 3600))
for bucket in "" "-work1" "-work2"; do
  printf '{"access_token":"bench-at%s","refresh_token":"bench-rt%s","expiry":%d,"token_type":"Bearer"}\n' \
    "$bucket" "$bucket" "$expiry" >"$home/oauth/anthropic$bucket.json"
  chmod 600 "$home/oauth/anthropic$bucket.json"
done

# A clean environment: no llxprt settings, provider keys or browser of the caller's.
command=(env -i "PATH=$PATH" "HOME=$home" "LLXPRT_HOME=$home" "$bin" auth anthropic status)
"${command[@]}" >/dev/null # once to warm the page cache, and to fail early

walls=()
for _ in $(seq "$runs"); do
  start=$EPOCHREALTIME
  "${command[@]}" >/dev/null
  end=$EPOCHREALTIME
  walls+=("$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f", (e - s) * 1000 }')")
done
median=$(printf '%s\n' "${walls[@]}" | sort -n | awk '{ v[NR] = $1 } END {
  if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }')

if [ -x /usr/bin/time ]; then
  how="/usr/bin/time -v"
  peak=0
  for _ in $(seq "$runs"); do
    kb=$( { /usr/bin/time -v "${command[@]}" >/dev/null; } 2>&1 |
      awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); print $2 }')
    if [ "$kb" -gt "$peak" ]; then peak=$kb; fi
  done
else
  # A child's peak counts the memory of the process that spawned it until it execs: with python3
  # as the spawner the figure is only an upper bound.
  how="at most: wait4 rusage via python3, which counts python3's own size"
  peak=$(python3 - "$runs" "${command[@]}" <<'EOF'
import os, sys
runs, command = int(sys.argv[1]), sys.argv[2:]
quiet = os.open(os.devnull, os.O_WRONLY)
peak = 0
for _ in range(runs):
    pid = os.posix_spawnp(command[0], command, os.environ,
                          file_actions=[(os.POSIX_SPAWN_DUP2, quiet, 1)])
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit("llxprt failed")
    peak = max(peak, usage.ru_maxrss)  # kilobytes on Linux
print(peak)
EOF
)
fi

echo "startup: llxprt auth anthropic status, $runs runs"
echo "startup: median wall time ${median} ms"
echo "startup: max RSS $((peak / 1024)).$(((peak % 1024) * 10 / 1024)) MiB (${peak} KiB, ${how})"
