"""Champion models kept in memory, refreshed when the champion alias moves.

A request never reloads a model by itself. The cache notices a new champion two ways:
- a dev run in any worker of this trainer rewrites a small marker file; a request sees the
  marker's change with one stat() and reloads once;
- a background thread asks MLflow every CHAMPION_POLL_SECONDS, which catches aliases moved
  elsewhere (the MLflow UI, another trainer).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass

import requests

from trainer.lifecycle import lineage, registry, tracking_health
from trainer.lifecycle.signing import UntrustedVersion
from trainer.model.sluice_model import SluiceModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Champion:
    """A loaded champion and what we knew when we loaded it."""

    version: str
    model: SluiceModel
    marker: tuple | None
    # Lineage named in every prod answer, read with the alias (no MLflow call per request).
    run_id: str | None = None
    digest: str | None = None


class ChampionCache:
    """Per-process cache of champion models, one per model name."""

    def __init__(self, state_dir: str, poll_seconds: float, key: bytes):
        self.key = key
        self.marker_dir = os.path.join(state_dir, "champions")
        self.models_dir = os.path.join(state_dir, "models")
        os.makedirs(self.marker_dir, exist_ok=True)
        self.poll_seconds = poll_seconds
        self._entries: dict[str, Champion] = {}
        self._versions: dict[tuple[str, str], SluiceModel] = {}
        # Versions refused because Sluice did not sign them: never loaded, never retried.
        self.untrusted: dict[tuple[str, str], str] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._poller: threading.Thread | None = None

    def _marker_path(self, name: str) -> str:
        return os.path.join(self.marker_dir, hashlib.sha1(name.encode()).hexdigest())

    def _marker(self, name: str) -> tuple | None:
        try:
            stat = os.stat(self._marker_path(name))
        except FileNotFoundError:
            return None
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def notify_promoted(self, name: str, version: str, run_id=None, digest=None) -> None:
        """Tell every worker of this trainer that `name` has a new champion (also the one a
        worker that never served `name` starts from), with its lineage when known."""
        self._remember(name, version, run_id, digest)
        _write_atomically(self._marker_path(name), f"{version} {time.time_ns()}\n")

    def adopt(self, name: str, version: str, model: SluiceModel) -> None:
        """Keep a model this process just trained and registered as `version`: the next
        comparison or prod request needs no download (other workers load it as usual)."""
        self._versions[(name, version)] = _tuned(model)

    def model(self, name: str, version: str) -> SluiceModel:
        """A specific version, loaded once per process; UntrustedVersion when its files do not
        carry this trainer's signature (checked before any of its code runs)."""
        key = (name, version)
        model = self._versions.get(key)
        if model is None:
            if key in self.untrusted:
                raise UntrustedVersion(self.untrusted[key])
            try:
                model = _tuned(registry.load_version(name, version, self.models_dir, self.key))
            except UntrustedVersion as err:
                self.untrusted[key] = str(err)
                log.error("refusing to load %r v%s: %s", name, version, err)
                raise
            self._versions[key] = model
        return model

    def forget_others(self, name: str, keep: set[str | None]) -> None:
        """Drop loaded versions of `name` other than those in `keep` from this process (a
        comparison loaded the champion; a dev run adopted its challenger)."""
        entry = self._entries.get(name)
        if entry is not None:
            keep = keep | {entry.version}  # the version this process serves stays
        for key in [k for k in list(self._versions) if k[0] == name and k[1] not in keep]:
            self._versions.pop(key, None)

    def last_known(self, name: str) -> str | None:
        """The last champion version this trainer served for `name` (its local copy is kept
        for restarts while MLflow is down)."""
        return self._known(name)[0]

    def _known(self, name: str) -> list:
        """The last champion's [version, run_id, digest] (None where not recorded)."""
        try:
            with open(self._known_path(name), encoding="utf-8") as handle:
                lines = handle.read().split("\n")
        except OSError:
            lines = []
        return [(lines[i].strip() or None) if i < len(lines) else None for i in range(3)]

    def untrusted_aliases(self) -> list[dict]:
        """Champion aliases this process found pointing at versions it refused."""
        return [
            {"model": name, "version": version, "reason": reason}
            for (name, version), reason in sorted(self.untrusted.items())
        ]

    def get(self, name: str) -> Champion | None:
        """The current champion of `name`, or None when it has none."""
        self._start_poller()
        entry = self._entries.get(name)
        marker = self._marker(name)
        if entry is not None and entry.marker == marker:
            return entry
        with self._lock(name):
            entry = self._entries.get(name)
            if entry is not None and entry.marker == marker:
                return entry
            if entry is None:
                # First request for this name in this process (a restart, a new worker):
                # serve the last champion this trainer knew at once, from its verified local
                # copy, and leave the check with MLflow to the background poller, so prod
                # never waits on a slow or hung tracking server.
                known = self._last_known(name, marker)
                if known is not None:
                    return known
            try:
                if not tracking_health.reachable():
                    raise requests.ConnectionError("the MLflow tracking server is not answering")
                return self._refresh(name, marker)
            except Exception:
                # Tracking server unreachable, or the alias points at a version Sluice did
                # not sign: serve what we have, or the last trusted champion this trainer
                # knew of, from its local copy.
                fallback = entry or self._last_known(name, marker)
                if fallback is None:
                    raise
                log.warning("serving the last trusted champion %r v%s", name, fallback.version)
                return fallback

    def _known_path(self, name: str) -> str:
        return self._marker_path(name) + ".known"

    def _last_known(self, name: str, marker: tuple | None) -> Champion | None:
        version, run_id, digest = self._known(name)
        if version is None:
            return None
        try:
            entry = Champion(version, self.model(name, version), marker, run_id, digest)
        except Exception:
            return None
        self._entries[name] = entry
        return entry

    def _remember(self, name: str, version: str, run_id=None, digest=None) -> None:
        _write_atomically(self._known_path(name), f"{version}\n{run_id or ''}\n{digest or ''}")

    def _refresh(self, name: str, marker: tuple | None) -> Champion | None:
        record = registry.champion_record(name)
        if record is None:
            self._entries.pop(name, None)
            return None
        version = str(record.version)
        model = self.model(name, version)  # verified before any lineage is trusted
        digest = lineage.facts(record)["digest"]
        entry = Champion(version, model, marker, record.run_id or None, digest)
        self._entries[name] = entry
        self._remember(name, version, entry.run_id, digest)
        self._drop_old_versions(name, keep=version)
        return entry

    def _drop_old_versions(self, name: str, keep: str) -> None:
        for key in [k for k in list(self._versions) if k[0] == name and k[1] != keep]:
            self._versions.pop(key, None)

    def _start_poller(self) -> None:
        if self._poller is not None or self.poll_seconds <= 0:
            return
        with self._guard:
            if self._poller is None:
                self._poller = threading.Thread(
                    target=self._poll_forever, name="champion-poller", daemon=True
                )
                self._poller.start()

    def _poll_forever(self) -> None:
        # One registry search a poll for every model this process serves (a call per model
        # each second kept MLflow busy once a trainer served a few hundred models).
        while True:
            time.sleep(self.poll_seconds)
            if not self._entries:
                continue
            try:
                champions = registry.champion_versions()
            except Exception as err:  # keep polling through outages
                log.debug("champion poll failed: %s", err)
                continue
            for name in list(self._entries):
                entry = self._entries.get(name)
                # A champion served from the last known one after a restart may lack its
                # lineage: it is read once with the alias.
                if (
                    entry is not None
                    and champions.get(name) == entry.version
                    and entry.run_id is not None
                ):
                    continue
                try:
                    with self._lock(name):
                        self._refresh(name, self._marker(name))
                    log.info("champion of %r is now v%s", name, champions.get(name))
                except Exception as err:
                    log.debug("champion refresh for %r failed: %s", name, err)


def _tuned(model: SluiceModel) -> SluiceModel:
    """Set a served model's OpenMP threads: one for small requests (they already run side by
    side across workers and threads, and waking a thread team costs ~20 ms at p90 on a busy
    host), every core for large batches. Models logged before use_threads stay on one."""
    if hasattr(model, "use_threads"):
        model.use_threads(small=1, large=0)
    else:
        model.booster.set_param({"nthread": 1})
    return model


def _write_atomically(path: str, text: str) -> None:
    """Replace a small file so readers see the old or the new content, never a part."""
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)
