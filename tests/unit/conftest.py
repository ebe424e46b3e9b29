"""Shared fixtures for the unit tests: a minimal host bolted straight onto the model.

``Rig`` drives ``nvmefuzz.model.controller.Controller`` through its BAR (``mmio_read`` /
``mmio_write``) and guest memory only, the way a guest driver would: it writes SQEs at its own
SQ tail, rings doorbells, and consumes CQEs by phase tag.  It deliberately does not use
``nvmefuzz.host.driver.Host`` so that the tests can submit malformed commands, ring bogus
doorbells and hold completions back at will.

Pytest runs with ``--import-mode=importlib``, so tests cannot import this module; they get the
rig through the ``make_rig`` / ``rig`` fixtures.
"""

from __future__ import annotations

import attrs
import pytest

from nvmefuzz.model.controller import Controller
from nvmefuzz.model.state import Config
from nvmefuzz.protocol import regs
from nvmefuzz.protocol.queues import CQE, CQE_SIZE, SQE, SQE_SIZE
from nvmefuzz.protocol.spec import AdminOpcode as A, FeatureId as F, IoOpcode as IO

ADMIN_SQ = 0x0001_0000
ADMIN_CQ = 0x0002_0000
DATA = 0x0300_0000


def sq_base(qid: int) -> int:
    """Page-aligned (128 KiB) base of I/O SQ ``qid``."""
    return 0x0010_0000 + qid * 0x4_0000


def cq_base(qid: int) -> int:
    """Page-aligned (64 KiB) base of I/O CQ ``qid``."""
    return sq_base(qid) + 0x2_0000


