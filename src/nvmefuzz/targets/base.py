"""The target interface: one protocol for the in-process model and for a real QEMU.

A target is a controller behind a bus (MMIO and guest memory), a virtual clock, an
interrupt log and a way to migrate.  ``advance(ns)`` lets virtual time pass and returns once
everything that can happen by then has happened (the model runs to a fixpoint; QEMU is
polled until quiet within a bound).  ``migrate()`` moves the controller to a fresh instance
and reports how that went; after a refusal the same instance keeps running.

``deterministic_order`` says whether commands outstanding together complete in one fixed
order.  The comparator uses it: for targets that say False, completions of commands that were
outstanding at the same time may legally arrive in either order.
"""

from __future__ import annotations

from typing import Protocol

import attrs

COMPLETED, REFUSED, CRASHED, HUNG = "completed", "refused", "crashed", "hung"
#: environment events: the namespace changed (arg: NSID); the backend holds the guest's reads
#: and writes in flight (arg 1) or lets them finish (arg 0).  A migration ends a hold: the
#: destination's backend is another one, and the session releases the twin's.
NS_CHANGED, HOLD_IO = "ns_changed", "hold_io"


@attrs.frozen
class MigrationOutcome:
    kind: str                 # completed | refused | crashed | hung
    detail: str = ""
    size: int = 0             # bytes of device state moved

    @property
    def ok(self) -> bool:
        return self.kind == COMPLETED


class Target(Protocol):
    name: str
    deterministic_order: bool

    def mmio_read(self, offset: int, size: int) -> int: ...
    def mmio_write(self, offset: int, size: int, value: int) -> None: ...
    def mem_read(self, addr: int, length: int) -> bytes: ...
    def mem_write(self, addr: int, data: bytes) -> None: ...
    def advance(self, ns: int) -> None: ...
    def irq_events(self) -> list[tuple[str, int]]:
        """Interrupt events since the last call: ("msix", vector) or ("intx", level)."""
    def drain(self) -> None:
        """Finish in-flight I/O now, held I/O included (the twin's side of a migration that
        drains)."""
    def migrate(self) -> MigrationOutcome: ...
    def environment(self, event: str, arg: int) -> bool:
        """Apply an environment event (``NS_CHANGED``, ``HOLD_IO``); False if unsupported."""
    def close(self) -> None: ...


#: the model options under which the model shows what the qemu target can: QEMU's I/O
#: completes in real time while its virtual clock stands still, and the qemu target settles
#: after every step, so in virtual time every command completes at once; and an MSI-X message
#: is a DMA write of a fixed value to a per-vector dword that the qemu target reads and
#: clears once per look, so a vector that fired twice between two looks is seen once.  Timing
#: and visibility choices, not behaviour: ``fuzz.diff`` and ``fuzz.cause`` replay QEMU's steps
#: on the model this way.
QEMU_VIEW = {"io_latency_ns": 0, "msix_once_per_look": True}
#: the environment events the qemu target carries out; it skips the others (``NS_CHANGED``:
#: QEMU has no namespace to change under the guest here), and so must a model replaying it
QEMU_EVENTS = frozenset({HOLD_IO})


@attrs.frozen
class TargetConfig:
    """How to build a target: its kind, the controller's power-on config and a profile."""

    kind: str = "model"
    profile: str = "full"
    msix: bool = True
    io_latency_ns: int = 20_000
    nsze: int = 1 << 14
    #: the model shows each MSI-X vector once per look, however often it fired (``QEMU_VIEW``)
    msix_once_per_look: bool = False
    #: the model's migrations (0 the first) that lose nothing: where a QEMU trace's migration
    #: met timing under which it lost nothing and the model's would have (``fuzz.cause``)
    perfect_migrations: tuple[int, ...] = attrs.field(default=(), converter=tuple)

    @property
    def design_name(self) -> str:
        """What migrates: the model's profile, else the target itself (QEMU migrates by its
        own rules, whatever profile the config carries)."""
        return self.profile if self.kind == "model" else self.kind

    @property
    def design(self) -> str:
        """``design_name`` said what it is: ``profile full``, ``target qemu``."""
        return f"{'profile' if self.kind == 'model' else 'target'} {self.design_name}"

    def to_plain(self) -> dict:
        plain = attrs.asdict(self)
        if not self.perfect_migrations:      # traces without any keep their bytes
            del plain["perfect_migrations"]
        return plain

    @classmethod
    def from_plain(cls, plain: dict) -> TargetConfig:
        return cls(**plain)
