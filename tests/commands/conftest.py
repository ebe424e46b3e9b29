"""Fixtures for the command tests: the reference controller driven through the host driver.

``rig`` is an enabled model controller (``ModelTarget``) with a host (``Host``) and one I/O
queue pair (SQ 1 on CQ 1, 32 entries).  The ``Rig`` object carries one-call helpers for the
commands the tests send and the guest-memory addresses they may use freely, so test modules
never import this file (the suite runs with ``--import-mode=importlib``).  ``make_rig`` builds
one with other settings.

Guest memory used here: the host driver's fixed layout (queues, per-slot data windows and
shadow doorbells, see ``nvmefuzz.host.layout``) plus ``Rig.scratch``, 16 MiB nobody else uses,
for buffers and PRP lists a test builds by hand.
"""

from __future__ import annotations

import pytest

from nvmefuzz.host import layout as L
from nvmefuzz.host.driver import Completion, Host, pattern_bytes
from nvmefuzz.model import events
from nvmefuzz.protocol import regs, structures
from nvmefuzz.protocol.queues import SQE
from nvmefuzz.protocol.spec import BROADCAST_NSID, AdminOpcode as A, IoOpcode as IO, LogId
from nvmefuzz.targets.base import TargetConfig
from nvmefuzz.targets.model import ModelTarget

LATENCY = 20_000
BLOCK = 512
PAGE = 4096


