"""Source QEMUs started ahead of time, so a new qemu target need not wait for one to boot.

How it works
------------
A fuzz run opens two qemu targets for every example (the twin and the migrated copy), each a
fresh QEMU on a fresh, private workspace (disk image, sockets, logs).  Starting one costs some
35 ms, nearly all of it QEMU's own start-up on its own CPU; the fuzzer mostly keeps one core
busy at a time, so that start-up can run on the other one while the example before runs.

``take(binary, nbytes, kw, migrates)`` hands out a *spare*: a workspace with a zeroed image of
``nbytes`` and a source process on it, started and connected (qtest accepted, fast QMP
connected) in a background thread (``qemu_process.Booting``) and given nothing else.  Under
``-accel qtest`` nothing runs until the client steps the clock, so a spare that waited is the
same as a process started on demand.  Each take starts a replacement; ``DEPTH`` spares are
kept, for one configuration (binary, image size and the process options ``kw``) at a time:
asking for another closes the spares of the one before.  A spare that died while it waited
is closed and another is taken or started on the spot.

Recycling: a target that migrates keeps a destination booted ahead of its next migration
(``qemu_migration.WarmPool``), and the last one of an example is never used -- about one
start in six.  ``give_back`` takes such a target's workspace and idle destination when it
closes: its process is killed and, in the background, once it has exited, the image is made
blank again and a new source starts on it.  The spare then comes with that destination, and
``take`` gives it to the next target that migrates (the twin takes plain spares).  An
``-incoming`` process keeps its image inactive and reads nothing from it before a migration
loads, so blanking the image under it is safe.  At most ``RECYCLED`` such spares are kept.
Spares left at exit go with every other process and workspace (``qemu_life.cleanup``).
"""

from __future__ import annotations

import attrs

from nvmefuzz.targets.discovery import QemuBinary
from nvmefuzz.targets.qemu_life import Workspace
from nvmefuzz.targets.qemu_migration import WarmPool
from nvmefuzz.targets.qemu_process import Booting, QemuProcess

#: spares kept ready: a fuzz example takes two targets back to back
DEPTH = 2
#: spares with a recycled destination kept at most
RECYCLED = 2
#: seconds a recycled workspace's last process may take to exit before its image is blanked
EXIT_S = 10.0


@attrs.define
class Spare:
    """A workspace, its source booting, and (recycled) an idle destination on its image."""

    ws: Workspace
    source: Booting
    destination: Booting | None = None

    def drop_destination(self) -> None:
        if self.destination is not None:
            self.destination.close()
            self.destination = None

    def close(self) -> None:
        self.drop_destination()
        self.source.close()
        self.ws.remove()


def _key(binary: QemuBinary, nbytes: int, kw: dict) -> tuple:
    return binary, nbytes, tuple(sorted(kw.items()))


class Spares:
    """Booted spares for one configuration."""

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.slots: list[Spare] = []

    def take(self, binary: QemuBinary, nbytes: int, kw: dict, migrates: bool = True
             ) -> tuple[Workspace, QemuProcess, Booting | None]:
        """A workspace, a connected source process for ``binary``, an image of ``nbytes``
        and ``QemuProcess`` options ``kw``, and an idle destination on that image if a
        recycled one is ready and ``migrates``; the caller owns all three."""
        key = _key(binary, nbytes, kw)
        if key != self.key:
            self.close()
            self.key = key
        while True:
            if not self.slots:
                self._fill(binary, nbytes, kw, 1)
            spare = self._pick(migrates)
            self.slots.remove(spare)
            recycled = spare.destination is not None
            try:
                proc = spare.source.result()
            except BaseException:
                spare.close()
                if not recycled:
                    raise                         # a plain start failed: say why
                continue                          # a recycled workspace failed: start anew
            if spare.source.failed:               # died while it waited: not handed out
                spare.close()
                continue
            if not migrates or (spare.destination is not None and spare.destination.failed):
                spare.drop_destination()
            self._fill(binary, nbytes, kw, DEPTH)             # replacements boot meanwhile
            return spare.ws, proc, spare.destination

    def _pick(self, migrates: bool) -> Spare:
        """For a target that migrates, the oldest recycled spare already booted; otherwise
        (and failing that) the oldest plain one; failing that, the oldest."""
        if migrates:
            for s in self.slots:
                if s.destination is not None and not s.source.thread.is_alive():
                    return s
        return next((s for s in self.slots if s.destination is None), self.slots[0])

    def _fill(self, binary: QemuBinary, nbytes: int, kw: dict, depth: int) -> None:
        while len(self.slots) < depth:
            ws = Workspace(binary, nbytes)
            self.slots.append(Spare(ws, Booting(ws, **kw)))

    def give_back(self, binary: QemuBinary, nbytes: int, kw: dict, ws: Workspace,
                  proc: QemuProcess, pool: WarmPool | None) -> None:
        """End a target: its last process ``proc`` is killed; ``ws`` is removed, or kept as a
        spare with the next destination of ``pool`` if that is of use and the configuration
        is the current one, with fewer than ``RECYCLED`` such spares kept."""
        idle = pool.give_up() if pool is not None else None
        if pool is not None:
            pool.close()
        proc.close()                              # killed; its exit collected in the background
        if idle is None:
            ws.remove()
        elif (_key(binary, nbytes, kw) != self.key
              or sum(s.destination is not None for s in self.slots) >= RECYCLED):
            idle.close()
            ws.remove()
        else:
            def blank() -> None:
                proc.proc.wait(timeout=EXIT_S)    # nothing may write the image any more
                ws.blank()

            self.slots.append(Spare(ws, Booting(ws, before=blank, **kw), idle))

    def close(self) -> None:
        """Stop every spare and remove its workspace."""
        for spare in self.slots:
            spare.close()
        self.slots.clear()
        self.key = None


#: the spares of this process (the fuzzer drives its targets from one thread)
SPARES = Spares()
