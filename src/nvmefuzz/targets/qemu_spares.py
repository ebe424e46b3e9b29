"""Source QEMUs started ahead of time, so a new qemu target need not wait for one to boot.

How it works
------------
A fuzz run opens two qemu targets for every example (the twin and the migrated copy), each a
fresh QEMU on a fresh, private workspace (disk image, sockets, logs).  Starting one costs some
35 ms, nearly all of it QEMU's own start-up on its own CPU; the fuzzer mostly keeps one core
busy at a time, so that start-up can run on the other one while the example before runs.

``take(binary, nbytes, kw)`` hands out a *spare*: a workspace with a zeroed image of
``nbytes`` and a source process on it, started and connected (qtest accepted, fast QMP
connected) in a background thread (``qemu_process.Booting``) and given nothing else.  Under
``-accel qtest`` nothing runs until the client steps the clock, so a spare that waited is the
same as a process started on demand.  Each take starts a replacement; ``DEPTH`` spares are
kept, for one configuration (binary, image size and the process options ``kw``) at a time:
asking for another closes the spares of the one before.  A spare that died while it waited
is closed and another is started on the spot.  Spares left at exit go with every other
process and workspace (``qemu_life.cleanup``).
"""

from __future__ import annotations

from nvmefuzz.targets.discovery import QemuBinary
from nvmefuzz.targets.qemu_life import Workspace
from nvmefuzz.targets.qemu_process import Booting, QemuProcess

#: spares kept ready: a fuzz example takes two targets back to back
DEPTH = 2


class Spares:
    """Booted (workspace, source process) pairs for one configuration."""

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.slots: list[tuple[Workspace, Booting]] = []

    def take(self, binary: QemuBinary, nbytes: int, kw: dict) -> tuple[Workspace, QemuProcess]:
        """A workspace and a connected source process for ``binary``, an image of ``nbytes``
        and ``QemuProcess`` options ``kw``; the caller owns both."""
        key = (binary, nbytes, tuple(sorted(kw.items())))
        if key != self.key:
            self.close()
            self.key = key
        while True:
            if not self.slots:
                self._fill(binary, nbytes, kw, 1)
            ws, booting = self.slots.pop(0)
            try:
                proc = booting.result()
            except BaseException:
                booting.close()
                ws.remove()
                raise
            if proc.proc.poll() is None:
                self._fill(binary, nbytes, kw, DEPTH)      # replacements boot meanwhile
                return ws, proc
            proc.close()                         # died while it waited: not handed out
            ws.remove()

    def _fill(self, binary: QemuBinary, nbytes: int, kw: dict, depth: int) -> None:
        while len(self.slots) < depth:
            ws = Workspace(binary, nbytes)
            self.slots.append((ws, Booting(ws, **kw)))

    def close(self) -> None:
        """Stop every spare and remove its workspace."""
        for ws, booting in self.slots:
            booting.close()
            ws.remove()
        self.slots.clear()
        self.key = None


#: the spares of this process (the fuzzer drives its targets from one thread)
SPARES = Spares()
