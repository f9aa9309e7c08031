# A throwaway PostgreSQL cluster for the team store's tests (issue 15), sourced by scripts/test.
# Installs Debian's `postgresql` when missing, runs `initdb` and `pg_ctl` as the unprivileged
# user `nobody` on a free loopback port in a temporary directory, exports where it is, and
# removes it at the end. Fails the run loudly when the cluster cannot start.
#   LLXPRT_TEST_PG      postgres://llxprt@127.0.0.1:PORT/postgres (a superuser, trust on loopback)
#   LLXPRT_TEST_PG_BIN  the directory of pg_dump, psql, …

pg_bin_dir() { { ls -d /usr/lib/postgresql/*/bin 2>/dev/null || true; } | sort -V | tail -n 1; }

if [ -z "$(pg_bin_dir)" ] || [ ! -x "$(pg_bin_dir)/initdb" ]; then
  echo "setup: installing postgresql" >&2
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >/dev/null; then
    apt-get update >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >/dev/null
  fi
fi
LLXPRT_TEST_PG_BIN="$(pg_bin_dir)"
if [ ! -x "$LLXPRT_TEST_PG_BIN/initdb" ]; then
  echo "setup: PostgreSQL's initdb is missing after installing postgresql" >&2
  exit 1
fi

pg_dir="$(mktemp -d /tmp/llxprt-pg.XXXXXX)"
chown nobody "$pg_dir"
chmod 700 "$pg_dir"
as_pg() { runuser -u nobody -- "$@"; }
if ! as_pg "$LLXPRT_TEST_PG_BIN/initdb" -D "$pg_dir/data" -U llxprt --auth=trust \
  --encoding=UTF8 >"$pg_dir/initdb.log" 2>&1; then
  cat "$pg_dir/initdb.log" >&2
  echo "setup: initdb failed in $pg_dir" >&2
  exit 1
fi
cleanup+=("runuser -u nobody -- '$LLXPRT_TEST_PG_BIN/pg_ctl' -D '$pg_dir/data' -m immediate stop >/dev/null 2>&1; rm -rf '$pg_dir'")
# A loopback port nothing listens on (bash's /dev/tcp: no connection means free).
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
}
# Many tests at once each open a few connections; durability is not what these tests test.
# A port taken between the check and the start is retried with another.
pg_started=""
for _ in 1 2 3 4 5; do
  pg_port="$(free_port)"
  if as_pg "$LLXPRT_TEST_PG_BIN/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $pg_dir -c max_connections=300 -c fsync=off -c synchronous_commit=off" \
    start >/dev/null; then
    pg_started=yes
    break
  fi
done
if [ -z "$pg_started" ]; then
  cat "$pg_dir/server.log" >&2
  echo "setup: PostgreSQL did not start on a loopback port (log above)" >&2
  exit 1
fi
export LLXPRT_TEST_PG="postgres://llxprt@127.0.0.1:$pg_port/postgres"
export LLXPRT_TEST_PG_BIN
echo "setup: PostgreSQL $("$LLXPRT_TEST_PG_BIN/postgres" --version | awk '{print $3}') at 127.0.0.1:$pg_port" >&2
