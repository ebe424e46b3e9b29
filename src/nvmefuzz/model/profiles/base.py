"""What a migration profile is: the state a design saves plus its save and load hooks.

A profile is data (``saves``: a set of schema paths from ``model.snapshot.SCHEMA``) and small
hooks.  ``pre_save`` runs on the source before anything is captured; it may drain in-flight
I/O, and it may refuse by raising ``MigrationRefused``, in which case it leaves the source the
way that design's error path does, or raise ``MigrationHung`` where that design would wait
forever.  ``post_load`` runs on the destination after the saved fields were applied to a
freshly powered-on controller.  ``drains_inflight`` tells the fuzzer that the design finishes
in-flight I/O at save time, a legal timing choice the never-migrated twin is given too, so it
is not mistaken for a finding.

Two more describe where a hypervisor's migration puts the device save.  ``stop`` is what
stopping the VM does to the device before the final RAM pass (QEMU's ``vm_stop`` drains the
block layer then); the twin is stopped the same way.  ``ram_first`` says guest RAM is sent
before ``pre_save`` runs, as in QEMU's precopy: whatever ``pre_save`` writes into guest
memory (CQEs it posts, shadow-doorbell EventIdx values, MSI-X messages) never reaches the
destination.  A design whose device is stopped and saved with its memory (a VFIO device in
STOP_COPY, an ideal design) leaves both at their defaults.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs

from nvmefuzz.model import snapshot as snap
from nvmefuzz.model.controller import Controller


def _nothing(ctrl: Controller) -> None:
    """A hook that does nothing."""


def _kick(ctrl: Controller) -> None:
    ctrl.kick()


def _identity(state: Any) -> Any:
    return state


@attrs.frozen
class Profile:
    name: str
    description: str
    source: str
    saves: frozenset[str]
    pre_save: Callable[[Controller], None] = _nothing
    post_load: Callable[[Controller], None] = _kick
    drains_inflight: bool = False
    stop: Callable[[Controller], None] | None = None
    ram_first: bool = False
    #: turn the selected plain state into what goes on the wire, and back
    encode_state: Callable[[dict], Any] = _identity
    decode_state: Callable[[Any], dict] = _identity

    def encode(self, ctrl: Controller) -> bytes:
        state = snap.select(snap.capture(ctrl), self.saves)
        return snap.encode(self.name, ctrl.config, self.encode_state(state))

    def without(self, path: str) -> Profile:
        """This profile with ``path`` no longer saved (a mutant of the design)."""
        if path not in self.saves:
            raise KeyError(f"{self.name} does not save {path}")
        return attrs.evolve(self, name=f"{self.name}-without-{path}",
                            description=f"{self.name}, but {path} is not saved",
                            saves=self.saves - {path})


ALL_FIELDS = frozenset(snap.SCHEMA)
