"""The edge to a real QEMU: one process, its qtest and QMP sockets, and file migration.

How it works
------------
``qemu_argv.build_argv`` (pure) gives the command line: a qtest socket QEMU connects to, a QMP
socket it listens on, one ``nvme`` device on a raw image (``Drive`` options and injected
faults on request). Every path on it is a path inside the chroot when QEMU runs chrooted
(``QemuBinary.guest_path``).

``QemuProcess`` starts one such process inside a private folder (``qemu_life.Workspace``: one
per target, holding the disk image, sockets, stderr logs, trace logs and migration files;
removed on close and at exit; how processes start and end is ``qemu_life``'s). Each process
writes four of QEMU's own trace events to a private log (``-trace ...,file=``): every command
the controller fetches (``pci_nvme_io_cmd``, ``pci_nvme_admin_cmd``), every completion it
queues (``pci_nvme_enqueue_req_completion``) and every register read (``pci_nvme_mmio_read``,
which ``targets.qemu_log`` uses to mark where the target's own requests ran); ``trace_lines``
returns the lines written since the last call, which is how ``targets.qemu_log`` knows what is
in flight without stopping the VM. qtest's own log of every request and reply is off
(``-qtest-log none``). ``qtest(line)`` sends one request and waits, within ``reply_timeout``,
for its reply; ``IRQ raise/lower`` lines that arrive first are kept in ``irqs``. A closed
socket means the process died: ``TargetCrashed`` carries the exit status or signal and the tail
of stderr; no reply in time is ``TargetTimeout`` (a hang). ``qmp`` goes through the
``qemu.qmp`` library on a private asyncio loop, also bounded; the drain barrier and
migration use a faster second connection (``qemu_qmp.RawQmp``, as ``fast``).

Migration over these processes lives in ``qemu_migration``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from typing import Callable

from nvmefuzz.errors import TargetCrashed, TargetError, TargetTimeout
from nvmefuzz.targets.qemu_argv import PLAIN, Drive, build_argv
from nvmefuzz.targets.qemu_life import Workspace, reap, register, spawn, unregister
from nvmefuzz.targets.qemu_qmp import RawQmp
from nvmefuzz.targets.qtest_codec import Irq, Reply, ReplyParser, requests

logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)

#: bytes asked of the qtest socket per recv (a larger buffer costs an allocation each time)
RECV_SIZE = 1 << 16


_LOOP: asyncio.AbstractEventLoop | None = None


def _run(coro, timeout: float):
    global _LOOP
    if _LOOP is None or _LOOP.is_closed():
        _LOOP = asyncio.new_event_loop()
    return _LOOP.run_until_complete(asyncio.wait_for(coro, timeout))


class QemuProcess:
    def __init__(self, ws: Workspace, *, incoming: bool = False, reply_timeout: float = 10.0,
                 serial: str = "nvmefuzz", device_props: str = "",
                 drive: Drive = PLAIN) -> None:
        self.ws, self.binary, self.incoming = ws, ws.binary, incoming
        self.reply_timeout = reply_timeout
        base = ws.path("qemu")
        self.qtest_path, self.qmp_path = base + ".qtest", base + ".qmp"
        self.fast_path, self.stderr_path = base + ".fastqmp", base + ".stderr"
        self.trace_path = base + ".trace"
        g = self.binary.guest_path
        self.argv = build_argv(self.binary, g(self.qtest_path), g(self.qmp_path),
                               g(ws.image), serial=serial, incoming=incoming,
                               fast_qmp_sock=g(self.fast_path), device_props=device_props,
                               drive=drive, trace_file=g(self.trace_path))
        self._trace_fh = None
        self._trace_rest = b""
        self._listen = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listen.bind(self.qtest_path)
        self._listen.listen(1)
        self.started = time.monotonic()
        self.proc = spawn(self.argv, self.stderr_path)
        register(self)
        self.sock: socket.socket | None = None
        self.qmpc = None
        self.fast: RawQmp | None = None
        self.parser = ReplyParser()
        self.irqs: list[Irq] = []
        self.closed = False

    # ------------------------------------------------------------------ life cycle
    def connect(self, timeout: float = 20.0) -> QemuProcess:
        """Accept QEMU's qtest connection and connect the fast QMP socket (bounded); the
        ``qemu.qmp`` connection is made on first use of ``qmp``."""
        if self.fast is not None:
            return self
        deadline = time.monotonic() + timeout
        if self.sock is None:
            self._listen.settimeout(0.05)
            while True:
                try:
                    sock, _ = self._listen.accept()
                    break
                except socket.timeout:
                    self._check_alive("starting")
                    if time.monotonic() > deadline:
                        self.kill()
                        raise TargetTimeout(f"QEMU did not connect to qtest within {timeout}s")
            self._listen.close()
            sock.settimeout(self.reply_timeout)
            self.sock = sock
        self.fast = RawQmp(self.fast_path, self.reply_timeout, self._check_alive)
        return self

    def _connect_qmp(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        from qemu.qmp import QMPClient

        self.qmpc = QMPClient(f"nvmefuzz-{self.proc.pid}")
        while True:
            try:
                _run(self.qmpc.connect(self.qmp_path), max(0.1, deadline - time.monotonic()))
                break
            except Exception as exc:             # the socket appears shortly after start
                self._check_alive("connecting QMP")
                if time.monotonic() > deadline:
                    self.kill()
                    raise TargetTimeout(f"QMP did not answer within {timeout}s: {exc}") from exc
                time.sleep(0.002)

    def _check_alive(self, doing: str) -> None:
        if self.proc.poll() is not None:
            raise TargetCrashed(f"QEMU died while {doing}: {self.status()}")

    def status(self) -> str:
        """Exit status or signal, and the tail of stderr."""
        rc = self.proc.poll()
        if rc is None:
            what = "still running"
        elif rc < 0:
            what = f"killed by {signal.Signals(-rc).name}"
        else:
            what = f"exit status {rc}"
        try:
            with open(self.stderr_path, "rb") as fh:
                fh.seek(max(0, os.path.getsize(self.stderr_path) - 2000))
                tail = fh.read().decode(errors="replace").strip()
        except OSError:
            tail = ""
        return f"{what}; stderr: {tail}" if tail else what

    def kill(self, wait: bool = True) -> None:
        """SIGKILL; then wait (bounded) for the exit, or leave that to the reaper thread."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
        if not wait:
            reap(self.proc)
            return
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def close(self) -> None:
        """Kill the process (its exit is collected in the background) and remove its files."""
        if self.closed:
            return
        self.closed = True
        self.kill(wait=False)
        if self.qmpc is not None:
            try:
                _run(self.qmpc.disconnect(), 2)
            except Exception:
                pass
        for s in (self.sock, self._listen, self.fast and self.fast.sock, self._trace_fh):
            if s is not None:
                s.close()
        for p in (self.qtest_path, self.qmp_path, self.fast_path, self.stderr_path,
                  self.trace_path):
            try:
                os.unlink(p)
            except OSError:
                pass
        unregister(self)

    def __enter__(self) -> QemuProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ trace log
    def trace_lines(self) -> list[str]:
        """Complete trace-log lines QEMU wrote since the last call (QEMU flushes each line as
        it logs it, so a line logged before a qtest reply was sent is readable now)."""
        if self._trace_fh is None:
            try:
                self._trace_fh = open(self.trace_path, "rb", buffering=0)
            except FileNotFoundError:
                return []
        data = self._trace_rest + (self._trace_fh.read() or b"")
        *lines, self._trace_rest = data.split(b"\n")
        return [ln.decode("ascii", "replace") for ln in lines]

    # ------------------------------------------------------------------ qtest
    def qtest(self, line: str) -> Reply:
        return self.qtest_many([line])[0]

    def qtest_many(self, lines: list[str]) -> list[Reply]:
        """Send requests back to back (QEMU runs them in order) and return their replies."""
        if self.sock is None:
            self.connect()
        try:
            self.sock.sendall(requests(lines))
        except OSError as exc:
            raise self._dead(f"sending {lines[0]!r}") from exc
        replies: list[Reply] = []
        while len(replies) < len(lines):
            try:
                data = self.sock.recv(RECV_SIZE)
            except socket.timeout:
                raise TargetTimeout(f"QEMU did not answer {lines[len(replies)][:60]!r} within "
                                    f"{self.reply_timeout}s (pid {self.proc.pid})") from None
            except OSError as exc:
                raise self._dead(f"reading the reply to {lines[0][:60]!r}") from exc
            if not data:
                raise self._dead(f"waiting for the reply to {lines[len(replies)][:60]!r}")
            for ev in self.parser.feed(data):
                if isinstance(ev, Irq):
                    self.irqs.append(ev)
                else:
                    replies.append(ev)
        return replies

    def _dead(self, doing: str) -> TargetError:
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        return TargetCrashed(f"QEMU closed the qtest socket while {doing}: {self.status()}")

    # ------------------------------------------------------------------ QMP
    def qmp(self, cmd: str, args: dict | None = None, timeout: float | None = None):
        """Run one QMP command; ``qemu.qmp.ExecuteError`` carries QEMU's error text."""
        return self.qmp_many([(cmd, args)], timeout)[0]

    def qmp_many(self, cmds: list[tuple[str, dict | None]], timeout: float | None = None):
        """Several QMP commands in flight together (QEMU answers them in order)."""
        if self.sock is None:
            self.connect()
        if self.qmpc is None:
            self._connect_qmp()
        client = self.qmpc

        async def go():
            return await asyncio.gather(*(client.execute(c, a) for c, a in cmds))
        try:
            out = _run(go(), timeout or self.reply_timeout)
        except (asyncio.TimeoutError, TimeoutError):
            self._check_alive(f"running QMP {cmds[0][0]}")
            raise TargetTimeout(f"QMP {cmds[0][0]} did not answer within "
                                f"{timeout or self.reply_timeout}s") from None
        except Exception as exc:
            if type(exc).__name__ == "ExecuteError":
                raise
            self._check_alive(f"running QMP {cmds[0][0]}")
            raise TargetError(f"QMP {cmds[0][0]} failed: {exc}", exc) from exc
        if not client.events.empty():               # nobody reads events: drop them
            client.events.clear()
        return out


class Booting:
    """A process started and connected in a background thread (QEMU's start-up is some 35 ms
    of its own CPU, which the caller need not wait for); ``result`` waits for it."""

    def __init__(self, ws: Workspace, before: Callable[[], None] | None = None, **kw) -> None:
        """``before`` runs first, in the same thread (readying the workspace)."""
        self.proc: QemuProcess | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(ws, before, kw), daemon=True)
        self.thread.start()

    def _run(self, ws: Workspace, before: Callable[[], None] | None, kw: dict) -> None:
        try:
            if before is not None:
                before()
            self.proc = QemuProcess(ws, **kw)
            self.proc.connect()
        except BaseException as exc:     # result() raises it, with the process's status
            self.error = exc

    @property
    def failed(self) -> bool:
        """Known to be of no use: its start failed, or the process died since."""
        if self.thread.is_alive():
            return False
        return self.proc is None or self.proc.proc.poll() is not None

    def result(self) -> QemuProcess:
        self.thread.join()
        if self.proc is None:
            raise self.error
        return self.proc.connect()        # raises again (with the reason) if it failed

    def close(self, timeout: float = 30) -> None:
        self.thread.join(timeout=timeout)
        if self.proc is not None:
            self.proc.close()
