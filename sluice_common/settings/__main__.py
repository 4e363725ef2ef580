"""python -m sluice_common.settings --markdown | --env-example | --write

Prints docs/reference/configuration.md or .env.example as the declarations make them; --write
rewrites both files in this checkout."""

from __future__ import annotations

import argparse
import os
import sys

from sluice_common.settings.render import env_example, markdown

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILES = {
    os.path.join("docs", "reference", "configuration.md"): markdown,
    ".env.example": env_example,
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m sluice_common.settings")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--markdown", action="store_true", help="the configuration page")
    group.add_argument("--env-example", action="store_true", help=".env.example")
    group.add_argument("--write", action="store_true", help="rewrite both files")
    args = parser.parse_args(argv)
    if args.write:
        for path, make in FILES.items():
            with open(os.path.join(ROOT, path), "w", encoding="utf-8") as handle:
                handle.write(make())
            print(f"wrote {path}")
    else:
        sys.stdout.write(markdown() if args.markdown else env_example())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
