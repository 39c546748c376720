"""Shared fixtures: the real data beside the repo, and one local Ray for the whole session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Ray workers started by any test (not only through `ray_local`) must import test modules too:
# local Ray workers inherit the driver's environment.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO / "tests"), str(REPO), os.environ.get("PYTHONPATH", "")] if p)
SHARED_DATA = Path(os.environ.get("WINNOW_SHARED_DATA", REPO.parent / "shared" / "data"))


#: Under CI=true nothing may skip except for one of these stated reasons (a skip whose reason does
#: not start with one is turned into a failure); a missing `../shared/data` fails, never skips.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ALLOWED_CI_SKIPS = ("no GPU",)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data`; tests that need it skip with a clear message when it is absent, and
    fail under CI=true (the data is part of what CI must have)."""
    if not SHARED_DATA.is_dir():
        msg = f"real test data not found at {SHARED_DATA} (set WINNOW_SHARED_DATA)"
        if IN_CI:
            pytest.fail(f"CI=true: {msg}", pytrace=False)
        pytest.skip(msg)
    return SHARED_DATA


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true a skip is a failure unless its reason starts with an allowed prefix."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        if not reason.startswith(ALLOWED_CI_SKIPS):
            report.outcome = "failed"
            report.longrepr = f"CI=true: skipping is not allowed here (reason: {reason!r}); allowed: {ALLOWED_CI_SKIPS}"


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray cluster (2 CPUs) shared by every test that needs it."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"]}})
    yield ray
    ray.shutdown()
