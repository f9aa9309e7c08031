#!/usr/bin/env bash
# Start-up (issue 7, benchmark 5; issue 17, item 3): `llxprt auth status` as a whole process,
# side by side with Codex CLI's `codex login status`, N runs each (default 40), taken in turns so
# that both see the same machine load. Prints the median wall times, their ratio, and the largest
# peak memory (maximum resident set size) of llxprt, as `ratio` lines for `scripts/bench`.
#
#   bash benches/startup.sh [N]
#
# llxprt runs against a temporary LLXPRT_HOME holding three Anthropic token files; Codex against a
# temporary CODEX_HOME holding an API key (a made-up one: `codex login status` only reads it).
# Codex CLI is `$CODEX` if set, else `codex` on the PATH, else the npm package `@openai/codex`
# installed once under the target directory (`npm install --prefix`). Its npm command is a
# Node.js launcher of a native binary that the package ships; both are measured. Wall time is
# taken around each run with bash's microsecond clock; peak memory comes from `/usr/bin/time -v`
# when it exists, else (an upper bound) from the rusage `wait4` returns, through python3.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${1:-40}"
cargo build --release --quiet --bin llxprt
target="${CARGO_TARGET_DIR:-target}"
bin="$target/release/llxprt"

codex="${CODEX:-}"
if [ -z "$codex" ] && command -v codex >/dev/null; then codex="$(command -v codex)"; fi
if [ -z "$codex" ]; then
  prefix="$target/codex-cli"
  if [ ! -x "$prefix/node_modules/.bin/codex" ]; then
    command -v npm >/dev/null || {
      echo "startup: Codex CLI not found and npm missing: install Node.js (apt-get install npm) or set CODEX" >&2
      exit 1
    }
    echo "startup: installing @openai/codex under $prefix" >&2
    npm install --silent --prefix "$prefix" @openai/codex >&2
  fi
  codex="$prefix/node_modules/.bin/codex"
fi
# The native binary inside the package, which the npm launcher runs.
native="$(find "$(dirname "$(readlink -f "$codex")")/../.." -path '*/vendor/*/bin/codex' -type f \
  2>/dev/null | head -n 1 || true)"

home="$(mktemp -d)"
codex_home="$(mktemp -d)"
trap 'rm -rf "$home" "$codex_home"' EXIT
mkdir -m 700 "$home/oauth"
expiry=$(($(date +%s) + 3600))
for bucket in "" "-work1" "-work2"; do
  printf '{"access_token":"bench-at%s","refresh_token":"bench-rt%s","expiry":%d,"token_type":"Bearer"}\n' \
    "$bucket" "$bucket" "$expiry" >"$home/oauth/anthropic$bucket.json"
  chmod 600 "$home/oauth/anthropic$bucket.json"
done

# Clean environments: no settings, provider keys or browser of the caller's.
ours=(env -i "PATH=$PATH" "HOME=$home" "LLXPRT_HOME=$home" "$bin" auth status)
theirs=(env -i "PATH=$PATH" "HOME=$codex_home" "CODEX_HOME=$codex_home" "$codex" login status)
echo "sk-made-up-for-the-benchmark" |
  env -i "PATH=$PATH" "HOME=$codex_home" "CODEX_HOME=$codex_home" "$codex" login --with-api-key >/dev/null 2>&1
theirs_native=()
if [ -n "$native" ]; then
  theirs_native=(env -i "PATH=$PATH" "HOME=$codex_home" "CODEX_HOME=$codex_home" "$native" login status)
fi

# Once each to warm the page cache, and to fail early.
"${ours[@]}" >/dev/null
"${theirs[@]}" >/dev/null 2>&1
if [ -n "$native" ]; then "${theirs_native[@]}" >/dev/null 2>&1; fi

