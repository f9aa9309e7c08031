#!/usr/bin/env bash
# Issue 15: runs the team_store benchmark against a throwaway PostgreSQL cluster, started and
# removed as the tests' own (scripts/setup.d/50-postgres.sh).
#
#   bash benches/team_store.sh [criterion options]
set -euo pipefail
cd "$(dirname "$0")/.."
cleanup=()
finish() {
  local i
  for ((i = ${#cleanup[@]} - 1; i >= 0; i--)); do eval "${cleanup[i]}" || true; done
}
trap finish EXIT
# shellcheck source=/dev/null
source scripts/setup.d/50-postgres.sh
cargo bench --bench team_store -- "$@"
