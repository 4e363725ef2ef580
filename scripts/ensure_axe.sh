#!/usr/bin/env bash
# Install axe-core, pinned and locked in testkit/axe/, into .tools/axe/ (ignored by git) for the
# console's accessibility tests; a no-op when the installed lock is the committed one. Never
# fails the caller: without npm, or when npm cannot install, it says why and exits 0 (then the
# accessibility tests skip without npm, and fail with the reason when npm is there).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SOURCE=$ROOT/testkit/axe
TARGET=${SLUICE_AXE_DIR:-$ROOT/.tools/axe}
SCRIPT=$TARGET/node_modules/axe-core/axe.min.js
say() { echo "sluice: $*" >&2; }
if [[ -f $SCRIPT ]] && cmp -s "$SOURCE/package-lock.json" "$TARGET/package-lock.json"; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  say "no npm here: install Node.js and npm to run the accessibility tests (axe-core)"
  exit 0
fi
mkdir -p "$TARGET"
cp "$SOURCE/package.json" "$SOURCE/package-lock.json" "$TARGET/"
LOG=$(mktemp "${TMPDIR:-/tmp}/sluice-axe.XXXXXX.log")
say "installing axe-core from testkit/axe/package-lock.json into $TARGET (once)..."
# npm ci installs exactly the lock (its integrity hashes checked) and runs no install scripts.
if timeout 300 npm ci --prefix "$TARGET" --ignore-scripts --no-audit --no-fund >"$LOG" 2>&1 &&
  [[ -f $SCRIPT ]]; then
  rm -f "$LOG"
else
  rm -f "$TARGET/package-lock.json" # the next run tries again
  say "could not install axe-core (the accessibility tests will fail, saying so); last lines of $LOG:"
  tail -n 5 "$LOG" >&2
fi
exit 0
