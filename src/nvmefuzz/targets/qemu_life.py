"""Where QEMU processes and their folders begin and end, whatever becomes of nvmefuzz.

How it works
------------
``Workspace`` is a private folder for one target's files (disk image, sockets, logs,
migration files), inside the chroot when QEMU runs chrooted, named after the creating
process: ``nvmefuzz-<pid>-<random>``.

Every QEMU is started by ``spawn`` from one long-lived thread, and its command line asks
QEMU to exit with its parent (``-run-with exit-with-parent=on``, ``qemu_argv``).  That
option is Linux's parent-death signal, which fires when the *thread* that started the
process ends; processes are started ahead of time from short-lived threads
(``qemu_process.Booting``), so those threads hand the start to the spawner, which lives as
long as nvmefuzz does.  So even a SIGKILLed nvmefuzz leaves no QEMU running.

Ending: ``reap`` collects a killed process's exit on a background thread (``Popen.wait``
polls with sleeps, about 3 ms a process, several processes an example).  At a normal exit,
``cleanup`` kills every process still registered (``register``) and removes every
workspace.  Folders a killed nvmefuzz left behind are removed by the next run that creates a
workspace in the same place (``sweep``): those whose creator is gone, untouched for
``STALE_S`` seconds.
"""

from __future__ import annotations

import atexit
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
import weakref
from concurrent.futures import Future

from nvmefuzz.targets.discovery import QemuBinary

PREFIX = "nvmefuzz-"
STALE_S = 600                    # a dead creator's folder untouched this long is removed
_OWNED = re.compile(rf"{PREFIX}(\d+)-")

_LIVE: weakref.WeakSet = weakref.WeakSet()      # objects with kill(): running processes
_DIRS: set[str] = set()
_SWEPT: set[str] = set()


def register(proc) -> None:
    """Kill ``proc`` (anything with ``kill()``) at exit if it is still registered then."""
    _LIVE.add(proc)


def unregister(proc) -> None:
    _LIVE.discard(proc)


@atexit.register
def cleanup() -> None:
    for proc in list(_LIVE):
        proc.kill()
    for d in list(_DIRS):
        shutil.rmtree(d, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)                  # PermissionError: alive, someone else's
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def sweep(base: str | None) -> list[str]:
    """Remove the workspaces in ``base`` (the system's temporary folder if None) whose
    creator has exited and which nobody touched for ``STALE_S`` seconds; the removed."""
    base = base or tempfile.gettempdir()
    gone = []
    try:
        names = os.listdir(base)
    except OSError:
        return gone
    now = time.time()
    for name in names:
        m = _OWNED.match(name)
        path = os.path.join(base, name)
        if m is None or int(m.group(1)) == os.getpid() or _alive(int(m.group(1))):
            continue
        try:
            if now - os.stat(path).st_mtime < STALE_S:
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)
        gone.append(path)
    return gone


class Workspace:
    """A private folder (inside the chroot if any) for one target's files."""

    def __init__(self, binary: QemuBinary, nbytes: int) -> None:
        self.binary = binary
        base = binary.tmp_dir()
        if base is not None:
            os.makedirs(base, exist_ok=True)
        if base not in _SWEPT:
            _SWEPT.add(base)
            sweep(base)
        self.dir = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=base)
        _DIRS.add(self.dir)
        self.image = os.path.join(self.dir, "disk.img")
        self.nbytes = nbytes
        self.blank()
        self._n = 0

    def blank(self) -> None:
        """Make the image all zeroes and unallocated, as a new workspace's is (QEMU's
        answers can depend on what the host filesystem allocated)."""
        with open(self.image, "wb") as fh:
            fh.truncate(self.nbytes)

    def path(self, stem: str) -> str:
        self._n += 1
        return os.path.join(self.dir, f"{stem}-{self._n}")

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        _DIRS.discard(self.dir)


# ---------------------------------------------------------------------- starting
_STARTS: queue.SimpleQueue = queue.SimpleQueue()
_THREADS: dict[str, threading.Thread] = {}
_LOCK = threading.Lock()


def _thread(name: str, run) -> None:
    with _LOCK:
        t = _THREADS.get(name)
        if t is None or not t.is_alive():
            t = _THREADS[name] = threading.Thread(target=run, name=f"nvmefuzz-{name}",
                                                  daemon=True)
            t.start()


def spawn(argv: list[str], stderr_path: str) -> subprocess.Popen:
    """Start ``argv`` (stdin and stdout closed, stderr to ``stderr_path``, a session of its
    own) from the spawner thread."""
    box: Future = Future()
    _thread("spawner", _spawner)
    _STARTS.put((argv, stderr_path, box))
    return box.result()


def _spawner() -> None:
    while True:
        argv, stderr_path, box = _STARTS.get()
        try:
            with open(stderr_path, "wb") as err:
                box.set_result(subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                                stdout=subprocess.DEVNULL, stderr=err,
                                                start_new_session=True))
        except BaseException as exc:
            box.set_exception(exc)


# ---------------------------------------------------------------------- ending
_DEAD: queue.SimpleQueue = queue.SimpleQueue()


def reap(proc: subprocess.Popen) -> None:
    """Collect the exit of ``proc`` (already killed) on the reaper thread."""
    _thread("reaper", _reaper)
    _DEAD.put(proc)


def _reaper() -> None:
    while True:
        _DEAD.get().wait()
