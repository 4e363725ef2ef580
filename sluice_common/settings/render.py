"""The documentation of the settings, generated from their declarations: the configuration
reference page (Markdown) and .env.example (the Compose stack's settings with their defaults)."""

from __future__ import annotations

import re
import textwrap

from sluice_common.settings import SETTINGS, Setting

# Sections in reading order, each with what it says before its settings.
SECTIONS = {
    "Compose": "The Compose stack (docker-compose.yml, scripts/compose.sh).",
    "Local mode": "Local mode (scripts/local.sh, used by ./start.sh --local) and the scripts.",
    "Ports and processes": "Where the services listen and how many processes serve them.",
    "Healthchecks": "How Compose decides a container is healthy.",
    "Both services": "Read by preprocess and the trainer alike.",
    "Admission": (
        "How many heavy requests run at once, and how fast an upload must arrive (both "
        "services; see [Slow clients](../security.md#slow-clients))."
    ),
    "preprocess": "Read by preprocess only.",
    "trainer": "Read by the trainer: training, promotion and signing.",
    "Monitoring": (
        "The trainer's record of prod batches and labels, and its judgement of drift (see "
        "[Monitoring](../monitoring.md))."
    ),
    "Retraining": (
        "What is kept for retraining (each version's training rows, prod rows' cells) and "
        "when the trainer retrains by itself (see [Retraining](../retraining.md))."
    ),
    "MLflow": "The tracking server and the account the trainer signs in with.",
    "Stores": (
        "Where MLflow's runs and registry, the monitoring tables, the jobs table and the "
        "artifacts live (both modes; see [Running it for real](../operations.md))."
    ),
    "Data by reference, the cluster and jobs": (
        "`data_uri=` and `output_uri=`, the Dask cluster, and jobs (see "
        "[Jobs and clusters](../jobs-and-clusters.md))."
    ),
    "Set by Sluice itself": (
        "Set by Sluice's own processes for each other; listed so every variable Sluice reads "
        "is declared. Leave them alone unless a page says otherwise."
    ),
}
WIDTH = 96
LINK = re.compile(r"\[([^\]]+)\]\([^)]+\)")
ENV_HEADER = """\
# Settings of the Compose stack (docker-compose.yml, scripts/compose.sh), with their defaults.
# Generated from sluice_common/settings by `python -m sluice_common.settings --env-example`:
# change the declarations there, not this file. Copy it to .env and change what you need;
# variables exported in the shell win over .env. Every line here is optional: the stack runs
# with no .env at all. docs/reference/configuration.md lists every setting.
"""
MARKDOWN_HEADER = """\
# Configuration

<!-- Generated from sluice_common/settings by `python -m sluice_common.settings --markdown`:
change the declarations there, not this page. -->

Every setting is an environment variable with a default; an empty value means the default.
The Compose stack reads them from the shell or from a `.env` file: every one it passes on is
in `.env.example` (at the top of the repository), with the Compose default. Plain
`docker compose up -d --build` (or `docker-compose`, v1) works with no `.env` file at all.
Local mode (`./start.sh --local`) reads them from the environment.

"Read by" names who reads the variable: the `trainer` and `preprocess` services, the MLflow
tracking server (`mlflow`), the Dask workers (`dask`), Compose, the scripts (`local.sh`,
`start.sh`, `scripts`: backup and restore) or gunicorn. *Passed through* marks a variable
read by a library or tool Sluice runs (MLflow, boto3, gunicorn, Compose), documented here
because Sluice sets or relies on it.
"""
TYPES = {str: "text", int: "integer", float: "number", bool: "0 or 1"}


def shell_value(value) -> str:
    """A default as a shell or .env file writes it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def compose_default(setting: Setting) -> str:
    """The default under Compose, as .env.example writes it."""
    return setting.compose if setting.compose is not None else shell_value(setting.default)


def _default_cell(setting: Setting) -> str:
    if setting.shown is not None:
        cell = setting.shown
    elif setting.default is None or setting.default == "":
        cell = "unset" if setting.default is None else "empty"
    else:
        cell = f"`{shell_value(setting.default)}`"
    if setting.compose is not None and setting.shown is None:
        cell += f"; Compose: `{setting.compose}`"
    return cell.replace("|", "\\|")


def _row(setting: Setting) -> str:
    readers = ", ".join(setting.read_by)
    if setting.passed:
        readers += " (*passed through*)"
    meaning = setting.meaning.replace("|", "\\|")
    return (
        f"| `{setting.name}` | {TYPES[setting.type]} | {_default_cell(setting)} | {readers} "
        f"| {meaning} |"
    )


def markdown() -> str:
    """docs/reference/configuration.md."""
    parts = [MARKDOWN_HEADER]
    for title, intro in SECTIONS.items():
        rows = [_row(s) for s in SETTINGS.values() if s.section == title]
        parts.append(f"## {title}\n\n{intro}\n")
        parts.append("| variable | type | default | read by | meaning |\n|---|---|---|---|---|")
        parts.append("\n".join(rows) + "\n")
    return "\n".join(parts)


def _comment(text: str) -> list[str]:
    plain = LINK.sub(r"\1", text).replace("`", "")  # no Markdown in .env.example
    return ["# " + line for line in textwrap.wrap(plain, WIDTH - 2, break_on_hyphens=False)]


def env_example() -> str:
    """.env.example: the settings the Compose stack passes on, with its defaults."""
    lines = [ENV_HEADER.rstrip("\n")]
    for title, intro in SECTIONS.items():
        listed = [s for s in SETTINGS.values() if s.section == title and s.env_example]
        if not listed:
            continue
        lines += ["", f"# --- {title} ".ljust(WIDTH - 1, "-"), *_comment(intro)]
        for setting in listed:
            lines += _comment(setting.meaning)
            if setting.example is not None:
                lines.append(f"#{setting.name}={setting.example}")
            else:
                lines.append(f"{setting.name}={compose_default(setting)}")
    return "\n".join(lines) + "\n"
