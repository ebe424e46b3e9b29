"""The reference NVMe controller: registers, doorbells, queues, completions, interrupts.

How it works
------------
The controller is driven only from outside: ``mmio_read``/``mmio_write`` (the BAR), and
``advance(ns)`` (virtual time moves on).  Between those calls it runs to a fixpoint, the way
QEMU's main loop runs bottom halves after every MMIO access: SQ processing and CQ posting are
"scheduled" into an ordered set and ``_run`` drains it.  At rest nothing is scheduled, which is
why a snapshot never needs to carry scheduling state and a restore can simply re-run ``_run``.

Rules this module keeps (QEMU hw/nvme 11.1 behaviour; see the reference digest section 8):

* An SQ owns ``size`` request objects.  A fetched command holds one until its CQE is written
  to the CQ, so an SQ whose completions wait on a full CQ stops fetching (``used == size``).
* Admin commands finish synchronously; I/O commands finish ``config.io_latency_ns`` of virtual
  time after they were fetched (their data moves then), so commands can be in flight at any
  instant.  Outstanding AERs hold their request until an event completes them.
* A completion is queued on its CQ (``waiting``) and posted in FIFO order while the CQ has a
  free slot; SQHD is the SQ's fetch head at posting time.  Every posting pass that leaves the
  CQ non-empty asserts the CQ's interrupt.
* Time never comes from anywhere but ``advance``; the same calls give the same state.

Command semantics live in ``admin.py`` and ``nvm.py``; events in ``events.py``; interrupts
in ``interrupts.py``.
"""

from __future__ import annotations

from nvmefuzz.model import events, identify
from nvmefuzz.model.interrupts import irq_assert, irq_check, irq_deassert
from nvmefuzz.model.memory import GuestMemory, NamespaceStore
from nvmefuzz.model.state import (
    CompletionQueue, Config, Features, Request, SubmissionQueue,
)
from nvmefuzz.protocol import regs
from nvmefuzz.protocol.queues import CQE, SQE, SQE_SIZE
from nvmefuzz.protocol.spec import AsyncEventType, ErrorEventInfo, LogId

VS_1_4 = 0x00010400
GUEST_RAM = 64 << 20


def cap_for(config: Config) -> int:
    """CAP as QEMU 11.1 builds it: CQR, TO=7.5 s, NVM and I/O command sets (CSS bits 0 and
    6; bit 7, "admin only", is not offered), pages 4-64 KiB."""
    return regs.pack("CAP", MQES=config.mqes, CQR=1, TO=0x0F, CSS=0b0100_0001, MPSMAX=4)


