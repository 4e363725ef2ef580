#!/usr/bin/env bash
# Run the whole test suite: sets up .venv if needed, ruff, the docs build, then pytest (extra
# args go to pytest). --quick: only the tests marked `quick` (unit and single-service tests, no
# whole stack, no Docker), the inner loop.
set -euo pipefail
args=()
for arg in "$@"; do
  if [[ $arg == --quick ]]; then args+=(-m quick); else args+=("$arg"); fi
done
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
"$ROOT/scripts/ensure_venv.sh"
"$ROOT/scripts/ensure_browser.sh"
"$ROOT/.venv/bin/ruff" check .
"$ROOT/.venv/bin/ruff" format --check .
# The documentation site: --strict fails on a broken link or anchor and on a page left out of
# the nav (mkdocs.yml, validation). Built into a temporary directory, with no network.
# Not --quiet: it hides the warnings, and --strict then counts none of them.
site=$(mktemp -d)
if ! NO_MKDOCS_2_WARNING=1 "$ROOT/.venv/bin/mkdocs" build --strict --site-dir "$site" \
  >"$site.log" 2>&1; then
  grep -v '^INFO' "$site.log" >&2
  rm -rf "$site" "$site.log"
  exit 1
fi
rm -rf "$site" "$site.log"
# Both cores: two pytest workers, each taking whole modules (--dist loadfile), so a module's
# shared stack and its tests stay in one process. Most of the suite waits on real services.
# Modules are handed out slowest first (tests/conftest.py, testkit/durations.py), not by their
# number of tests (xdist's default), which left the longest for last on one core.
exec "$ROOT/.venv/bin/python" -m pytest -n 2 --dist loadfile --no-loadscope-reorder \
  ${args[@]+"${args[@]}"}
