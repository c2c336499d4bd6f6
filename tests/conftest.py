"""Shared fixtures: the PID-namespace and subreaper modes of the init, and
:func:`tests.support.library.no_new_zombies`."""

from __future__ import annotations

import os

import pytest

from nucleus_trio.config import PEER_VARIABLES, VARIABLE_PREFIX
from tests.support.launch import pidns_available

# The library tests' fixture, for every test module: imported into a test
# module, each parameter of that name would shadow the import (ruff's F811).
from tests.support.library import no_new_zombies  # noqa: F401

# The peers' variables change the init's defaults (see test_peer_environment):
# one set in the environment of the test run would change what every test
# sees, so the tests that want them set them.
for _variable in PEER_VARIABLES:
    os.environ.pop(_variable, None)
# The same for the init's own variables (NUCLEUS_TRIO_GRACE and the like).
for _variable in [name for name in os.environ if name.startswith(VARIABLE_PREFIX)]:
    os.environ.pop(_variable, None)

_PIDNS = pidns_available()
_PIDNS_REASON = "needs root and unshare --pid to run the init as PID 1 of a new namespace"


def pytest_report_header() -> str:
    return f"nucleus-trio: PID namespaces {'available' if _PIDNS else 'NOT available'}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if _PIDNS:
        return
    skip = pytest.mark.skip(reason=_PIDNS_REASON)
    for item in items:
        if "pid1" in item.keywords:
            if os.environ.get("CI"):
                # CI runs as root and must have namespaces: never skip there.
                item.add_marker(pytest.mark.xfail(reason=_PIDNS_REASON, strict=True))
            else:
                item.add_marker(skip)


@pytest.fixture(params=["pid1", "subreaper"])
def mode(request: pytest.FixtureRequest) -> str:
    """Run a test with the init as PID 1 of a new namespace, then as subreaper."""
    if request.param == "pid1":
        request.applymarker(pytest.mark.pid1)
        if not _PIDNS:
            pytest.skip(_PIDNS_REASON)
    return str(request.param)