class Rig:
    """A controller plus the host's half of the queue protocol."""

    def __init__(self, config: Config) -> None:
        self.ctrl = Controller(config)
        self.sq: dict[int, dict] = {}
        self.cq: dict[int, dict] = {}
        self.cid = 0
        #: CQEs harvested by ``admin`` that belonged to other commands (e.g. AERs)
        self.extra: list[CQE] = []

    # ------------------------------------------------------------------ registers
    def read(self, name: str) -> int:
        r = regs.BY_NAME[name]
        return self.ctrl.mmio_read(r.offset, r.size)

    def write(self, name: str, value: int) -> None:
        r = regs.BY_NAME[name]
        self.ctrl.mmio_write(r.offset, r.size, value)

    def program_admin(self, asqs: int = 7, acqs: int = 7, asq: int = ADMIN_SQ,
                      acq: int = ADMIN_CQ) -> None:
        self.write("AQA", regs.pack("AQA", ASQS=asqs, ACQS=acqs))
        self.write("ASQ", asq)
        self.write("ACQ", acq)

    def enable(self, asqs: int = 7, acqs: int = 7, asq: int = ADMIN_SQ, acq: int = ADMIN_CQ,
               **cc: int) -> int:
        """Program the admin queues, write CC with EN=1; returns CSTS."""
        self.program_admin(asqs, acqs, asq, acq)
        self.ctrl.mem.write(acq, bytes((acqs + 1) * CQE_SIZE))     # the host zeroes its CQ
        fields = {"IOSQES": 6, "IOCQES": 4, **cc, "EN": 1}
        self.write("CC", regs.pack("CC", **fields))
        csts = self.read("CSTS")
        self.sq.clear()
        self.cq.clear()
        if csts & regs.CSTS_RDY:
            self.sq[0] = {"base": asq, "size": asqs + 1, "tail": 0}
            self.cq[0] = {"base": acq, "size": acqs + 1, "head": 0, "phase": 1}
        return csts

    def disable(self) -> None:
        """CC.EN 1->0 (a Controller Level Reset); the host forgets its queues too."""
        self.write("CC", 0)
        self.sq.clear()
        self.cq.clear()

    # ------------------------------------------------------------------ submission
    def place(self, qid: int, sqe: SQE) -> int:
        """Write ``sqe`` (with a fresh CID) at the host's SQ tail, without a doorbell."""
        q = self.sq[qid]
        self.cid = self.cid % 0xFFFF + 1
        raw = attrs.evolve(sqe, cid=self.cid).encode()
        self.ctrl.mem.write(q["base"] + q["tail"] * SQE_SIZE, raw)
        q["tail"] = (q["tail"] + 1) % q["size"]
        return self.cid

    def ring_sq(self, qid: int, value: int | None = None) -> None:
        new = self.sq[qid]["tail"] if value is None else value
        self.ctrl.mmio_write(regs.sq_tail_doorbell(qid), 4, new)

    def ring_cq(self, qid: int, value: int | None = None) -> None:
        new = self.cq[qid]["head"] if value is None else value
        self.ctrl.mmio_write(regs.cq_head_doorbell(qid), 4, new)

    def submit(self, qid: int, sqe: SQE) -> int:
        cid = self.place(qid, sqe)
        self.ring_sq(qid)
        return cid

    # ------------------------------------------------------------------ completion
    def raw_cqe(self, cqid: int, slot: int) -> bytes:
        return self.ctrl.mem.read(self.cq[cqid]["base"] + slot * CQE_SIZE, CQE_SIZE)

    def harvest(self, cqid: int, ring: bool = True, limit: int = 1 << 16) -> list[CQE]:
        """Consume posted CQEs (phase tag matches); ring the CQ head doorbell if any."""
        q = self.cq[cqid]
        out: list[CQE] = []
        while len(out) < limit:
            raw = self.raw_cqe(cqid, q["head"])
            if raw[14] & 1 != q["phase"]:
                break
            out.append(CQE.decode(raw))
            q["head"] += 1
            if q["head"] == q["size"]:
                q["head"], q["phase"] = 0, q["phase"] ^ 1
        if out and ring:
            self.ring_cq(cqid)
        return out

    def admin(self, sqe: SQE) -> CQE:
        """Submit an admin command and return its completion (which must be posted now)."""
        cid = self.submit(0, sqe)
        mine = None
        for cqe in self.harvest(0):
            if cqe.cid == cid and mine is None:
                mine = cqe
            else:
                self.extra.append(cqe)
        assert mine is not None, f"admin command {sqe.opc:#x} did not complete"
        return mine

    # ------------------------------------------------------------------ commands
    def create_cq(self, qid: int, qsize: int, *, ien: int = 1, iv: int = 0, pc: int = 1,
                  prp1: int | None = None) -> int:
        """Create I/O CQ; returns the status (the host tracks the CQ on success)."""
        base = cq_base(qid % 64) if prp1 is None else prp1
        self.ctrl.mem.write(base, bytes(min(qsize + 1, 4096) * CQE_SIZE))
        cqe = self.admin(SQE(opc=A.CREATE_IO_CQ, prp1=base, cdw10=qid | qsize << 16,
                             cdw11=pc | ien << 1 | iv << 16))
        if cqe.status == 0:
            self.cq[qid] = {"base": base, "size": qsize + 1, "head": 0, "phase": 1}
        return cqe.status

    def create_sq(self, qid: int, cqid: int, qsize: int, *, pc: int = 1,
                  prp1: int | None = None) -> int:
        base = sq_base(qid % 64) if prp1 is None else prp1
        cqe = self.admin(SQE(opc=A.CREATE_IO_SQ, prp1=base, cdw10=qid | qsize << 16,
                             cdw11=pc | cqid << 16))
        if cqe.status == 0:
            self.sq[qid] = {"base": base, "size": qsize + 1, "tail": 0}
        return cqe.status

    def delete_sq(self, qid: int) -> int:
        status = self.admin(SQE(opc=A.DELETE_IO_SQ, cdw10=qid)).status
        if status == 0:
            self.sq.pop(qid, None)
        return status

    def delete_cq(self, qid: int) -> int:
        status = self.admin(SQE(opc=A.DELETE_IO_CQ, cdw10=qid)).status
        if status == 0:
            self.cq.pop(qid, None)
        return status

    def io_pair(self, qid: int = 1, sq_qsize: int = 7, cq_qsize: int = 7, **cq_kw: int) -> None:
        assert self.create_cq(qid, cq_qsize, **cq_kw) == 0
        assert self.create_sq(qid, qid, sq_qsize) == 0

    def flush(self, qid: int = 1, ring: bool = True) -> int:
        sqe = SQE(opc=IO.FLUSH, nsid=1)
        return self.submit(qid, sqe) if ring else self.place(qid, sqe)

    def get_feature(self, fid: int, cdw11: int = 0) -> CQE:
        return self.admin(SQE(opc=A.GET_FEATURES, cdw10=fid, cdw11=cdw11))

    def set_feature(self, fid: int, cdw11: int) -> CQE:
        return self.admin(SQE(opc=A.SET_FEATURES, cdw10=fid, cdw11=cdw11))

    def nop(self) -> SQE:
        """A harmless admin command that completes synchronously with success."""
        return SQE(opc=A.GET_FEATURES, cdw10=F.NUMBER_OF_QUEUES)

    def aer(self) -> int:
        """Submit an Asynchronous Event Request; it must stay outstanding."""
        cid = self.submit(0, SQE(opc=A.ASYNC_EVENT_REQUEST))
        assert self.peek(0) == [], "AER completed at once"
        return cid

    def peek(self, cqid: int) -> list[CQE]:
        """Posted but unconsumed CQEs, without consuming them."""
        q = self.cq[cqid]
        head, phase, out = q["head"], q["phase"], []
        for _ in range(q["size"]):
            raw = self.raw_cqe(cqid, head)
            if raw[14] & 1 != phase:
                break
            out.append(CQE.decode(raw))
            head += 1
            if head == q["size"]:
                head, phase = 0, phase ^ 1
        return out

    def read_error_log(self) -> CQE:
        """Get Log Page, Error Information, RAE=0 (unmasks Error events)."""
        return self.admin(SQE(opc=A.GET_LOG_PAGE, prp1=DATA, cdw10=0x01 | 15 << 16))


@pytest.fixture
def make_rig():
    """A factory: ``make_rig(**config)`` gives a powered-on, not yet enabled rig."""

    def make(**config) -> Rig:
        return Rig(Config(**config))

    return make


@pytest.fixture
def rig(make_rig) -> Rig:
    """An enabled controller with default config (MSI-X on), admin queues of 8 entries."""
    r = make_rig()
    assert r.enable() == regs.CSTS_RDY
    return r


@pytest.fixture
def intx_rig(make_rig) -> Rig:
    """An enabled controller using pin-based interrupts (MSI-X disabled)."""
    r = make_rig(msix=False)
    assert r.enable() == regs.CSTS_RDY
    return r
