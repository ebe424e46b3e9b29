"""The host driver: builds commands, places them in guest memory, rings doorbells, harvests.

How it works
------------
``Host`` talks to a target only through five calls (``mmio_read``, ``mmio_write``,
``mem_read``, ``mem_write``, ``advance``), so the same driver runs the model in-process and a
real QEMU over qtest.  It keeps the host's half of the queue protocol: SQ tails it wrote, SQ
heads learned from CQE.SQHD, CQ heads and expected phase tags, and the commands it has
outstanding per SQ (keyed by CID).  It never waits: ``submit`` only writes an SQE, ``ring_sq``
only writes a doorbell, and ``harvest`` returns what the CQ holds now.  Completions may arrive
in any order; the driver pairs them by (SQID, CID), never by position.

Everything the driver does is decided by its arguments and its own state (CIDs count up per
SQ, a command's buffer is its SQ entry's data window, write data is a function of a
``pattern`` number), so two hosts given the same calls against equivalent controllers stay
identical.  Like a real driver it never hands out a buffer a command still holds: an SQ
entry is free again once the controller has fetched it, while its command may be in flight
or its completion waiting on a full CQ for long after; a command then takes the next data
window no outstanding command holds (``_window``).  Reusing the buffer would let a later
Write's data land in an earlier Read's buffer (hiding what the Read returned) or be written
to the disk by an earlier Write whose data moves only when it finishes.  Nor does it take a
window the SQE left in another SQ entry points to: a doorbell rung past the host's tail makes
the controller run such a stale entry again, and its transfer must land in its own buffer,
not in a command's the host is waiting for.  Which window each entry's SQE points to is kept
across resets, as the SQ's memory keeps the entries.
"""

from __future__ import annotations

import copy
import functools
import struct
from typing import Protocol

import attrs

from nvmefuzz.errors import IllegalCommand
from nvmefuzz.host import layout as L
from nvmefuzz.protocol import regs
from nvmefuzz.protocol.queues import CQE, CQE_SIZE, SQE, SQE_SIZE
from nvmefuzz.protocol.spec import AdminOpcode

GET_LOG_PAGE = int(AdminOpcode.GET_LOG_PAGE)


class Bus(Protocol):
    """The five calls a host needs from a target."""

    def mmio_read(self, offset: int, size: int) -> int: ...
    def mmio_write(self, offset: int, size: int, value: int) -> None: ...
    def mem_read(self, addr: int, length: int) -> bytes: ...
    def mem_write(self, addr: int, data: bytes) -> None: ...
    def advance(self, ns: int) -> None: ...


@attrs.define(slots=True)
class Outstanding:
    opc: int
    buffer: int
    length: int
    returns_data: bool
    #: host bookkeeping to apply if the command succeeds, e.g. ("create_cq", qid, size)
    effect: tuple = ()
    cdw10: int = 0
    #: an I/O command's (NSID, SLBA, blocks); None on the admin queue
    span: tuple[int, int, int] | None = None
    #: where the data returned starts in the structure it is part of (a Get Log Page's LPO)
    at: int = 0
    #: the data window its buffer (and PRP list) is in, held until its completion is consumed
    window: int = 0


@attrs.define(slots=True)
class HostSQ:
    qid: int
    cqid: int
    size: int
    tail: int = 0
    head: int = 0
    rung: int = 0               # the tail the controller was last told (MMIO or shadow)
    next_cid: int = 0
    outstanding: dict[int, Outstanding] = attrs.Factory(dict)
    overrun: bool = False       # a tail past the host's was rung: stale entries may run again

    def free(self) -> int:
        return self.size - 1 - (self.tail - self.head) % self.size


@attrs.define(slots=True)
class HostCQ:
    qid: int
    size: int
    head: int = 0
    phase: int = 1
    rung: int = 0               # the head the controller was last told (MMIO or shadow)


@attrs.frozen
class Completion:
    """A harvested CQE and, for commands that return data and succeeded, the bytes they
    returned."""

    cqid: int
    cqe: CQE
    data: bytes | None = None
    known: bool = True


