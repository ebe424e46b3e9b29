"""NVM command set: Read, Write, Compare, Write Zeroes, Flush, Dataset Management.

``execute`` runs at fetch time: it checks the namespace, opcode, transfer size, LBA range
and PRPs, exactly where QEMU fails a command synchronously; a command that passes goes in
flight with ``due = now + io_latency_ns`` (Dataset Management without AD completes at once,
as in QEMU).  ``finish`` runs when the backend is done (or is drained): data moves between
guest memory and the namespace and the final status is decided.  PRPs are walked again at
that point, so a command never carries mapped buffers (a migration saving an in-flight
command only needs its SQE).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nvmefuzz.model.memory import gather, map_prp, scatter
from nvmefuzz.model.identify import ACTIVE_NSIDS, IO_EFFECTS
from nvmefuzz.protocol.spec import BROADCAST_NSID, DNR, IoOpcode as IO, Status as S

if TYPE_CHECKING:
    from nvmefuzz.model.controller import Controller
    from nvmefuzz.model.state import Request

DATA_OPS = (IO.READ, IO.WRITE, IO.COMPARE)
#: what a held backend keeps in flight: the reads and writes (QEMU's throttled requests);
#: Flush, Dataset Management and Write Uncorrectable complete as usual
HELD = frozenset({IO.READ, IO.WRITE, IO.COMPARE, IO.WRITE_ZEROES})
U64 = (1 << 64) - 1                   # the SMART counters are u64 in QEMU and wrap


def _nsid_status(ctrl: Controller, nsid: int) -> int | None:
    if nsid == 0 or nsid > ctrl.config.nn:          # also catches the broadcast NSID
        return S.INVALID_NSID | DNR
    if nsid not in ACTIVE_NSIDS:
        return S.INVALID_FIELD | DNR
    return None


def execute(ctrl: Controller, req: Request) -> int | None:
    sqe = req.sqe
    if sqe.opc == IO.FLUSH:
        # QEMU dispatches Flush before every other check (FUSE is never looked at), and
        # only Flush accepts the broadcast NSID.
        bad = None if sqe.nsid == BROADCAST_NSID else _nsid_status(ctrl, sqe.nsid)
        return bad if bad is not None else _in_flight(ctrl, req)
    bad = _nsid_status(ctrl, sqe.nsid)
    if bad is not None:
        return bad
    if sqe.fuse:                                      # QEMU: after the NSID, before the opcode
        return int(S.INVALID_FIELD)
    if sqe.opc not in IO_EFFECTS:
        return S.INVALID_OPCODE | DNR
    if sqe.psdt:
        return S.INVALID_FIELD | DNR
    if sqe.opc in DATA_OPS or sqe.opc == IO.WRITE_ZEROES:
        slba, nlb = sqe.lba_range
        length = nlb * ctrl.store.lba_size
        if sqe.opc in DATA_OPS and length > ctrl.page_size << ctrl.config.mdts:
            return S.INVALID_FIELD | DNR
        if slba + nlb > ctrl.store.nsze:
            return S.LBA_OUT_OF_RANGE | DNR
        if sqe.opc in DATA_OPS:
            segs = map_prp(ctrl.mem, sqe.prp1, sqe.prp2, length, ctrl.page_size)
            if isinstance(segs, int):
                # QEMU's Read/Write fail through ``status | NVME_DNR``; Compare returns the
                # mapping status as it is.
                return segs if sqe.opc == IO.COMPARE else segs | DNR
    elif sqe.opc == IO.DATASET_MANAGEMENT:
        if not sqe.cdw11 & 4:
            return int(S.SUCCESS)                     # QEMU: no AD, nothing to do, done now
        nr = (sqe.cdw10 & 0xFF) + 1
        segs = map_prp(ctrl.mem, sqe.prp1, sqe.prp2, nr * 16,
                       ctrl.page_size)                # QEMU maps the ranges at submission
        if isinstance(segs, int):
            return segs
        raw = gather(ctrl.mem, segs)
        if raw is not None and not _discards(ctrl, raw, nr):
            return int(S.SUCCESS)                     # QEMU: no range to discard, done now
    return _in_flight(ctrl, req)


def _discards(ctrl: Controller, raw: bytes, nr: int) -> list[tuple[int, int]]:
    """The (slba, nlb) ranges of a deallocate that QEMU hands to the backend: not longer
    than DMRSL and inside the namespace (an empty range is a discard of nothing)."""
    out = []
    for i in range(nr):
        nlb = int.from_bytes(raw[i * 16 + 4:i * 16 + 8], "little")
        slba = int.from_bytes(raw[i * 16 + 8:i * 16 + 16], "little")
        if nlb <= ctrl.dmrsl and slba + nlb <= ctrl.store.nsze:
            out.append((slba, nlb))
    return out


def _in_flight(ctrl: Controller, req: Request) -> None:
    req.due = ctrl.now + ctrl.config.io_latency_ns
    ctrl.inflight.append(req)
    return None


def finish(ctrl: Controller, req: Request) -> int:
    """Move the data of an in-flight command; the status it completes with."""
    sqe = req.sqe
    store = ctrl.store
    if sqe.opc == IO.FLUSH:
        return S.SUCCESS
    if sqe.opc == IO.DATASET_MANAGEMENT:
        nr = (sqe.cdw10 & 0xFF) + 1
        segs = map_prp(ctrl.mem, sqe.prp1, sqe.prp2, nr * 16, ctrl.page_size)
        raw = None if isinstance(segs, int) else gather(ctrl.mem, segs)
        if raw is None:
            return S.DATA_TRANSFER_ERROR
        if sqe.cdw11 & 4:                      # AD: deallocate; bad ranges are skipped,
            for slba, nlb in _discards(ctrl, raw, nr):      # and ranges longer than DMRSL
                store.deallocate(slba, nlb)
        return S.SUCCESS
    slba, nlb = sqe.lba_range
    if sqe.opc == IO.WRITE_ZEROES:
        store.deallocate(slba, nlb)           # QEMU does no block accounting for it
        return S.SUCCESS
    length = nlb * store.lba_size
    segs = map_prp(ctrl.mem, sqe.prp1, sqe.prp2, length, ctrl.page_size)
    if isinstance(segs, int):
        return S.DATA_TRANSFER_ERROR
    if sqe.opc == IO.WRITE:
        data = gather(ctrl.mem, segs)
        if data is None:
            return S.DATA_TRANSFER_ERROR
        store.write(slba, data)
        ctrl.host_writes = (ctrl.host_writes + 1) & U64
        ctrl.data_units_written = (ctrl.data_units_written + nlb) & U64
        return S.SUCCESS
    if sqe.opc == IO.READ:
        ctrl.host_reads = (ctrl.host_reads + 1) & U64
        ctrl.data_units_read = (ctrl.data_units_read + nlb) & U64
        ok = scatter(ctrl.mem, segs, store.read(slba, nlb))
        return S.SUCCESS if ok else S.DATA_TRANSFER_ERROR
    host = gather(ctrl.mem, segs)                # COMPARE
    if host is None:
        return S.DATA_TRANSFER_ERROR
    if host != store.read(slba, nlb):
        return S.COMPARE_FAILURE | DNR           # QEMU accounts a Compare only when it matches
    ctrl.host_reads = (ctrl.host_reads + 1) & U64
    ctrl.data_units_read = (ctrl.data_units_read + nlb) & U64
    return S.SUCCESS
