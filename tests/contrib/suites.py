"""Contrib's own test suites, fetched from the sdist of the installed release and run in a
pytest subprocess, against contrib's middleware (the control) and against ours.

The sdist is downloaded at test time (``pip download --no-binary :all: --no-deps``) into a
cache outside the repository (``~/.cache/otel-user-tracking/contrib``, or
``$OTEL_USER_TRACKING_CONTRIB_CACHE``); nothing of it is copied into the repository.
``python -m tests.contrib.report`` rewrites the compatibility page (docs/compatibility.md) from
``by_design.toml`` and a fresh run of every suite.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Suite:
    """One contrib instrumentation's test folder, run under the name ``package``, against
    ``ours`` (what ``ours_NAME.py`` substitutes for contrib's instrumentation)."""

    name: str
    distribution: str
    package: str
    ours: str
    minimum: int  # tests the control run must find at least


def _suite(name: str, ours: str, minimum: int) -> Suite:
    return Suite(name, f"opentelemetry-instrumentation-{name}", f"contrib_{name}", ours, minimum)


SUITES = {
    suite.name: suite
    for suite in (
        _suite("asgi", "`UserTrackingMiddleware`", 80),
        _suite("wsgi", "`UserTrackingWSGIMiddleware`", 40),
        _suite("flask", "the Flask adapter", 45),
        _suite("django", "the Django adapter", 60),
        _suite("starlette", "the Starlette adapter", 30),
        _suite("fastapi", "the Starlette and FastAPI adapters", 100),
    )
}


_SAFE: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


class SuiteUnavailable(RuntimeError):
    """The sdist could not be downloaded or holds no tests."""


def cache_dir() -> Path:
    return Path(os.environ.get("OTEL_USER_TRACKING_CONTRIB_CACHE", "~/.cache/otel-user-tracking/contrib"))


def prepare(suite: Suite) -> tuple[str, Path]:
    """The installed version and a folder holding its tests as package ``suite.package``."""
    version = importlib.metadata.version(suite.distribution)
    base = cache_dir().expanduser() / f"{suite.distribution}-{version}"
    tests = base / suite.package
    if (tests / "__init__.py").exists() and (base / "site" / "opentelemetry" / "test").is_dir():
        return version, base
    downloads = base / "sdist"
    downloads.mkdir(parents=True, exist_ok=True)
    archives = sorted(downloads.glob("*.tar.gz"))
    if not archives:
        command = [sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps"]
        command += [f"{suite.distribution}=={version}", "-d", str(downloads)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        archives = sorted(downloads.glob("*.tar.gz"))
        if done.returncode or not archives:
            raise SuiteUnavailable(
                f"pip download {suite.distribution}=={version} failed: {done.stderr[-500:]}"
            )
    _unpack_test_utils(version, base / "site")
    staging = base / f"staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(archives[0]) as archive:
        members = [m for m in archive.getmembers() if "/tests/" in m.name and m.isfile()]
        if not members:
            raise SuiteUnavailable(f"{archives[0].name} holds no tests/ folder")
        for member in members:
            member.name = member.name.split("/tests/", 1)[1]
            archive.extract(member, staging, **_SAFE)
    (staging / "__init__.py").touch()
    try:
        staging.rename(tests)
    except OSError:  # another run unpacked it first
        shutil.rmtree(staging, ignore_errors=True)
    (base / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    return version, base


def _unpack_test_utils(version: str, site: Path) -> None:
    """``opentelemetry-test-utils`` of the suite's release (``opentelemetry.test``, which the
    suites import), unpacked for the subprocess only: installed, its exact API and SDK pins would
    tie this project's test environment to one OpenTelemetry release."""
    if (site / "opentelemetry" / "test").is_dir():
        return
    wheels = site.parent / "test-utils"
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:"]
    command += [f"opentelemetry-test-utils=={version}", "-d", str(wheels)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    found = sorted(wheels.glob("*.whl"))
    if done.returncode or not found:
        raise SuiteUnavailable(
            f"pip download opentelemetry-test-utils=={version} failed: {done.stderr[-500:]}"
        )
    staging = site.parent / f"site-{os.getpid()}"
    with zipfile.ZipFile(found[0]) as wheel:
        wheel.extractall(staging)
    try:
        staging.rename(site)
    except OSError:  # another run unpacked it first
        shutil.rmtree(staging, ignore_errors=True)


def run(suite: Suite, base: Path, *, ours: bool) -> dict[str, list[str]]:
    """Each test's ``[outcome, last line of its failure]``, keyed ``file::Class::test``.

    Tests that fail are run once more, alone, and the second outcome counts: a few of contrib's
    tests compare wall-clock durations to 10 ms, which a loaded machine misses now and then.
    """
    found = _run_once(suite, base, ours, [suite.package])
    again = [f"{suite.package}/{test}" for test, (outcome, _) in found.items() if outcome != "passed"]
    if again and len(again) * 2 <= len(found):  # most failing: the releases cannot run it, no flake
        found.update(_run_once(suite, base, ours, again))
    return found


def _run_once(suite: Suite, base: Path, ours: bool, selection: list[str]) -> dict[str, list[str]]:
    outcomes = base / f"{'ours' if ours else 'contrib'}-{os.getpid()}.json"
    outcomes.unlink(missing_ok=True)
    env = dict(os.environ)
    site = base / "site"
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(base), str(site), env.get("PYTHONPATH", "")])
    env.pop("OTEL_SEMCONV_STABILITY_OPT_IN", None)
    env.pop(
        "OTEL_PYTHON_USER_TRACKING_RAISE_INTERNAL_ERRORS", None
    )  # contrib's tests expect production's rule
    command = [sys.executable, "-m", "pytest", "-q", "-p", "otel_contrib_adapter", "-p", "no:cacheprovider"]
    command += ["-c", str(base / "pytest.ini"), "--rootdir", str(base), "--outcomes", str(outcomes)]
    command += ["-W", "ignore::DeprecationWarning", *selection]
    if ours:
        command += ["--ours", suite.name]
    done = subprocess.run(command, cwd=base, env=env, capture_output=True, text=True, timeout=600)
    if not outcomes.exists():
        raise RuntimeError(
            f"the {suite.name} suite did not run:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    found: dict[str, list[str]] = json.loads(outcomes.read_text(encoding="utf-8"))
    outcomes.unlink()
    return {key.split("/", 1)[1]: value for key, value in found.items()}
