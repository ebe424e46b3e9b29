"""Shared fixtures for the nightly-job tests: the CLI as a subprocess, campaign folders, traces.

The nightly command loads campaigns from ``strategies/`` in its working directory when that
folder exists, so each test runs it with ``cwd`` set to a temporary folder holding one or two
small campaigns: ``v3`` (profile ``qemu-v3-patch``, mostly Set/Get Features around
migrations, so it finds the lost feature values within seconds) and ``full`` (profile
``full``, every rule at its default weight: clean).

Pytest runs with ``--import-mode=importlib``, so tests cannot import this module; they get the
helpers through fixtures.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nvmefuzz.fuzz.campaign import DEFAULT_WEIGHTS
from nvmefuzz.targets.base import TargetConfig
from nvmefuzz.trace.schema import Step, Trace, Verdict

#: the ``v3`` campaign: only the rules that expose the v3 patch's lost feature values
V3_WEIGHTS = {"set_features": 6, "get_features": 6, "migrate": 4}

#: a finding of the v3 patch: Temperature Threshold set to 0 comes back as 343 after migration
TEMP_THRESHOLD_SIGNATURE = "divergence:cqe/admin/GET_FEATURES/fid=0x04/dw0"
TEMP_THRESHOLD_STEPS = (
    Step("enable", {"acqs": 7, "asqs": 7}),
    Step("admin", {"opc": 9, "cdw10": 4, "cdw11": 0}),      # Set Features, fid 4, value 0
    Step("migrate", {}),
    Step("admin", {"opc": 10, "cdw10": 4, "cdw11": 0}),     # Get Features, fid 4
)


def _campaign_toml(name: str, profile: str, steps: int, weights: dict[str, int] | None) -> str:
    text = f'name = "{name}"\nprofile = "{profile}"\nsteps = {steps}\n'
    if weights is not None:
        text += "\n[weights]\n" + "".join(
            f"{rule} = {weights.get(rule, 0)}\n" for rule in DEFAULT_WEIGHTS)
    return text


@pytest.fixture(scope="session")
def cli() -> list[str]:
    """The ``nvmefuzz`` command of this venv (its console script, else ``python -m``)."""
    script = Path(sys.executable).with_name("nvmefuzz")
    return [str(script)] if script.exists() else [sys.executable, "-m", "nvmefuzz.cli"]


@pytest.fixture(scope="session")
def run_cli(cli):
    """Run ``nvmefuzz ARGS`` in ``cwd``; the completed process (output as text)."""

    def run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(cli + [str(a) for a in args], cwd=cwd, capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, "COLUMNS": "200"})

    return run


@pytest.fixture(scope="session")
def strategies():
    """Write a ``strategies/`` folder into a directory: ``v3`` and, unless told not to, ``full``."""

    def write(root: Path, full: bool = True) -> Path:
        folder = Path(root) / "strategies"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "v3.toml").write_text(_campaign_toml("v3", "qemu-v3-patch", 20, V3_WEIGHTS))
        if full:
            (folder / "full.toml").write_text(_campaign_toml("full", "full", 10, None))
        return folder

    return write


@pytest.fixture(scope="session")
def make_trace():
    """A trace of the v3 temperature-threshold finding, with any profile and recorded verdict."""

    def make(profile: str = "qemu-v3-patch", kind: str = "divergence",
             signature: str = TEMP_THRESHOLD_SIGNATURE, steps=TEMP_THRESHOLD_STEPS) -> Trace:
        return Trace(target=TargetConfig(profile=profile).to_plain(), campaign="v3", seed=0,
                     steps=tuple(steps), verdict=Verdict(kind, signature))

    return make


@pytest.fixture(scope="session")
def signature_of_v3_finding() -> str:
    """The signature the ``make_trace`` default trace reaches on ``qemu-v3-patch``."""
    return TEMP_THRESHOLD_SIGNATURE
