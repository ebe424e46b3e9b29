"""QEMU for the tests in this folder: found by discovery, or a skip/fail with the reason.

Tests that need a running QEMU take the ``qemu_binary`` fixture (or ``make_target``).  When no
usable QEMU >= 11.1 is found they are skipped with discovery's reason (a ``skipif`` mark added
at collection, so the reason shows in the summary) -- unless ``NVMEFUZZ_REQUIRE_QEMU=1``
(``.ci/run`` sets it), where they fail instead.  The pure codec and discovery tests need no
QEMU and always run.
"""

from __future__ import annotations

import os

import pytest

from nvmefuzz.errors import TargetUnavailable
from nvmefuzz.targets import discovery

REQUIRED = os.environ.get("NVMEFUZZ_REQUIRE_QEMU") == "1"


def _find():
    try:
        return discovery.find_qemu(), ""
    except TargetUnavailable as exc:
        return None, str(exc)


QEMU, REASON = _find()
NEEDS_QEMU = {"qemu_binary", "make_target"}


def pytest_collection_modifyitems(config, items):
    mark = pytest.mark.skipif(QEMU is None and not REQUIRED,
                              reason=f"no QEMU for the qemu target: {REASON}")
    for item in items:
        if NEEDS_QEMU & set(getattr(item, "fixturenames", ())):
            item.add_marker(mark)


@pytest.fixture(scope="session")
def qemu_binary():
    if QEMU is None:       # only reached with NVMEFUZZ_REQUIRE_QEMU=1 (otherwise skipped)
        pytest.fail(f"NVMEFUZZ_REQUIRE_QEMU=1 but no usable QEMU: {REASON}")
    return QEMU


@pytest.fixture
def make_target(qemu_binary):
    """``make_target(**TargetConfig fields, device_props=..., drive=..., reply_timeout=...)``;
    closed after the test."""
    from nvmefuzz.targets.base import TargetConfig
    from nvmefuzz.targets.qemu import QemuTarget
    from nvmefuzz.targets.qemu_argv import PLAIN

    made = []

    def make(device_props: str = "", reply_timeout: float = 10.0, drive=PLAIN, **cfg):
        t = QemuTarget(TargetConfig(kind="qemu", **cfg), qemu_binary,
                       device_props=device_props, reply_timeout=reply_timeout, drive=drive)
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()
