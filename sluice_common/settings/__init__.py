"""Every setting Sluice reads, declared once: name, type, default, meaning and who reads it.

The services read their settings here (`read`), other code one setting at a time (`value`);
`.env.example` and docs/reference/configuration.md are generated from the declarations
(`python -m sluice_common.settings --env-example` / `--markdown`), and tests check that the
Compose file and the shell scripts name declared settings with the declared defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Readers whose settings become Flask config keys (app.config) of that service.
SERVICES = ("trainer", "preprocess")
TRUE_WORDS = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Setting:
    """One environment variable.

    `default` is what the code (or, for a script's setting, the script) uses when the variable
    is unset or empty; None means unset. `compose` is the Compose stack's default where it
    differs. `shown` describes a default computed at run time, for the documentation.
    `passed`: read by a library or tool Sluice runs (MLflow, boto3, gunicorn), not by Sluice's
    code; `internal`: set by Sluice's own processes for each other, not for users.
    `env_example`: listed in .env.example (the Compose stack reads it); `example` shows it there
    commented out with this value.
    """

    name: str
    type: type
    default: Any
    meaning: str
    read_by: tuple[str, ...]
    section: str
    compose: str | None = None
    shown: str | None = None
    passed: bool = False
    internal: bool = False
    env_example: bool = False
    example: str | None = None

    def parse(self, raw: str | None) -> Any:
        """The typed value of `raw` (the default when unset or empty); ValueError when `raw` is
        not a number a numeric setting needs."""
        if raw is None or raw == "":
            return self.default
        if self.type is bool:
            return raw.strip().lower() in TRUE_WORDS
        if self.type in (int, float):
            return self.type(raw)
        return raw


def _registry() -> dict[str, Setting]:
    # Imported here: the declarations import Setting from this module (cycle).
    from sluice_common.settings.monitoring import MONITORING_SETTINGS
    from sluice_common.settings.retraining import RETRAINING_SETTINGS
    from sluice_common.settings.services import SERVICE_SETTINGS
    from sluice_common.settings.stack import STACK_SETTINGS
    from sluice_common.settings.stores import STORE_SETTINGS

    registry: dict[str, Setting] = {}
    every = (
        *STACK_SETTINGS,
        *SERVICE_SETTINGS,
        *MONITORING_SETTINGS,
        *STORE_SETTINGS,
        *RETRAINING_SETTINGS,
    )
    for setting in every:
        if setting.name in registry:
            raise RuntimeError(f"{setting.name} is declared twice")
        registry[setting.name] = setting
    return registry


SETTINGS: dict[str, Setting] = _registry()


def declared(name: str) -> Setting:
    """The declaration of `name`; KeyError for a variable nobody declared."""
    try:
        return SETTINGS[name]
    except KeyError:
        raise KeyError(f"{name} is not a declared setting (sluice_common/settings)") from None


def value(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """The typed value of one declared setting in `environ` (default: this process's)."""
    environ = os.environ if environ is None else environ
    return declared(name).parse(environ.get(name))


def raw(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """One declared setting as written in `environ` (default: this process's): None when
    unset, the string otherwise, for callers whose own default depends on where they run."""
    environ = os.environ if environ is None else environ
    return environ.get(declared(name).name)


def for_service(service: str) -> list[Setting]:
    """The settings `service` (trainer or preprocess) keeps in its Flask config."""
    return [s for s in SETTINGS.values() if service in s.read_by and not s.passed]


def defaults(service: str) -> dict[str, Any]:
    """`service`'s settings with their defaults."""
    return {s.name: s.default for s in for_service(service)}


def read(service: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`service`'s settings read from `environ` (default: this process's), typed."""
    environ = os.environ if environ is None else environ
    return {s.name: s.parse(environ.get(s.name)) for s in for_service(service)}


def section(name: str) -> dict[str, Any]:
    """The settings of one section with their defaults (e.g. "Admission")."""
    return {s.name: s.default for s in SETTINGS.values() if s.section == name}
