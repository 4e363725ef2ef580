#!/usr/bin/env bash
# Screenshots of the console's pages for the docs (docs/console/*.png, shown in
# docs/console.md): runs the console's browser tests, which save every page they check when
# SLUICE_SCREENSHOTS names a directory (1280 wide, 256-colour PNGs), and keeps the pages below.
# Needs what the tests need (./scripts/test.sh installs it): .venv, chromium, axe-core.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PAGES=(home models model trained train-refused predictions monitoring-model job jobs-done login)
"$ROOT/scripts/ensure_browser.sh"
shots=$(mktemp -d)
trap 'rm -rf "$shots"' EXIT
# The session stack's page first, then the token-guarded console (its jobs page lists the job).
SLUICE_SCREENSHOTS=$shots "$ROOT/.venv/bin/python" -m pytest -n 0 -q -p no:cacheprovider \
  tests/stack/test_console_browser.py tests/stack/test_console_access_browser.py
mkdir -p docs/console
for page in "${PAGES[@]}"; do
  cp "$shots/$page.png" "docs/console/$page.png"
done
for page in "${PAGES[@]}"; do echo "docs/console/$page.png: $(wc -c <"docs/console/$page.png") bytes"; done
