"""The qtest wire protocol as a pure, sans-IO line codec.

How it works
------------
qtest (QEMU's ``-qtest`` test server, system/qtest.c) is line based: the client sends one
command per line (``readl 0x1000``, ``write 0x10000 16 0x00ff...``) and QEMU answers each with
one line, ``OK [VALUE]``, ``FAIL message`` or (for malformed ``write``/``b64write`` data)
``ERR message``.  Between replies, and before any of them, QEMU may send asynchronous
``IRQ raise N`` / ``IRQ lower N`` lines when an intercepted interrupt line changes level.

This module only turns values into request lines (``format_*``, ``request``, ``requests``)
and bytes into events (``ReplyParser``): ``feed(data)`` accepts bytes in arbitrary chunks
and returns the complete ``Reply`` and ``Irq`` events they finished, in wire order.  It
opens no socket and keeps no clock; ``qemu_process`` does the IO.  Numbers are formatted in
hex, which QEMU parses with strtoul base 0.

Errors: a reply the protocol does not allow (garbage, an over-long line, a bad IRQ line) raises
``QtestProtocolError`` (a ``DeviceProtocolError``); a well-formed ``FAIL``/``ERR`` reply is an
ordinary ``Reply`` with ``ok`` False, which ``Reply.value`` / ``Reply.data`` turn into
``QtestCommandFailed`` (a ``TargetError``): the harness asked for something QEMU refused.
"""

from __future__ import annotations

import base64
import binascii

import attrs

from nvmefuzz.errors import QtestCommandFailed, QtestProtocolError

#: longest reply line accepted: a ``read`` of 64 KiB is 2 * 65536 + 5 characters
MAX_LINE = 1 << 20
SIZES = {1: "b", 2: "w", 4: "l", 8: "q"}


def _num(value: int, what: str, bits: int = 64) -> str:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value >> bits:
        raise QtestProtocolError(f"{what} {value!r} is not an unsigned {bits}-bit number")
    return f"{value:#x}"


# ---------------------------------------------------------------------- requests
def format_read(size: int, addr: int) -> str:
    """``readb/readw/readl/readq ADDR``: a guest-physical load of ``size`` bytes."""
    if size not in SIZES:
        raise QtestProtocolError(f"qtest cannot read {size} bytes at once (1, 2, 4 or 8)")
    return f"read{SIZES[size]} {_num(addr, 'address')}"


def format_write(size: int, addr: int, value: int) -> str:
    if size not in SIZES:
        raise QtestProtocolError(f"qtest cannot write {size} bytes at once (1, 2, 4 or 8)")
    return f"write{SIZES[size]} {_num(addr, 'address')} {_num(value, 'value', 8 * size)}"


def format_mem_read(addr: int, length: int) -> str:
    """``read ADDR SIZE`` (hex reply).  QEMU asserts on a zero size, so it is refused here."""
    if length <= 0:
        raise QtestProtocolError(f"qtest read of {length} bytes (QEMU aborts on size 0)")
    return f"read {_num(addr, 'address')} {_num(length, 'size')}"


def format_mem_write(addr: int, data: bytes) -> str:
    if not data:
        raise QtestProtocolError("qtest write of 0 bytes (QEMU answers ERR)")
    return f"write {_num(addr, 'address')} {len(data):#x} 0x{data.hex()}"


def format_b64read(addr: int, length: int) -> str:
    if length <= 0:
        raise QtestProtocolError(f"qtest b64read of {length} bytes")
    return f"b64read {_num(addr, 'address')} {_num(length, 'size')}"


def format_b64write(addr: int, data: bytes) -> str:
    if not data:
        raise QtestProtocolError("qtest b64write of 0 bytes (QEMU answers ERR)")
    return f"b64write {_num(addr, 'address')} {len(data):#x} {base64.b64encode(data).decode()}"


def format_memset(addr: int, length: int, byte: int) -> str:
    return f"memset {_num(addr, 'address')} {_num(length, 'size')} {_num(byte, 'byte', 8)}"


def format_clock_step(ns: int | None = None) -> str:
    """``clock_step [NS]``; QEMU refuses to advance by 0, so NS must be positive."""
    if ns is None:
        return "clock_step"
    if ns <= 0:
        raise QtestProtocolError(f"clock_step {ns}: QEMU only advances by a positive amount")
    return f"clock_step {_num(ns, 'ns', 63)}"


def format_outl(port: int, value: int) -> str:
    return f"outl {_num(port, 'port', 16)} {_num(value, 'value', 32)}"


def format_inl(port: int) -> str:
    return f"inl {_num(port, 'port', 16)}"


