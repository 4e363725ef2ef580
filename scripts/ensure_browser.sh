#!/usr/bin/env bash
# Make Debian's chromium and chromium-driver available for the page tests (the report, the
# console), and axe-core for the console's accessibility checks (scripts/ensure_axe.sh); a no-op
# when all are installed. Never fails the caller: when it cannot install, it says why and exits 0
# (the page tests then skip, naming what is missing).
set -uo pipefail
"$(dirname "${BASH_SOURCE[0]}")/ensure_axe.sh"
BROWSER=/usr/bin/chromium
DRIVER=/usr/bin/chromedriver
PACKAGES=(chromium chromium-driver)
if [[ -x $BROWSER && -x $DRIVER ]]; then
  exit 0
fi
say() { echo "sluice: $*" >&2; }
if ! command -v apt-get >/dev/null 2>&1; then
  say "no apt-get here: install chromium and chromedriver at $BROWSER and $DRIVER to run the page test"
  exit 0
fi
if [[ $(id -u) == 0 ]]; then
  AS_ROOT=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  AS_ROOT=(sudo -n)
else
  say "not root and no passwordless sudo: run 'apt-get install chromium chromium-driver' as root to run the page test"
  exit 0
fi
LOG=$(mktemp "${TMPDIR:-/tmp}/sluice-browser.XXXXXX.log")
apt() {
  # Waits for a concurrent apt (another test run) instead of failing on its lock.
  "${AS_ROOT[@]}" env DEBIAN_FRONTEND=noninteractive timeout "$1" apt-get -qq \
    -o DPkg::Lock::Timeout=120 "${@:2}" >>"$LOG" 2>&1
}
install() {
  apt 900 install -y --no-install-recommends "${PACKAGES[@]}"
}
has_candidate() {
  local pkg
  for pkg in "${PACKAGES[@]}"; do
    apt-cache policy "$pkg" 2>/dev/null | grep -q 'Candidate: [0-9]' || return 1
  done
}
say "installing ${PACKAGES[*]} for the page test (once; log: $LOG)..."
# apt-get update only when needed: no package lists yet, or lists so old the files are gone.
if ! has_candidate; then
  apt 300 update || true
fi
if ! install; then
  apt 300 update || true
  install || true
fi
if [[ -x $BROWSER && -x $DRIVER ]]; then
  say "chromium ready: $("$BROWSER" --version 2>/dev/null || echo "$BROWSER")"
  rm -f "$LOG"
else
  say "could not install ${PACKAGES[*]} (the page test will skip); last lines of $LOG:"
  tail -n 5 "$LOG" >&2
fi
exit 0
