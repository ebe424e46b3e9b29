"""A second, minimal QMP connection to a QEMU process, for the hot paths.

How it works
------------
``RawQmp`` connects to the extra QMP socket ``qemu_argv`` gives every process and speaks QMP
as JSON lines on a blocking socket: ``execute`` sends several commands at once and reads
their answers in order, keeping the events that arrive among them; ``wait_event`` returns
the first kept or arriving event of a name that satisfies a predicate, within a timeout.
A QMP error is ``QmpCommandError``; a closed socket is ``TargetCrashed`` (after ``alive``,
the process's own check, had its chance to say why), no answer in time ``TargetTimeout``.
Everything else about QMP goes through ``qemu.qmp`` (``QemuProcess.qmp``).
"""

from __future__ import annotations

import json
import socket
import time

from nvmefuzz.errors import TargetCrashed, TargetError, TargetTimeout


class QmpCommandError(TargetError):
    """QEMU answered a QMP command with an error; ``desc`` is QEMU's text."""

    def __init__(self, command: str, desc: str) -> None:
        super().__init__(f"QMP {command}: {desc}")
        self.command, self.desc = command, desc


class RawQmp:
    """A second, minimal QMP connection for the hot paths: the drain barrier and migration.

    Measured here: a QMP command takes about 2 ms through ``qemu.qmp`` (asyncio scheduling
    per message, plus a connection handshake per process) and about 0.2 ms as a JSON line on
    a blocking socket.  A migration is a dozen commands on two fresh processes, so it uses
    this path; ``qemu.qmp`` remains for everything else and connects on first use.
    """

    def __init__(self, path: str, timeout: float, alive) -> None:
        self.timeout, self.alive = timeout, alive
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock.connect(path)
                break
            except OSError:
                alive("connecting the fast QMP socket")
                if time.monotonic() > deadline:
                    raise TargetTimeout(f"fast QMP socket {path} did not appear") from None
                time.sleep(0.002)
        self._buf = b""
        self.events: list[dict] = []                          # events not yet waited for
        self._line()                                         # the greeting
        # MIGRATION events (capability "events") let a migration be waited for, not polled
        self.execute([("qmp_capabilities", None), ("migrate-set-capabilities", {
            "capabilities": [{"capability": "events", "state": True}]})])

    def _line(self) -> dict:
        while b"\n" not in self._buf:
            try:
                data = self.sock.recv(1 << 16)
            except socket.timeout:
                raise TargetTimeout(f"QMP did not answer within {self.timeout}s") from None
            except OSError as exc:
                self.alive("reading QMP")
                raise TargetError(f"QMP socket failed: {exc}", exc) from exc
            if not data:
                self.alive("reading QMP")
                raise TargetCrashed("QEMU closed its QMP socket")
            self._buf += data
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def execute(self, cmds: list[tuple[str, dict | None]]) -> list:
        msgs = [{"execute": c, **({"arguments": a} if a else {})} for c, a in cmds]
        try:
            self.sock.sendall(b"".join(json.dumps(m).encode() + b"\n" for m in msgs))
        except OSError as exc:
            time.sleep(0.05)                     # let the exit status arrive
            self.alive(f"sending QMP {cmds[0][0]}")
            raise TargetCrashed(f"QMP socket failed sending {cmds[0][0]}: {exc}") from None
        out = []
        while len(out) < len(cmds):
            msg = self._line()
            if "event" in msg:
                self._keep(msg)
                continue
            if "error" in msg:
                raise QmpCommandError(cmds[len(out)][0], str(msg["error"].get("desc")))
            out.append(msg.get("return"))
        return out

    def _keep(self, event: dict) -> None:
        self.events.append(event)
        del self.events[:-64]

    def wait_event(self, name: str, done, timeout: float) -> dict:
        """The first event ``name`` for which ``done(data)`` holds (already received ones
        first); ``TargetTimeout`` when none comes within ``timeout`` seconds."""
        for i, ev in enumerate(self.events):
            if ev.get("event") == name and done(ev.get("data", {})):
                del self.events[:i + 1]
                return ev
        self.events.clear()
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TargetTimeout(f"no QMP {name} event within {timeout}s")
                self.sock.settimeout(left)
                msg = self._line()
                if msg.get("event") == name and done(msg.get("data", {})):
                    return msg
                if "event" not in msg:
                    raise TargetError(f"unexpected QMP message while waiting: {msg!r}"[:200])
        finally:
            self.sock.settimeout(self.timeout)
