"""Configuration from environment variables with typed defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any


def from_env(defaults: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> dict:
    """Each key of `defaults`, overridden by the environment variable of the same name.

    The default's type decides how the variable is parsed; a default of None means string.
    """
    environ = os.environ if environ is None else environ
    config = {}
    for key, default in defaults.items():
        raw = environ.get(key)
        if raw is None or raw == "":
            config[key] = default
        elif isinstance(default, bool):
            config[key] = raw.strip().lower() in {"1", "true", "yes", "on"}
        elif isinstance(default, int):
            config[key] = int(raw)
        elif isinstance(default, float):
            config[key] = float(raw)
        else:
            config[key] = raw
    return config