class Controller:
    """One NVMe controller attached to guest memory and one namespace store."""

    def __init__(self, config: Config, mem: GuestMemory | None = None,
                 store: NamespaceStore | None = None, now: int = 0) -> None:
        self.config = config
        self.mem = mem if mem is not None else GuestMemory(GUEST_RAM)
        self.store = store if store is not None else NamespaceStore(config.nsze)
        self.now = now
        #: observable interrupt log: ("msix", vector) per message, ("intx", level) per change
        self.irq_log: list[tuple[str, int]] = []
        self._sched: dict[tuple[str, int], None] = {}
        #: a save hook stopped SQ processing (QEMU's stop_processing_sq); the backend holds
        #: reads and writes (``nvm.HELD``) in flight until released or drained
        self.stop_processing = self.held = False
        self.power_on()

    # ------------------------------------------------------------------ power and reset
    def power_on(self) -> None:
        """Every field at its power-on value (what a fresh migration destination has)."""
        self.cap = cap_for(self.config)
        self.vs = VS_1_4
        self.intms = 0
        self.cc = 0
        self.csts = 0
        self.nssr = 0
        self.aqa = 0
        self.asq = 0
        self.acq = 0
        self.page_size = 4096
        self.sqs: dict[int, SubmissionQueue] = {}
        self.cqs: dict[int, CompletionQueue] = {}
        self.inflight: list[Request] = []
        self.qs_created = False
        self.aer_reqs: list[Request] = []
        self.aer_queue: list[events.AsyncEvent] = []
        self.aer_mask = 0
        self.features = Features()
        self.temperature = self.config.temperature
        self.smart_critical_warning = 0
        self.starttime_ms = self.now // 1_000_000
        self.data_units_read = 0
        self.data_units_written = 0
        self.host_reads = 0
        self.host_writes = 0
        self.changed_nsids: list[int] = []
        self.dbbuf_enabled = False
        self.dbbuf_dbs = 0
        self.dbbuf_eis = 0
        self.irq_status = 0
        self.cq_pending = 0
        self.intx = 0
        self.dmrsl = 0                        # the DSM range size limit: set by _start

    def _reset(self) -> None:
        """Controller Level Reset (CC.EN 1->0), as nvme_ctrl_reset does it."""
        for req in self.inflight:             # drained: data moves, completions vanish
            from nvmefuzz.model import nvm
            nvm.finish(self, req)
        self.inflight = []
        self.sqs = {}
        self.cqs = {}
        self.aer_queue = []
        self.aer_mask = 0
        self.aer_reqs = []
        self.qs_created = False
        self.features.write_atomicity_dn = 0  # QEMU: n->dn = params.atomic_dn (default off)
        self.csts = 0
        self.intms = 0
        self.cc = 0
        self.dbbuf_enabled = False
        self.dbbuf_dbs = self.dbbuf_eis = 0
        self._sched.clear()

    def _start(self) -> bool:
        mps = regs.field("CC", "MPS", self.cc)
        page = 1 << (12 + mps)
        css = regs.field("CC", "CSS", self.cc)
        asqs = regs.field("AQA", "ASQS", self.aqa)
        acqs = regs.field("AQA", "ACQS", self.aqa)
        if (0 in self.sqs or 0 in self.cqs or self.asq & (page - 1) or self.acq & (page - 1)
                or not (regs.field("CAP", "CSS", self.cap) >> css) & 1
                or mps < regs.field("CAP", "MPSMIN", self.cap)
                or mps > regs.field("CAP", "MPSMAX", self.cap)
                or asqs == 0 or acqs == 0):
            return False
        self.page_size = page
        self.cqs[0] = CompletionQueue(0, self.acq, acqs + 1, ien=True, vector=0)
        self.sqs[0] = SubmissionQueue(0, 0, self.asq, asqs + 1)
        self.features.host_timestamp = 0
        self.features.timestamp_set_ms = self.now // 1_000_000
        self.dmrsl = identify.dsm_range_limit(self)
        return True

    # ------------------------------------------------------------------ MMIO
    def mmio_read(self, offset: int, size: int) -> int:
        """A BAR0 read; doorbells and unknown registers read as zero."""
        if offset + size > 0x40 or offset < 0:
            return 0
        image = b"".join((
            self.cap.to_bytes(8, "little"), self.vs.to_bytes(4, "little"),
            self.intms.to_bytes(4, "little"), self.intms.to_bytes(4, "little"),
            self.cc.to_bytes(4, "little"), bytes(4), self.csts.to_bytes(4, "little"),
            self.nssr.to_bytes(4, "little"), self.aqa.to_bytes(4, "little"),
            self.asq.to_bytes(8, "little"), self.acq.to_bytes(8, "little"), bytes(8),
        ))
        return int.from_bytes(image[offset:offset + size], "little")

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        """A BAR0 write, then run scheduled work to a fixpoint.

        An access not aligned to its size is split into 2-byte accesses, as QEMU's memory
        core does for this device (so a 4-byte write at 0x1002 also writes 0x1004).
        """
        value &= (1 << (8 * size)) - 1
        if offset % size and size > 2:
            for i in range(0, size, 2):
                self._write(offset + i, 2, (value >> (8 * i)) & 0xFFFF)
        else:
            self._write(offset, size, value)
        self._run()

    def _write(self, offset: int, size: int, value: int) -> None:
        if offset >= regs.DOORBELL_BASE:
            self._doorbell(offset, value)
        else:
            handler = _REGISTER_WRITES.get(offset & ~7 if offset in (0x2C, 0x34) else offset)
            if handler is not None:
                handler(self, offset, size, value)

    def _write_cc(self, offset: int, size: int, value: int) -> None:
        old, self.cc = self.cc, value & 0xFFFFFFFF
        csts = self.csts
        shn_old, shn_new = regs.field("CC", "SHN", old), regs.field("CC", "SHN", value)
        if shn_new and not shn_old:
            csts = regs.with_field("CSTS", "SHST", csts, regs.SHST_COMPLETE)
        elif shn_old and not shn_new:
            csts = regs.with_field("CSTS", "SHST", csts, regs.SHST_NORMAL)
        en_old, en_new = old & 1, value & 1
        if en_new and not en_old:
            csts = regs.CSTS_RDY if self._start() else regs.CSTS_CFS
        elif en_old and not en_new:
            self._reset()
            return
        self.csts = csts

    def _write_intms(self, offset: int, size: int, value: int) -> None:
        self.intms |= value
        irq_check(self)

    def _write_intmc(self, offset: int, size: int, value: int) -> None:
        self.intms &= ~value & 0xFFFFFFFF
        irq_check(self)

    def _write_aqa(self, offset: int, size: int, value: int) -> None:
        self.aqa = value & 0xFFFFFFFF

    def _write_base(self, offset: int, size: int, value: int) -> None:
        name = "asq" if offset < 0x30 else "acq"
        raw = bytearray(getattr(self, name).to_bytes(8, "little"))
        start = offset & 7
        raw[start:start + size] = value.to_bytes(size, "little")[: 8 - start]
        setattr(self, name, int.from_bytes(raw, "little"))

    # ------------------------------------------------------------------ doorbells
    def _doorbell(self, offset: int, value: int) -> None:
        if offset & 3:
            return
        index = (offset - regs.DOORBELL_BASE) >> 2
        qid, is_cq = index >> 1, bool(index & 1)
        value &= 0xFFFF
        queue = (self.cqs if is_cq else self.sqs).get(qid)
        if queue is None or qid > self.config.max_ioqpairs:
            self._doorbell_error(ErrorEventInfo.INVALID_DOORBELL_REGISTER)
            return
        if value >= queue.size:
            self._doorbell_error(ErrorEventInfo.INVALID_DOORBELL_VALUE)
            return
        if is_cq:
            was_full = queue.full()
            queue.head = value
            if qid == 0 and self.dbbuf_enabled:
                self.mem.write_u32(self.dbbuf_dbs + 4, value)
            if was_full:
                self._schedule("cq", qid)
            if queue.tail == queue.head:
                if queue.ien:
                    self.cq_pending -= 1
                irq_deassert(self, queue)
        else:
            queue.tail = value
            if qid == 0 and self.dbbuf_enabled:
                self.mem.write_u32(self.dbbuf_dbs, value)
            self._schedule("sq", qid)

    def _doorbell_error(self, info: int) -> None:
        if self.aer_reqs:   # QEMU queues doorbell errors only with an AER outstanding
            events.enqueue(self, AsyncEventType.ERROR, info, LogId.ERROR_INFORMATION)

    # ------------------------------------------------------------------ scheduling
    def _schedule(self, kind: str, qid: int) -> None:
        self._sched[(kind, qid)] = None

    def cancel(self, kind: str) -> None:
        """Cancel the scheduled bottom halves of one kind, "sq" or "cq" (``qemu_bh_cancel``)."""
        for key in [k for k in self._sched if k[0] == kind]:
            del self._sched[key]

    def _run(self) -> None:
        while self._sched:
            (kind, qid) = next(iter(self._sched))
            del self._sched[(kind, qid)]
            if kind == "sq":
                if qid in self.sqs:
                    self._process_sq(self.sqs[qid])
            elif qid in self.cqs:
                self._post_cqes(self.cqs[qid])

    def kick(self) -> None:
        """Schedule every SQ and run: a no-op for a controller at rest (used after restore)."""
        for qid in self.sqs:
            self._schedule("sq", qid)
        self._run()

    def advance(self, ns: int) -> None:
        """Let ``ns`` of virtual time pass: I/O whose backend finished completes, in order."""
        from nvmefuzz.model import nvm

        self.now += ns
        while self.inflight:
            req = min((r for r in self.inflight if not (self.held and r.sqe.opc in nvm.HELD)),
                      key=lambda r: r.due, default=None)
            if req is None or req.due > self.now:
                break
            self.inflight.remove(req)
            self.finish_io(req)
            self._run()

    def drain(self) -> None:
        """Finish all in-flight I/O now (what ``blk_drain`` does in a migration pre_save)."""
        for req in self.inflight:
            self.finish_io(req)
        self.inflight = []
        self._run()

    def finish_io(self, req: Request) -> None:
        """The backend is done with ``req`` (no longer in flight): its data moves, its
        completion is queued."""
        from nvmefuzz.model import nvm

        req.status = nvm.finish(self, req)
        req.due = None
        self.complete(req)

    def quiesce(self) -> None:
        """Stop fetching SQEs, then drain: the first steps of a save (QEMU cancels the SQ
        bottom halves, a TP4159 Suspend stops processing commands).  SQEs a drained
        completion would let a used-up request pool fetch stay in guest memory for whoever
        schedules the SQs next (a destination's post_load)."""
        self.stop_processing = True
        try:
            self.drain()
        finally:
            self.stop_processing = False

    # ------------------------------------------------------------------ SQ and CQ engines
    def _process_sq(self, sq: SubmissionQueue) -> None:
        from nvmefuzz.model import admin, nvm

        if self.stop_processing:
            return
        if self.dbbuf_enabled:
            sq.tail = self.mem.read_u32(self.dbbuf_dbs + 8 * sq.sqid) & 0xFFFF
        while sq.head != sq.tail and sq.used < sq.size:
            addr = sq.base + sq.head * SQE_SIZE
            if not self.mem.valid(addr, SQE_SIZE):
                self.csts = regs.CSTS_CFS
                return
            sqe = SQE.decode(self.mem.read(addr, SQE_SIZE))
            sq.head = (sq.head + 1) % sq.size
            sq.used += 1
            req = Request(sq.sqid, sqe)
            status = (admin if sq.sqid == 0 else nvm).execute(self, req)
            if status is not None:
                req.status = status
                self.complete(req)
            if self.dbbuf_enabled:
                self.mem.write_u32(self.dbbuf_eis + 8 * sq.sqid, sq.tail)
                sq.tail = self.mem.read_u32(self.dbbuf_dbs + 8 * sq.sqid) & 0xFFFF

    def complete(self, req: Request) -> None:
        """Queue a finished request's completion on its CQ and schedule posting."""
        cq = self.cqs[self.sqs[req.sqid].cqid]
        cq.waiting.append(req)
        self._schedule("cq", cq.cqid)

    def _post_cqes(self, cq: CompletionQueue) -> None:
        pending = cq.head != cq.tail
        while cq.waiting:
            if self.dbbuf_enabled:       # per completion, as nvme_post_cqes does
                self.mem.write_u32(self.dbbuf_eis + 8 * cq.cqid + 4, cq.head)
                cq.head = self.mem.read_u32(self.dbbuf_dbs + 8 * cq.cqid + 4) & 0xFFFF
            if cq.full():
                break
            req = cq.waiting[0]
            sq = self.sqs[req.sqid]
            cqe = CQE(cid=req.sqe.cid, status=req.status, sqid=req.sqid, sqhd=sq.head,
                      dw0=req.dw0, dw1=req.dw1, phase=cq.phase)
            addr = cq.base + cq.tail * 16
            if not self.mem.valid(addr, 16):
                self.csts = regs.CSTS_CFS
                break
            self.mem.write(addr, cqe.encode())
            del cq.waiting[0]
            cq.tail += 1
            if cq.tail == cq.size:
                cq.tail = 0
                cq.phase ^= 1
            if sq.used == sq.size and sq.head != sq.tail:
                self._schedule("sq", sq.sqid)
            sq.used -= 1
        if cq.tail != cq.head:
            if cq.ien and not pending:
                self.cq_pending += 1
            irq_assert(self, cq)


_REGISTER_WRITES = {
    regs.CC: Controller._write_cc,
    regs.INTMS: Controller._write_intms,
    regs.INTMC: Controller._write_intmc,
    regs.AQA: Controller._write_aqa,
    regs.ASQ: Controller._write_base,
    regs.ACQ: Controller._write_base,
}
