# Headless Chromium for the browser end-to-end tests (tests/browser.rs): Debian's `chromium`,
# installed when missing. Exports LLXPRT_TEST_CHROMIUM, the binary the tests launch; they fail
# (never skip) when it is unset or cannot start.
if ! command -v chromium >/dev/null 2>&1; then
  echo "setup: installing chromium (for the browser tests)" >&2
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/dev/null; then
    apt-get update >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/dev/null
  fi
fi
LLXPRT_TEST_CHROMIUM="$(command -v chromium)"
export LLXPRT_TEST_CHROMIUM
if ! "$LLXPRT_TEST_CHROMIUM" --version >&2; then
  echo "setup: $LLXPRT_TEST_CHROMIUM does not run" >&2
  return 1
fi
