"""Migrating a QEMU process: the warm pool of destinations and QMP file migration.

How it works
------------
QEMU's file URI needs no second live peer: the source runs QMP ``migrate`` with ``file:PATH``
and we wait (bounded) for the ``MIGRATION`` event that says it left the active states, then
``query-migrate`` says how it ended. All of it goes through each process's minimal QMP socket
(``RawQmp``: a command costs about 0.2 ms there against 2 ms through ``qemu.qmp``). A
destination is a ``QemuProcess`` started ahead of time with ``-incoming defer`` on the same
disk image (as shared storage would be: the destination keeps the image inactive until the load
completes); ``WarmPool`` keeps ``size`` of them booting in the background (a thread per process
waits for it to boot and connects its sockets) and starts a replacement whenever one is taken.
The destination runs ``migrate-incoming file:PATH`` and is waited for the same way.

The event can be late: after a refused save with I/O in flight, about one time in seven the
migration had already failed but QEMU's main loop slept on with the event unsent, until a
timer woke it (about 0.9 s; once more than 10 s, a false "hung").  Under ``-accel qtest``
with no PIT no timer is armed, so nothing else wakes it (with the PIT, its timer capped the
sleep at 55 ms).  A QMP command wakes the main loop, so the wait asks ``query-migrate``
every ``NUDGE_S`` seconds without the event, and a final status there ends the wait.

Outcomes (``nvmefuzz.targets.base.MigrationOutcome``): completed (the caller switches to the
destination and closes the source), refused (``migrate`` failed with QEMU's error text, e.g. a
migration blocker or a failing ``pre_save``; the source is resumed and carries on), crashed
(either process died -- exit status, signal and stderr kept -- or the destination could not
load the stream) and hung (a bound expired).  The migration file is always removed.
"""

from __future__ import annotations

import os
import time

from nvmefuzz.errors import TargetCrashed, TargetError, TargetTimeout
from nvmefuzz.targets.base import COMPLETED, CRASHED, HUNG, REFUSED, MigrationOutcome
from nvmefuzz.targets.qemu_life import Workspace
from nvmefuzz.targets.qemu_process import Booting, QemuProcess
from nvmefuzz.targets.qemu_qmp import QmpCommandError


def qmp_error_text(exc: BaseException) -> str:
    if isinstance(exc, QmpCommandError):
        return exc.desc
    err = getattr(exc, "error", None)
    desc = getattr(getattr(err, "error", None), "desc", None)
    return desc or str(exc)


def _qmp(proc: QemuProcess, cmd: str, args: dict | None = None):
    return proc.fast.execute([(cmd, args)])[0]


class WarmPool:
    """Destinations started ahead of time with ``-incoming defer`` on one workspace's image.

    Starting a process and waiting for it to boot happen in a thread per destination, so
    neither is on the path of a migration unless the pool ran dry."""

    def __init__(self, ws: Workspace, size: int = 2, first: Booting | None = None,
                 **kw) -> None:
        """``first``: a destination already booting on ``ws``'s image (a recycled one)."""
        self.ws, self.size, self.kw = ws, size, kw
        self._slots: list[Booting] = [first] if first is not None else []
        self.fill()

    def fill(self) -> None:
        while len(self._slots) < self.size:
            self._slots.append(Booting(self.ws, incoming=True, **self.kw))

    @property
    def ready(self) -> list[QemuProcess]:
        """The pool's processes, once every one of them has been started."""
        for b in self._slots:
            b.thread.join()
        return [b.proc for b in self._slots if b.proc is not None]

    def take(self) -> QemuProcess:
        slot = self._slots.pop(0) if self._slots else Booting(self.ws, incoming=True, **self.kw)
        self.fill()                       # the replacement boots while we migrate
        try:
            return slot.result()
        except BaseException:
            slot.close()
            raise

    def give_up(self) -> Booting | None:
        """The next destination, out of the pool, unless it is known to be of no use."""
        while self._slots:
            slot = self._slots.pop(0)
            if not slot.failed:
                return slot
            slot.close()
        return None

    def close(self) -> None:
        for b in self._slots:
            b.close()
        self._slots.clear()


FINAL = ("completed", "failed", "cancelled")
NUDGE_S = 0.02


def _wait_migration(proc: QemuProcess, timeout: float) -> dict:
    """``query-migrate`` once it says the migration left the active states: asked after
    each ``MIGRATION`` event that says so, or ``NUDGE_S`` seconds without one.  The event
    only wakes the wait: one that came late for an earlier migration must not end it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            proc.fast.wait_event("MIGRATION", lambda d: d.get("status") in FINAL, NUDGE_S)
        except TargetTimeout:
            pass
        info = _qmp(proc, "query-migrate")
        if info.get("status") in FINAL:
            return info
        if time.monotonic() > deadline:
            raise TargetTimeout(f"migration still {info.get('status')} after {timeout}s")


def migrate(src: QemuProcess, pool: WarmPool, timeout: float = 30.0,
            timings: dict | None = None) -> tuple[MigrationOutcome, QemuProcess | None]:
    """Move ``src``'s device to a pool destination; the destination when it completed.

    ``timings`` (if given) receives seconds spent saving, taking a destination and loading.
    """
    timings = {} if timings is None else timings
    t0 = time.perf_counter()
    path = src.ws.path("migration") + ".bin"
    uri = "file:" + src.binary.guest_path(path)
    try:
        try:
            _qmp(src, "migrate", {"uri": uri})
            info = _wait_migration(src, timeout)
        except QmpCommandError as exc:
            return MigrationOutcome(REFUSED, qmp_error_text(exc)), None
        except TargetTimeout as exc:
            return MigrationOutcome(HUNG, f"save: {exc}"), None
        except TargetCrashed as exc:
            return MigrationOutcome(CRASHED, f"save: {exc}"), None
        if info["status"] != "completed":
            text = info.get("error-desc", info["status"])
            if _qmp(src, "query-status").get("status") != "running":
                _qmp(src, "cont")               # the source carries on after a refusal
            return MigrationOutcome(REFUSED, text), None
        size = os.path.getsize(path)
        t1 = time.perf_counter()
        timings["save"] = t1 - t0
        try:
            dst = pool.take()
        except TargetError as exc:
            return MigrationOutcome(CRASHED, f"destination did not start: {exc}", size), None
        t2 = time.perf_counter()
        timings["take"] = t2 - t1
        try:
            _qmp(dst, "migrate-incoming", {"uri": uri})
            info = _wait_migration(dst, timeout)
            if info["status"] != "completed":
                dst.close()
                return MigrationOutcome(CRASHED, "load failed: " +
                                        info.get("error-desc", info["status"]), size), None
            if _qmp(dst, "query-status").get("status") != "running":
                _qmp(dst, "cont")
        except QmpCommandError as exc:
            dst.close()
            return MigrationOutcome(CRASHED, "load failed: " + qmp_error_text(exc), size), None
        except TargetTimeout as exc:
            dst.close()
            return MigrationOutcome(HUNG, f"load: {exc}", size), None
        except TargetCrashed as exc:
            dst.close()
            return MigrationOutcome(CRASHED, f"load: {exc}", size), None
        timings["load"] = time.perf_counter() - t2
        return MigrationOutcome(COMPLETED, "", size), dst
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