def format_irq_intercept_in(qom_path: str) -> str:
    if not qom_path or any(c.isspace() for c in qom_path):
        raise QtestProtocolError(f"bad QOM path {qom_path!r}")
    return f"irq_intercept_in {qom_path}"


def request(line: str) -> bytes:
    """One request on the wire."""
    if "\n" in line or "\r" in line:
        raise QtestProtocolError("a qtest request is one line")
    return line.encode("ascii") + b"\n"


def requests(lines: list[str]) -> bytes:
    """Requests back to back on the wire (``request`` for each, in one pass)."""
    joined = "\n".join(lines)
    if joined.count("\n") != len(lines) - 1 or "\r" in joined:
        raise QtestProtocolError("a qtest request is one line")
    return (joined + "\n").encode("ascii")


# ---------------------------------------------------------------------- replies
@attrs.frozen
class Reply:
    ok: bool
    text: str = ""           # what followed OK/FAIL/ERR
    kind: str = "OK"         # OK | FAIL | ERR

    def check(self, what: str = "command") -> Reply:
        if not self.ok:
            raise QtestCommandFailed(f"qtest {what} answered {self.kind} {self.text}".strip())
        return self

    def value(self, what: str = "command") -> int:
        """The number after OK (``OK 0x00000001``, ``OK 1000``)."""
        self.check(what)
        try:
            return int(self.text.split()[0], 0)
        except (ValueError, IndexError):
            raise QtestProtocolError(
                f"qtest {what}: expected a number, got {self.text!r}") from None

    def data(self, length: int, what: str = "read") -> bytes:
        """The bytes of a ``read`` (``OK 0x<hex>``) reply."""
        self.check(what)
        text = self.text
        if not text.startswith("0x"):
            raise QtestProtocolError(f"qtest {what}: expected 0x<hex>, got {text[:40]!r}")
        try:
            raw = bytes.fromhex(text[2:])
        except ValueError:
            raise QtestProtocolError(f"qtest {what}: bad hex data {text[:40]!r}") from None
        if len(raw) != length:
            raise QtestProtocolError(f"qtest {what}: {len(raw)} bytes for a {length}-byte read")
        return raw

    def b64(self, length: int, what: str = "b64read") -> bytes:
        self.check(what)
        try:
            raw = base64.b64decode(self.text, validate=True)
        except (binascii.Error, ValueError):
            raise QtestProtocolError(f"qtest {what}: bad base64 {self.text[:40]!r}") from None
        if len(raw) != length:
            raise QtestProtocolError(f"qtest {what}: {len(raw)} bytes for a {length}-byte read")
        return raw


@attrs.frozen
class Irq:
    """An asynchronous ``IRQ raise N`` / ``IRQ lower N`` line."""

    line: int
    level: int


class ReplyParser:
    """Incremental: ``feed`` bytes in any chunks, get complete events back in wire order.

    Short lines that repeat (``OK``, the value of a register read) are parsed once and the
    (frozen) event is shared."""

    def __init__(self) -> None:
        self._rest = b""
        self._known: dict[bytes, Reply | Irq] = {}

    @property
    def pending(self) -> int:
        """Bytes received that do not yet make a complete line."""
        return len(self._rest)

    def feed(self, data: bytes) -> list[Reply | Irq]:
        if self._rest:
            data = self._rest + data
        *lines, rest = data.split(b"\n")
        if len(rest) > MAX_LINE:
            self._rest = b""
            raise QtestProtocolError(f"qtest reply line longer than {MAX_LINE} bytes")
        self._rest = rest
        known = self._known
        out: list[Reply | Irq] = []
        for raw in lines:
            event = known.get(raw)
            if event is None:
                event = parse_line(raw)
                if len(raw) <= SHARED_LINE:
                    if len(known) >= SHARED_LINES:
                        known.clear()
                    known[raw] = event
            out.append(event)
        return out


#: replies up to this long are kept for reuse, up to this many of them
SHARED_LINE, SHARED_LINES = 40, 256


def parse_line(raw: bytes) -> Reply | Irq:
    try:
        line = raw.decode("ascii").rstrip("\r")
    except UnicodeDecodeError:
        raise QtestProtocolError(f"non-ASCII qtest line {raw[:40]!r}") from None
    word, _, rest = line.partition(" ")
    if word == "OK":
        return Reply(True, rest, "OK")
    if word in ("FAIL", "ERR"):
        return Reply(False, rest, word)
    if word == "IRQ":
        parts = rest.split()
        if len(parts) == 2 and parts[0] in ("raise", "lower") and parts[1].isdigit():
            return Irq(int(parts[1]), 1 if parts[0] == "raise" else 0)
        raise QtestProtocolError(f"malformed qtest IRQ line {line[:80]!r}")
    raise QtestProtocolError(f"unexpected qtest line {line[:80]!r}")
