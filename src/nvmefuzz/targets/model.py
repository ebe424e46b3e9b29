"""The ``model`` target: the reference controller in-process, migrated through a profile.

Migration is ``snapshot(profile)`` on the source and ``restore`` onto a fresh controller that
shares the source's guest memory and namespace store (VM RAM and disk carry over).  A
profile's ``stop`` runs first, on the twin's drain too; for a ``ram_first`` profile the memory
is checkpointed before the save and rolled back after it, and the MSI-X messages the save
sent are dropped: the final RAM pass went before them.  A refusal leaves the source running
with what it wrote; a save that would never return is a ``hung`` outcome naming what it waits
for; a blob the destination cannot load is a ``crashed`` outcome with the loader's message.
Completion order is fully deterministic.  With ``msix_once_per_look`` (part of
``QEMU_VIEW``) each look at the interrupts shows every MSI-X vector that fired once, in vector
order, as the qemu target can.

``repair`` (state paths) makes every migration load those paths from ``truth()`` (a captured
state, the never-migrated twin's) instead of from what the profile saved, and with
``RAM_PASS`` among them a ``ram_first`` profile's save runs before the final RAM pass:
``fuzz.cause`` asks that way whether a finding needs those paths lost.  The migrations
``TargetConfig.perfect_migrations`` names load everything from ``truth`` that way.
"""

from __future__ import annotations

import functools
from typing import Callable

from nvmefuzz.errors import MigrationHung, MigrationRefused, SnapshotError
from nvmefuzz.model import snapshot as snap
from nvmefuzz.model.controller import GUEST_RAM, Controller
from nvmefuzz.model.memory import GuestMemory, NamespaceStore
from nvmefuzz.model.profiles import get as get_profile
from nvmefuzz.model.state import Config
from nvmefuzz.model.statediff import merge
from nvmefuzz.targets.base import (COMPLETED, CRASHED, HOLD_IO, HUNG, NS_CHANGED, REFUSED,
                                   MigrationOutcome, TargetConfig)


#: the repair path (``repair``) of what a ``ram_first`` save writes into guest memory
RAM_PASS = "guest memory written while saving"


class ModelTarget:
    name = "model"
    deterministic_order = True

    def __init__(self, cfg: TargetConfig) -> None:
        self.cfg = cfg
        self.profile = get_profile(cfg.profile)
        self.config = Config(msix=cfg.msix, io_latency_ns=cfg.io_latency_ns, nsze=cfg.nsze)
        self.ctrl = Controller(self.config, GuestMemory(GUEST_RAM), NamespaceStore(cfg.nsze))
        self._irq_seen = 0
        self._irq_carry: list[tuple[str, int]] = []
        self.last_blob = b""
        self.repair: frozenset[str] = frozenset()
        #: the never-migrated twin's state, for ``repair`` and ``cfg.perfect_migrations``
        #: (set by the session)
        self.truth: Callable[[], dict] | None = None
        self.migrations = 0

    def mmio_read(self, offset: int, size: int) -> int:
        return self.ctrl.mmio_read(offset, size)

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        self.ctrl.mmio_write(offset, size, value)

    def mem_read(self, addr: int, length: int) -> bytes:
        return self.ctrl.mem.read(addr, length)

    def mem_write(self, addr: int, data: bytes) -> None:
        self.ctrl.mem.write(addr, data)

    def advance(self, ns: int) -> None:
        self.ctrl.advance(ns)

    def irq_events(self) -> list[tuple[str, int]]:
        log = self.ctrl.irq_log
        new = self._irq_carry + log[self._irq_seen:]
        self._irq_carry = []
        if len(log) > 4096:                      # keep the log short on long runs
            del log[:]
            self._irq_seen = 0
        else:
            self._irq_seen = len(log)
        if self.cfg.msix_once_per_look and len(new) > 1:     # as the qemu target sees them
            new = ([("msix", v) for v in sorted({v for kind, v in new if kind == "msix"})]
                   + [e for e in new if e[0] != "msix"])
        return new

    @property
    def held(self) -> bool:
        return self.ctrl.held

    def drain(self) -> None:
        self.ctrl.held = False
        if self.profile.stop is not None:
            self.profile.stop(self.ctrl)
        self.ctrl.drain()

    def environment(self, event: str, arg: int) -> bool:
        if event == NS_CHANGED:
            from nvmefuzz.model import events

            events.namespace_changed(self.ctrl, arg)
            self.ctrl._run()
            return True
        if event == HOLD_IO:
            self.ctrl.held = bool(arg)
            return True
        return False

    def migrate(self) -> MigrationOutcome:
        src = self.ctrl
        patch, ram_first = None, self.profile.ram_first
        paths = self.repair
        if self.migrations in self.cfg.perfect_migrations:
            paths = frozenset(snap.SCHEMA) | {RAM_PASS}
        self.migrations += 1
        if paths and self.truth is not None:
            patch = functools.partial(merge, truth=self.truth(), paths=paths - {RAM_PASS})
            ram_first = ram_first and RAM_PASS not in paths
        src.held = False                          # a migration ends a hold (targets.base)
        if self.profile.stop is not None:
            self.profile.stop(src)
        raised = self.irq_events()                # before the save: the guest gets these
        if ram_first:
            src.mem.checkpoint()                  # the final RAM pass
        try:
            blob = snap.snapshot(src, self.profile)
        except MigrationRefused as exc:
            src.mem.commit()                      # the source runs on with what it wrote
            self._irq_carry = raised
            return MigrationOutcome(REFUSED, exc.reason)
        except MigrationHung as exc:
            src.mem.commit()                      # the source never gets further
            return MigrationOutcome(HUNG, f"save: {exc.reason}")
        saving = self.irq_events()
        if ram_first:
            src.mem.rollback()
            saving = [e for e in saving if e[0] != "msix"]   # written after RAM went
        self.last_blob = blob
        try:
            dst = snap.restore(blob, self.config, self.profile, src.mem, src.store, src.now,
                               patch)
        except SnapshotError as exc:
            return MigrationOutcome(CRASHED, f"load failed: {exc}", len(blob))
        carry = raised + saving                   # what the source raised, for the guest
        self.ctrl, self._irq_seen, self._irq_carry = dst, 0, carry
        return MigrationOutcome(COMPLETED, "", len(blob))

    def close(self) -> None:
        pass