@functools.lru_cache(maxsize=1024)
def pattern_bytes(pattern: int, length: int) -> bytes:
    """Deterministic, non-repeating-looking write data for ``pattern`` (memoised: a step
    writes the same few patterns over and over)."""
    word = (pattern * 0x9E3779B97F4A7C15) & (1 << 64) - 1
    n = -(-length // 8)
    mask = (1 << 64) - 1
    return struct.pack(f"<{n}Q", *[(word + i * 0x100000001B3) & mask
                                   for i in range(n)])[:length]


class Host:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.sqs: dict[int, HostSQ] = {}
        self.cqs: dict[int, HostCQ] = {}
        self.shadow = False
        #: the data window the SQE in each SQ entry (qid, index) points to, and back
        self._points: dict[tuple[int, int], int] = {}
        self._pointed: dict[int, tuple[int, int]] = {}

    def clone(self, bus: Bus) -> Host:
        """A host in this one's state (queues, outstanding commands, what each SQ entry
        points to) that talks to ``bus``."""
        other = Host(bus)
        other.sqs, other.cqs = copy.deepcopy(self.sqs), copy.deepcopy(self.cqs)
        other.shadow = self.shadow
        other._points, other._pointed = dict(self._points), dict(self._pointed)
        return other

    # ------------------------------------------------------------------ registers
    def read_reg(self, name: str) -> int:
        r = regs.BY_NAME[name]
        return self.bus.mmio_read(r.offset, r.size)

    def write_reg(self, name: str, value: int) -> None:
        r = regs.BY_NAME[name]
        self.bus.mmio_write(r.offset, r.size, value)

    def enable(self, asqs: int = 31, acqs: int = 31, mps: int = 0, misalign: int = 0) -> int:
        """Program the admin queues and set CC.EN; returns CSTS afterwards.  ``misalign``
        moves the admin SQ off its page (the controller must refuse to start)."""
        self.write_reg("AQA", regs.pack("AQA", ASQS=asqs, ACQS=acqs))
        self.write_reg("ASQ", L.ADMIN_SQ + misalign)
        self.write_reg("ACQ", L.ADMIN_CQ)
        self.bus.mem_write(L.ADMIN_CQ, bytes((acqs + 1) * CQE_SIZE))
        self.write_reg("CC", regs.pack("CC", EN=1, MPS=mps, IOSQES=6, IOCQES=4))
        csts = self.read_reg("CSTS")
        self.forget()
        if csts & regs.CSTS_RDY:
            self.sqs[0] = HostSQ(0, 0, asqs + 1)
            self.cqs[0] = HostCQ(0, acqs + 1)
        return csts

    def forget(self) -> None:
        """Drop all host queue state (after a reset the controller forgot it too)."""
        self.sqs.clear()
        self.cqs.clear()
        self.shadow = False

    # ------------------------------------------------------------------ commands
    def next_cid(self, sq: HostSQ) -> int:
        cid = sq.next_cid
        while cid in sq.outstanding:
            cid = (cid + 1) & 0xFFFF
        sq.next_cid = (cid + 1) & 0xFFFF
        return cid

    def submit(self, qid: int, sqe: SQE, *, data: bytes | None = None, length: int = 0,
               returns_data: bool = False, offset: int = 0, unmapped: bool = False,
               effect: tuple = ()) -> int:
        """Write one command at the SQ tail (no doorbell); returns its CID.

        ``length`` bytes of buffer are described with PRP1/PRP2 (a PRP list beyond two
        pages), starting ``offset`` bytes into the slot's first page; ``data`` is written
        there first.  An admin command's buffer the host will read back (``returns_data``)
        is cleared first, so bytes the controller does not transfer (a log shorter than the
        length asked for) read as zero, not as what an earlier command left in the slot; a
        Read that succeeds transfers all its blocks.  ``unmapped`` points PRP1 outside guest
        RAM.
        """
        sq = self.sqs.get(qid)
        if sq is None:
            raise IllegalCommand(f"no SQ {qid} on the host side")
        if length > L.MAX_TRANSFER - offset:
            raise IllegalCommand(f"transfer of {length} bytes does not fit a data slot")
        window = self._window(qid, sq.tail)
        buffer = window + offset
        if data is not None:
            self.bus.mem_write(buffer, data)
        elif returns_data and length and not qid:
            self.bus.mem_write(buffer, bytes(length))
        prp1, prp2 = (L.UNMAPPED if unmapped else buffer), 0
        if length:
            prp2 = self._prp2(window, buffer, length)
        cid = self.next_cid(sq)
        sqe = attrs.evolve(sqe, cid=cid, prp1=sqe.prp1 or prp1, prp2=sqe.prp2 or prp2)
        self.bus.mem_write(L.sq_base(qid) + sq.tail * SQE_SIZE, sqe.encode())
        sq.tail = (sq.tail + 1) % sq.size
        span = (sqe.nsid, *sqe.lba_range) if qid else None
        at = sqe.lpo if not qid and sqe.opc == GET_LOG_PAGE else 0
        sq.outstanding[cid] = Outstanding(sqe.opc, buffer, length, returns_data, effect,
                                          sqe.cdw10, span, at, window)
        return cid

    def _window(self, qid: int, slot: int) -> int:
        """The data window for a command written to SQ ``qid``'s entry ``slot``: the entry's
        own, unless an outstanding command holds it or the SQE in another entry points to
        it; then the next one (in window order, wrapping) that is neither.  The entry's SQE
        points to it from now on."""
        entry = (qid, slot)
        held = {c.window for q in self.sqs.values() for c in q.outstanding.values()}
        start = L.window_index(qid, slot)
        for k in range(L.DATA_WINDOWS):
            window = L.data_window((start + k) % L.DATA_WINDOWS)
            if window not in held and self._pointed.get(window, entry) == entry:
                self._pointed.pop(self._points.get(entry, -1), None)
                self._points[entry], self._pointed[window] = window, entry
                return window
        raise IllegalCommand(f"all {L.DATA_WINDOWS} data windows are held by commands or "
                             f"pointed to by SQ entries")

    def _prp2(self, window: int, buffer: int, length: int) -> int:
        first = L.PAGE - (buffer % L.PAGE)
        if length <= first:
            return 0
        pages = [buffer - buffer % L.PAGE + L.PAGE * (i + 1)
                 for i in range(-(-(length - first) // L.PAGE))]
        if len(pages) == 1:
            return pages[0]
        plist = L.prp_list(window)
        self.bus.mem_write(plist, b"".join(p.to_bytes(8, "little") for p in pages))
        return plist

    def ring_sq(self, qid: int, value: int | None = None) -> None:
        """Write SQ ``qid``'s tail doorbell: the host tail, or any ``value`` (even invalid)."""
        sq = self.sqs.get(qid)
        new = value if value is not None else (sq.tail if sq else 0)
        if sq is not None and new < sq.size:       # an invalid value is not taken
            sq.rung = new
            sq.overrun |= new != sq.tail
        if self.shadow and sq is not None and value is None and qid:
            old = self._shadow(L.SHADOW_DB + 8 * qid, new)
            event = int.from_bytes(self.bus.mem_read(L.EVENTIDX + 8 * qid, 4), "little")
            if ((new - event - 1) & 0xFFFF) >= ((new - old) & 0xFFFF):
                return                       # the controller will see the shadow value
        self.bus.mmio_write(regs.sq_tail_doorbell(qid), 4, new)

    def ring_cq(self, qid: int, value: int | None = None) -> None:
        cq = self.cqs.get(qid)
        new = value if value is not None else (cq.head if cq else 0)
        if cq is not None and new < cq.size:
            cq.rung = new
        if self.shadow and cq is not None and value is None and qid:
            old = self._shadow(L.SHADOW_DB + 8 * qid + 4, new)
            event = int.from_bytes(self.bus.mem_read(L.EVENTIDX + 8 * qid + 4, 4), "little")
            if ((new - event - 1) & 0xFFFF) >= ((new - old) & 0xFFFF):
                return
        self.bus.mmio_write(regs.cq_head_doorbell(qid), 4, new)

    def _shadow(self, addr: int, new: int) -> int:
        old = int.from_bytes(self.bus.mem_read(addr, 4), "little")
        self.bus.mem_write(addr, new.to_bytes(4, "little"))
        return old

    def harvest(self, qid: int, limit: int = 1 << 16) -> list[Completion]:
        """Consume up to ``limit`` posted CQEs of CQ ``qid`` (no doorbell write)."""
        cq = self.cqs.get(qid)
        out: list[Completion] = []
        if cq is None:
            return out
        while len(out) < limit:
            raw = self.bus.mem_read(L.cq_base(qid) + cq.head * CQE_SIZE, CQE_SIZE)
            if raw[14] & 1 != cq.phase:
                break
            cqe = CQE.decode(raw)
            cq.head += 1
            if cq.head == cq.size:
                cq.head, cq.phase = 0, cq.phase ^ 1
            out.append(self._retire(qid, cqe))
        return out

    def _retire(self, cqid: int, cqe: CQE) -> Completion:
        sq = self.sqs.get(cqe.sqid)
        if sq is None or sq.cqid != cqid or cqe.cid not in sq.outstanding:
            return Completion(cqid, cqe, None, known=False)
        if cqe.sqhd < sq.size:
            sq.head = cqe.sqhd
        cmd = sq.outstanding.pop(cqe.cid)
        data = None
        if cmd.returns_data and cmd.length and cqe.status == 0:
            # a failed command's buffer holds whatever was there before: not an observation
            data = self.bus.mem_read(cmd.buffer, cmd.length)
        if cmd.effect and cqe.status == 0:
            self._apply(cmd.effect)
        return Completion(cqid, cqe, data)

    def _apply(self, effect: tuple) -> None:
        kind, qid, *rest = effect
        if kind == "create_cq":
            self.cqs[qid] = HostCQ(qid, rest[0])
        elif kind == "create_sq":
            self.sqs[qid] = HostSQ(qid, rest[0], rest[1])
        elif kind == "delete_sq":
            self.sqs.pop(qid, None)
        elif kind == "delete_cq":
            self.cqs.pop(qid, None)
        elif kind == "dbbuf":
            self.shadow = True

    def peek(self, qid: int) -> list[bytes]:
        """Raw CQEs posted beyond the host's head, without consuming them."""
        cq = self.cqs.get(qid)
        out: list[bytes] = []
        if cq is None:
            return out
        head, phase = cq.head, cq.phase
        for _ in range(cq.size - 1):
            raw = self.bus.mem_read(L.cq_base(qid) + head * CQE_SIZE, CQE_SIZE)
            if raw[14] & 1 != phase:
                break
            out.append(raw)
            head += 1
            if head == cq.size:
                head, phase = 0, phase ^ 1
        return out