class Rig:
    """An enabled model controller, its host and helpers that send one command each."""

    scratch = 0x0200_0000          # 16 MiB of guest RAM free for hand-built buffers
    scratch_end = 0x0300_0000
    unmapped = L.UNMAPPED          # an address outside guest RAM
    block = BLOCK
    page = PAGE

    def __init__(self, *, msix: bool = True, latency: int = LATENCY, nsze: int = 1 << 14,
                 io_queue: bool = True, mps: int = 0) -> None:
        self.target = ModelTarget(TargetConfig(msix=msix, io_latency_ns=latency, nsze=nsze))
        self.host = Host(self.target)
        self.latency = latency
        self.mps = mps
        self.enable()
        if io_queue:
            self.create_io_pair(1, 32)

    # ------------------------------------------------------------------ plumbing
    @property
    def ctrl(self):
        return self.target.ctrl

    @property
    def mem(self):
        return self.target.ctrl.mem

    @property
    def store(self):
        return self.target.ctrl.store

    def enable(self) -> int:
        csts = self.host.enable(mps=self.mps)
        assert csts & regs.CSTS_RDY, f"controller did not become ready: CSTS={csts:#x}"
        return csts

    def reset(self) -> None:
        """Controller Level Reset (CC.EN 1 -> 0); the host forgets its queues too."""
        self.host.write_reg("CC", 0)
        self.host.forget()

    def reap(self, qid: int) -> list[Completion]:
        """Everything CQ ``qid`` holds now, consumed (and the CQ head doorbell written)."""
        done = self.host.harvest(qid)
        if done:
            self.host.ring_cq(qid)
        return done

    # ------------------------------------------------------------------ admin
    def admin_submit(self, sqe: SQE, *, data: bytes | None = None, length: int = 0,
                     returns_data: bool = False, offset: int = 0, effect: tuple = ()) -> int:
        """Put one admin command on the admin SQ and ring its doorbell; returns its CID."""
        cid = self.host.submit(0, sqe, data=data, length=length, returns_data=returns_data,
                               offset=offset, effect=effect)
        self.host.ring_sq(0)
        return cid

    def admin(self, sqe: SQE, **kw) -> Completion:
        """Send one admin command and return its completion (admin commands finish at once).

        Other completions harvested on the way (AERs) are kept in ``self.others``.
        """
        cid = self.admin_submit(sqe, **kw)
        done = self.reap(0)
        mine = [c for c in done if c.cqe.cid == cid]
        assert len(mine) == 1, f"expected one completion for CID {cid}, got {done}"
        self.others = [c for c in done if c.cqe.cid != cid]
        return mine[0]

    def identify(self, cns: int, nsid: int = 0, cdw11: int = 0) -> Completion:
        return self.admin(SQE(A.IDENTIFY, nsid=nsid, cdw10=cns, cdw11=cdw11), length=4096,
                          returns_data=True)

    def get_log(self, lid: int, length: int, *, offset: int = 0, rae: bool = False,
                nsid: int = BROADCAST_NSID, fill: int | None = None) -> Completion:
        """Get Log Page of ``length`` bytes (NUMD) at byte ``offset``.

        The data buffer is at most 16 KiB; with ``fill`` it is pre-filled with that byte so a
        test can see how much the controller wrote.
        """
        numd = length // 4 - 1
        buffer = min(length, L.MAX_TRANSFER)
        data = bytes([fill]) * buffer if fill is not None else None
        sqe = SQE(A.GET_LOG_PAGE, nsid=nsid, cdw10=lid | int(rae) << 15 | (numd & 0xFFFF) << 16,
                  cdw11=numd >> 16, cdw12=offset & 0xFFFFFFFF, cdw13=offset >> 32)
        return self.admin(sqe, data=data, length=buffer, returns_data=True)

    def smart(self) -> dict:
        """The SMART / Health log, parsed (read with RAE=1 so no event is cleared)."""
        c = self.get_log(LogId.SMART_HEALTH, structures.SMART_LOG_SIZE, rae=True)
        assert c.cqe.status == 0, c
        return structures.parse(structures.SMART_LOG, c.data)

    def get_feature(self, fid: int, *, sel: int = 0, nsid: int = 0, cdw11: int = 0,
                    length: int = 0) -> Completion:
        return self.admin(SQE(A.GET_FEATURES, nsid=nsid, cdw10=fid | sel << 8, cdw11=cdw11),
                          length=length, returns_data=bool(length))

    def set_feature(self, fid: int, cdw11: int = 0, *, nsid: int = 0, save: bool = False,
                    data: bytes | None = None) -> Completion:
        return self.admin(SQE(A.SET_FEATURES, nsid=nsid, cdw10=fid | int(save) << 31,
                              cdw11=cdw11), data=data, length=len(data) if data else 0)

    def aer(self) -> int:
        """Submit one Asynchronous Event Request; returns its CID (it normally stays open)."""
        return self.admin_submit(SQE(A.ASYNC_EVENT_REQUEST))

    def ns_changed(self, nsid: int = 1) -> None:
        """The namespace-attribute-changed environment event, then let the controller run."""
        events.namespace_changed(self.ctrl, nsid)
        self.ctrl.kick()

    # ------------------------------------------------------------------ I/O queues
    def create_io_pair(self, qid: int, size: int, cqid: int | None = None) -> None:
        """Create CQ ``cqid`` (default ``qid``; skipped if it exists) and SQ ``qid`` on it."""
        cqid = qid if cqid is None else cqid
        if cqid not in self.host.cqs:
            self.target.mem_write(L.cq_base(cqid), bytes(16 * size))
            c = self.admin(SQE(A.CREATE_IO_CQ, cdw10=cqid | (size - 1) << 16,
                               cdw11=1 | 1 << 1, prp1=L.cq_base(cqid)),
                           effect=("create_cq", cqid, size))
            assert c.cqe.status == 0, c
        c = self.admin(SQE(A.CREATE_IO_SQ, cdw10=qid | (size - 1) << 16, cdw11=1 | cqid << 16,
                           prp1=L.sq_base(qid)), effect=("create_sq", qid, cqid, size))
        assert c.cqe.status == 0, c

    def io_submit(self, sqe: SQE, qid: int = 1, *, data: bytes | None = None, length: int = 0,
                  returns_data: bool = False, offset: int = 0, unmapped: bool = False,
                  ring: bool = True) -> int:
        """Put one command on SQ ``qid`` (and ring its doorbell); returns its CID."""
        cid = self.host.submit(qid, sqe, data=data, length=length, returns_data=returns_data,
                               offset=offset, unmapped=unmapped)
        if ring:
            self.host.ring_sq(qid)
        return cid

    def io(self, sqe: SQE, qid: int = 1, **kw) -> Completion:
        """Send one I/O command, let ``latency`` of virtual time pass, return its completion."""
        cid = self.io_submit(sqe, qid, **kw)
        self.target.advance(self.latency)
        cq = self.host.sqs[qid].cqid
        done = [c for c in self.reap(cq) if c.cqe.cid == cid and c.cqe.sqid == qid]
        assert len(done) == 1, f"expected one completion for CID {cid}, got {done}"
        return done[0]

    @staticmethod
    def rw(opc: int, slba: int, nlb: int, *, nsid: int = 1, **fields) -> SQE:
        """A Read/Write/Compare/Write Zeroes SQE; ``nlb`` is the 1-based block count."""
        return SQE(opc, nsid=nsid, cdw10=slba & 0xFFFFFFFF, cdw11=slba >> 32,
                   cdw12=(nlb - 1) & 0xFFFF, **fields)

    def write(self, slba: int, data: bytes, qid: int = 1) -> Completion:
        """Write ``data`` (a whole number of blocks, at most 16 KiB) through host buffers."""
        return self.io(self.rw(IO.WRITE, slba, len(data) // BLOCK), qid, data=data,
                       length=len(data))

    def read(self, slba: int, nlb: int, qid: int = 1) -> Completion:
        return self.io(self.rw(IO.READ, slba, nlb), qid, length=nlb * BLOCK,
                       returns_data=True)

    # ------------------------------------------------------------------ hand-built PRPs
    def prps(self, pages: list[int], *, prp1: int | None = None, list_at: int | None = None,
             page: int = PAGE) -> tuple[int, int]:
        """PRP1/PRP2 for a transfer over ``pages`` (page-aligned data pages, any order).

        PRP1 is ``prp1`` if given (it may carry an in-page offset) else ``pages[0]``; two pages
        use PRP2 directly; more write a PRP list at ``list_at`` (a page of scratch memory by
        default) and point PRP2 at it.
        """
        first = pages[0] if prp1 is None else prp1
        rest = pages[1:]
        if not rest:
            return first, 0
        if len(rest) == 1:
            return first, rest[0]
        at = self.scratch_end - page if list_at is None else list_at
        self.mem.write(at, b"".join(p.to_bytes(8, "little") for p in rest))
        return first, at

    def scatter(self, pages: list[int], data: bytes, page: int = PAGE) -> None:
        """Write ``data`` across ``pages`` (one page each, in order)."""
        for i, addr in enumerate(pages):
            self.mem.write(addr, data[i * page:(i + 1) * page])

    def gather(self, pages: list[int], length: int, page: int = PAGE) -> bytes:
        out = b"".join(self.mem.read(a, page) for a in pages)
        return out[:length]


@pytest.fixture
def rig() -> Rig:
    """An enabled controller (MSI-X, 20 us I/O latency, 8 MiB namespace) with SQ/CQ 1."""
    return Rig()


@pytest.fixture
def make_rig():
    """Build a ``Rig`` with other settings: ``make_rig(latency=..., msix=..., mps=...)``."""
    return Rig


@pytest.fixture
def pattern():
    """``pattern_bytes``: deterministic data for writes."""
    return pattern_bytes