ms() { awk -v s="$1" -v e="$2" 'BEGIN { printf "%.3f", (e - s) * 1000 }'; }
time_once() {
  local start end
  start=$EPOCHREALTIME
  "$@" >/dev/null 2>&1
  end=$EPOCHREALTIME
  ms "$start" "$end"
}
# The interquartile range of the numbers on stdin, as `Q1–Q3`: the spread of a median.
quartiles() {
  sort -n | awk '{ v[NR] = $1 } END {
    q1 = v[int((NR + 3) / 4)]; q3 = v[int((3 * NR + 3) / 4)]; printf "%.3f–%.3f", q1, q3 }'
}
median() {
  sort -n | awk '{ v[NR] = $1 } END {
    if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# The harness's own cost, in the same turns: bash's fork and `env`'s exec of a program that does
# nothing. It is in every figure above it, on both sides, so it is subtracted from both for the
# ratios of the programs' own wall times.
floor=(env -i "PATH=$PATH" "HOME=$home" /bin/true)
walls_ours=() walls_theirs=() walls_native=() walls_floor=()
for _ in $(seq "$runs"); do
  walls_floor+=("$(time_once "${floor[@]}")")
  walls_ours+=("$(time_once "${ours[@]}")")
  walls_theirs+=("$(time_once "${theirs[@]}")")
  if [ -n "$native" ]; then walls_native+=("$(time_once "${theirs_native[@]}")"); fi
done
m_ours=$(printf '%s\n' "${walls_ours[@]}" | median)
m_theirs=$(printf '%s\n' "${walls_theirs[@]}" | median)
m_floor=$(printf '%s\n' "${walls_floor[@]}" | median)
q_ours=$(printf '%s\n' "${walls_ours[@]}" | quartiles)
q_theirs=$(printf '%s\n' "${walls_theirs[@]}" | quartiles)

if [ -x /usr/bin/time ]; then
  how="/usr/bin/time -v"
  peak=0
  for _ in $(seq "$runs"); do
    kb=$( { /usr/bin/time -v "${ours[@]}" >/dev/null; } 2>&1 |
      awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); print $2 }')
    if [ "$kb" -gt "$peak" ]; then peak=$kb; fi
  done
else
  # A child's peak counts the memory of the process that spawned it until it execs: with python3
  # as the spawner the figure is only an upper bound.
  how="at most: wait4 rusage via python3, which counts python3's own size"
  peak=$(python3 - "$runs" "${ours[@]}" <<'EOF'
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

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
met() { awk -v v="$1" -v g="$2" 'BEGIN { print (v <= g ? "met" : "NOT met") }'; }
version=$(env -i "PATH=$PATH" "$codex" --version 2>/dev/null | head -n 1 || true)
echo "startup: $runs runs each, in turns (medians, [interquartile range]); Codex CLI: ${version:-unknown version} ($codex)"
r=$(ratio "$m_ours" "$m_theirs")
echo "ratio startup/llxprt_auth_status over startup/codex_login_status (npm command): ${r}× (${m_ours} ms [${q_ours}] / ${m_theirs} ms [${q_theirs}]), goal ≤ 0.33: $(met "$r" 0.3333)"
if [ -n "$native" ]; then
  m_native=$(printf '%s\n' "${walls_native[@]}" | median)
  q_native=$(printf '%s\n' "${walls_native[@]}" | quartiles)
  r=$(ratio "$m_ours" "$m_native")
  echo "ratio startup/llxprt_auth_status over startup/codex_login_status (its native binary, as measured): ${r}× (${m_ours} ms [${q_ours}] / ${m_native} ms [${q_native}])"
  own_ours=$(awk -v a="$m_ours" -v f="$m_floor" 'BEGIN { printf "%.3f", a - f }')
  own_native=$(awk -v a="$m_native" -v f="$m_floor" 'BEGIN { printf "%.3f", a - f }')
  r=$(ratio "$own_ours" "$own_native")
  echo "ratio startup/llxprt_auth_status over startup/codex_login_status (its native binary, less the harness's ${m_floor} ms): ${r}× (${own_ours} ms / ${own_native} ms), goal ≤ 0.33: $(met "$r" 0.3333)"
fi
mib=$(awk -v k="$peak" 'BEGIN { printf "%.1f", k / 1024 }')
echo "ratio startup/llxprt_auth_status peak memory: ${mib} MiB (${peak} KiB, ${how}), under 12 MiB: $(met "$peak" $((12 * 1024)))"
