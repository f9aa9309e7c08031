# shellcheck shell=bash
# The keyring tests need a real Secret Service: Debian's gnome-keyring on a private D-Bus
# session bus, its login keyring unlocked with a throwaway password. Exports
# DBUS_SESSION_BUS_ADDRESS for the tests; stops both daemons at the end.

keyring_missing=()
command -v dbus-daemon >/dev/null || keyring_missing+=(dbus-daemon)
command -v gnome-keyring-daemon >/dev/null || keyring_missing+=(gnome-keyring)
command -v secret-tool >/dev/null || keyring_missing+=(libsecret-tools)
if [ "${#keyring_missing[@]}" -gt 0 ]; then
  echo "setup: installing ${keyring_missing[*]} for the keyring tests" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${keyring_missing[@]}" >/dev/null ||
    { apt-get update >/dev/null && apt-get install -y --no-install-recommends "${keyring_missing[@]}" >/dev/null; } ||
    { echo "setup: could not install ${keyring_missing[*]}; the keyring tests cannot run" >&2; return 1; }
fi

keyring_dir="$(mktemp -d /tmp/llxprt-keyring.XXXXXX)"
cleanup+=("rm -rf '$keyring_dir'")
mkdir -p "$keyring_dir/home" "$keyring_dir/run"
chmod 700 "$keyring_dir/run"
keyring_bus="unix:path=$keyring_dir/bus"
dbus-daemon --session --address="$keyring_bus" --fork --print-pid=1 >"$keyring_dir/dbus.pid" ||
  { echo "setup: dbus-daemon did not start; the keyring tests cannot run" >&2; return 1; }
cleanup+=("kill \$(cat '$keyring_dir/dbus.pid')")
export DBUS_SESSION_BUS_ADDRESS="$keyring_bus"

# `--unlock` reads the password on standard input and creates the login keyring with it.
keyring_env="$(printf 'llxprt-test' | env HOME="$keyring_dir/home" XDG_RUNTIME_DIR="$keyring_dir/run" \
  XDG_DATA_HOME="$keyring_dir/home/data" DBUS_SESSION_BUS_ADDRESS="$keyring_bus" \
  gnome-keyring-daemon --daemonize --unlock --components=secrets)" ||
  { echo "setup: gnome-keyring-daemon did not start; the keyring tests cannot run" >&2; return 1; }
keyring_pid="$(printf '%s\n' "$keyring_env" | sed -n 's/^GNOME_KEYRING_PID=//p')"
[ -n "$keyring_pid" ] && cleanup+=("kill $keyring_pid")

# Wait (bounded) until the Secret Service stores and returns a secret.
for _ in $(seq 50); do
  if printf 'probe' | secret-tool store --label='llxprt setup probe' service llxprt-setup-probe 2>/dev/null &&
    [ "$(secret-tool lookup service llxprt-setup-probe 2>/dev/null)" = probe ]; then
    secret-tool clear service llxprt-setup-probe
    keyring_ready=1
    break
  fi
  sleep 0.1
done
if [ -z "${keyring_ready:-}" ]; then
  echo "setup: the Secret Service on $keyring_bus does not store secrets; the keyring tests cannot run" >&2
  return 1
fi
echo "setup: Secret Service (gnome-keyring) on $DBUS_SESSION_BUS_ADDRESS" >&2
