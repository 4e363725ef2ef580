"""The lock files: every package pinned with hashes, made from today's pins, the same versions
in .venv and every image, and what .venv actually holds."""

from __future__ import annotations

import os
import re
import subprocess
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from testkit.stack import ROOT

SERVICES = ("preprocess", "trainer", "tracking", "s3")
DEV_LOCK = os.path.join(ROOT, "requirements.lock")
ENTRY = re.compile(r"^(?P<spec>[A-Za-z0-9][^\s\\]*(?: ; [^\\]+)?) \\$")


def read_lock(path: str) -> dict[str, tuple[Requirement, list[str]]]:
    """Each locked package: its requirement (name==version ; marker) and its hashes."""
    entries: dict[str, tuple[Requirement, list[str]]] = {}
    current = None
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if match := ENTRY.match(line.rstrip("\n")):
                current = Requirement(match["spec"])
                key = f"{canonicalize_name(current.name)} {current.marker or ''}"
                entries[key] = (current, [])
            elif line.strip().startswith("--hash=sha256:") and current is not None:
                entries[key][1].append(line.strip().removeprefix("--hash=sha256:").rstrip(" \\"))
    return entries


def top_level_pins(path: str) -> dict[str, str]:
    pins = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.split("#")[0].strip()
            if line and not line.startswith("-"):
                requirement = Requirement(line)
                pins[canonicalize_name(requirement.name)] = str(requirement.specifier)
    return pins


def versions(entries) -> dict[str, set[str]]:
    """Package name -> its locked versions (one, or one per marker, e.g. per Python)."""
    found: dict[str, set[str]] = {}
    for requirement, _ in entries.values():
        found.setdefault(canonicalize_name(requirement.name), set()).add(str(requirement.specifier))
    return found


LOCKS = {"dev": DEV_LOCK} | {
    service: os.path.join(ROOT, service, "requirements.lock") for service in SERVICES
}


@pytest.mark.parametrize("name", LOCKS)
def test_every_locked_package_is_exact_and_hashed(name):
    entries = read_lock(LOCKS[name])
    # Every lock holds its top-level pins and what they pull in (the s3 image is the smallest).
    assert len(entries) > 5
    for key, (requirement, hashes) in entries.items():
        assert re.fullmatch(r"==[^*,]+", str(requirement.specifier)), key
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), key


@pytest.mark.parametrize("name", LOCKS)
def test_the_locks_are_made_from_todays_pins(name):
    inputs = subprocess.run(
        [os.path.join(ROOT, "scripts", "lock_inputs.sh")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with open(LOCKS[name], encoding="utf-8") as handle:
        assert handle.readline().strip() == f"# inputs sha256: {inputs}", (
            "a pin changed since the locks were made: run scripts/lock.sh"
        )


@pytest.mark.parametrize("service", SERVICES)
def test_each_image_locks_its_pins_at_the_versions_of_the_venv(service):
    locked = versions(read_lock(LOCKS[service]))
    dev = versions(read_lock(DEV_LOCK))
    for name, found in locked.items():
        assert found <= dev.get(name, set()), (
            f"{name}: {found} in {service}, {dev.get(name)} in .venv"
        )
    for name, pin in top_level_pins(os.path.join(ROOT, service, "requirements.txt")).items():
        assert locked.get(name) == {pin}, name
    assert "nvidia-nccl-cu12" not in locked  # multi-GPU only, ~470 MB


@pytest.mark.parametrize("service", SERVICES)
def test_each_image_installs_only_its_lock(service):
    with open(os.path.join(ROOT, service, "Dockerfile"), encoding="utf-8") as handle:
        dockerfile = handle.read()
    assert f"COPY {service}/requirements.lock " in dockerfile
    installs = re.findall(r"pip install[^\n]*", dockerfile)
    assert installs and all(
        "--require-hashes --no-deps -r /tmp/requirements.lock" in i for i in installs
    )


def test_the_venv_holds_nothing_beyond_the_lock():
    locked = {canonicalize_name(req.name) for req, _ in read_lock(DEV_LOCK).values()}
    installed = {canonicalize_name(d.metadata["Name"]) for d in metadata.distributions()}
    assert installed - locked - {"pip", "setuptools", "wheel"} == set()


def test_a_stale_lock_is_refused_before_anything_is_installed(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", ROOT, str(clone)], check=True, timeout=120)
    pins = clone / "trainer" / "requirements.txt"
    pins.write_text(pins.read_text() + "# a changed pin\n")
    venv = tmp_path / "venv"
    done = subprocess.run(
        [str(clone / "scripts" / "ensure_venv.sh")],
        env={**os.environ, "SLUICE_VENV": str(venv)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "run scripts/lock.sh" in done.stderr
    assert not venv.exists()


def test_the_venv_holds_exactly_the_locked_versions():
    for requirement, _ in read_lock(DEV_LOCK).values():
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        installed = metadata.version(requirement.name)
        assert requirement.specifier.contains(installed, prereleases=True), (
            f"{requirement.name} {installed} installed, {requirement.specifier} locked"
        )
