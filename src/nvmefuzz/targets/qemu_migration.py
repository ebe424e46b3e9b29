"""Migrating a QEMU process: the warm pool of destinations and QMP file migration.

How it works
------------
QEMU's file URI needs no second live peer: the source runs QMP ``migrate`` with
``file:PATH`` and we poll ``query-migrate`` (bounded, backing off from 0.5 ms to 10 ms) until
it leaves the active states.  A destination is a ``QemuProcess`` started ahead of time with
``-incoming defer`` on the same disk image (as shared storage would be: the destination keeps
the image inactive until the load completes); ``WarmPool`` keeps ``size`` of them booting in
the background and starts a replacement whenever one is taken.  The destination runs
``migrate-incoming file:PATH`` and is polled the same way.

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
from nvmefuzz.targets.qemu_process import QemuProcess, Workspace


def qmp_error_text(exc: BaseException) -> str:
    err = getattr(exc, "error", None)
    desc = getattr(getattr(err, "error", None), "desc", None)
    return desc or str(exc)


class WarmPool:
    """Destinations started ahead of time with ``-incoming defer`` on one workspace's image."""

    def __init__(self, ws: Workspace, size: int = 2, **kw) -> None:
        self.ws, self.size, self.kw = ws, size, kw
        self.ready: list[QemuProcess] = []
        self.fill()

    def fill(self) -> None:
        while len(self.ready) < self.size:
            self.ready.append(QemuProcess(self.ws, incoming=True, **self.kw))

    def take(self) -> QemuProcess:
        proc = self.ready.pop(0) if self.ready else QemuProcess(self.ws, incoming=True, **self.kw)
        self.fill()                       # the replacement boots while we migrate
        return proc.connect()

    def close(self) -> None:
        for p in self.ready:
            p.close()
        self.ready.clear()


def _wait_migration(proc: QemuProcess, timeout: float) -> dict:
    """Poll ``query-migrate`` until it leaves the active states (bounded)."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        info = proc.qmp("query-migrate")
        status = info.get("status", "none")
        if status in ("completed", "failed", "cancelled"):
            return info
        if time.monotonic() > deadline:
            raise TargetTimeout(f"migration still {status} after {timeout}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.01)


def migrate(src: QemuProcess, pool: WarmPool, timeout: float = 30.0,
            timings: dict | None = None) -> tuple[MigrationOutcome, QemuProcess | None]:
    """Move ``src``'s device to a pool destination; the destination when it completed.

    ``timings`` (if given) receives seconds spent saving, taking a destination and loading.
    """
    from qemu.qmp import ExecuteError

    timings = {} if timings is None else timings
    t0 = time.perf_counter()
    path = src.ws.path("migration") + ".bin"
    uri = "file:" + src.binary.guest_path(path)
    try:
        try:
            src.qmp("migrate", {"uri": uri})
            info = _wait_migration(src, timeout)
        except ExecuteError as exc:
            return MigrationOutcome(REFUSED, qmp_error_text(exc)), None
        except TargetTimeout as exc:
            return MigrationOutcome(HUNG, f"save: {exc}"), None
        except TargetCrashed as exc:
            return MigrationOutcome(CRASHED, f"save: {exc}"), None
        if info["status"] != "completed":
            text = info.get("error-desc", info["status"])
            if src.qmp("query-status").get("status") != "running":
                src.qmp("cont")                 # the source carries on after a refusal
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
            dst.qmp("migrate-incoming", {"uri": uri})
            info = _wait_migration(dst, timeout)
            if info["status"] != "completed":
                dst.close()
                return MigrationOutcome(CRASHED, "load failed: " +
                                        info.get("error-desc", info["status"]), size), None
            if dst.qmp("query-status").get("status") != "running":
                dst.qmp("cont")
        except ExecuteError as exc:
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
