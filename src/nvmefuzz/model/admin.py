"""Admin command set: queue management, Identify, logs, features, Abort, AER, dbbuf.

Each handler takes the controller and the fetched request and returns the completion status,
or None when the command does not complete now (an outstanding AER).  Dispatch is the table
``HANDLERS``; an opcode missing from it is Invalid Opcode, as in QEMU (which does not implement
Keep Alive, firmware or namespace management on a single-namespace controller).  Check order
inside each handler follows QEMU's, because the first failing check decides the status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nvmefuzz.model import events, identify, interrupts
from nvmefuzz.model.memory import gather, map_prp, scatter
from nvmefuzz.model.state import CompletionQueue, SubmissionQueue
from nvmefuzz.protocol import regs
from nvmefuzz.protocol.spec import (
    DNR, LOG_CLEARS_EVENT_TYPE, AdminOpcode as A, LogId,
    Status as S,
)

if TYPE_CHECKING:
    from nvmefuzz.model.controller import Controller
    from nvmefuzz.model.state import Request

FUSE_ERROR = int(S.INVALID_FIELD)


def execute(ctrl: Controller, req: Request) -> int | None:
    sqe = req.sqe
    handler = HANDLERS.get(sqe.opc)       # QEMU nvme_admin_cmd: opcode, then PSDT, then FUSE
    if handler is None:
        return S.INVALID_OPCODE | DNR
    if sqe.psdt:
        return S.INVALID_FIELD | DNR
    if sqe.fuse:
        return FUSE_ERROR
    return handler(ctrl, req)


# ---------------------------------------------------------------------- data transfer
def c2h(ctrl: Controller, req: Request, data: bytes) -> int:
    """Copy controller data into the command's PRPs."""
    segs = map_prp(ctrl.mem, req.sqe.prp1, req.sqe.prp2, len(data), ctrl.page_size)
    if isinstance(segs, int):
        return segs
    return S.SUCCESS if scatter(ctrl.mem, segs, data) else S.DATA_TRANSFER_ERROR


def h2c(ctrl: Controller, req: Request, length: int) -> bytes | int:
    """Read ``length`` bytes of host data from the command's PRPs."""
    segs = map_prp(ctrl.mem, req.sqe.prp1, req.sqe.prp2, length, ctrl.page_size)
    if isinstance(segs, int):
        return segs
    data = gather(ctrl.mem, segs)
    return S.DATA_TRANSFER_ERROR if data is None else data


# ---------------------------------------------------------------------- queues
def create_cq(ctrl: Controller, req: Request) -> int:
    sqe = req.sqe
    qid, qsize = sqe.cdw10 & 0xFFFF, sqe.cdw10 >> 16
    pc, ien, iv = sqe.cdw11 & 1, (sqe.cdw11 >> 1) & 1, sqe.cdw11 >> 16
    if regs.field("CC", "IOSQES", ctrl.cc) != 6 or regs.field("CC", "IOCQES", ctrl.cc) != 4:
        return S.INVALID_QSIZE | DNR
    if qid == 0 or qid > ctrl.config.max_ioqpairs or qid in ctrl.cqs:
        return S.INVALID_QID | DNR
    if qsize == 0 or qsize > ctrl.config.mqes:
        return S.INVALID_QSIZE | DNR
    if sqe.prp1 & (ctrl.page_size - 1):
        return S.INVALID_PRP_OFFSET | DNR
    if (not ctrl.config.msix and iv) or iv >= ctrl.config.msix_qsize:
        return S.INVALID_IRQ_VECTOR | DNR
    if not pc:
        return S.INVALID_FIELD | DNR
    ctrl.cqs[qid] = CompletionQueue(qid, sqe.prp1, qsize + 1, ien=bool(ien), vector=iv)
    ctrl.qs_created = True
    return S.SUCCESS


def create_sq(ctrl: Controller, req: Request) -> int:
    sqe = req.sqe
    qid, qsize = sqe.cdw10 & 0xFFFF, sqe.cdw10 >> 16
    pc, cqid = sqe.cdw11 & 1, sqe.cdw11 >> 16
    if cqid == 0 or cqid not in ctrl.cqs:
        return S.CQ_INVALID | DNR
    if qid == 0 or qid > ctrl.config.max_ioqpairs or qid in ctrl.sqs:
        return S.INVALID_QID | DNR
    if qsize == 0 or qsize > ctrl.config.mqes:
        return S.INVALID_QSIZE | DNR
    if sqe.prp1 & (ctrl.page_size - 1):
        return S.INVALID_PRP_OFFSET | DNR
    if not pc:
        return S.INVALID_FIELD | DNR
    ctrl.sqs[qid] = SubmissionQueue(qid, cqid, sqe.prp1, qsize + 1)   # qs_created: CQ only
    return S.SUCCESS


def delete_sq(ctrl: Controller, req: Request) -> int:
    from nvmefuzz.model import nvm

    qid = req.sqe.cdw10 & 0xFFFF
    if qid == 0 or qid not in ctrl.sqs:
        return S.INVALID_QID | DNR
    sq = ctrl.sqs[qid]
    cq = ctrl.cqs[sq.cqid]
    for r in [r for r in ctrl.inflight if r.sqid == qid]:
        ctrl.inflight.remove(r)
        nvm.finish(ctrl, r)                  # a cancelled AIO still lands
        r.status, r.due = int(S.ABORTED_SQ_DELETION), None
        ctrl.complete(r)
    ctrl._post_cqes(cq)
    cq.waiting = [r for r in cq.waiting if r.sqid != qid]
    del ctrl.sqs[qid]
    return S.SUCCESS


def delete_cq(ctrl: Controller, req: Request) -> int:
    qid = req.sqe.cdw10 & 0xFFFF
    if qid == 0 or qid not in ctrl.cqs:
        return S.CQ_INVALID | DNR
    if any(sq.cqid == qid for sq in ctrl.sqs.values()):
        return int(S.INVALID_QUEUE_DELETION)
    interrupts.cq_deleted(ctrl, ctrl.cqs.pop(qid))
    return S.SUCCESS


# ---------------------------------------------------------------------- identify and logs
def identify_cmd(ctrl: Controller, req: Request) -> int:
    data = identify.identify(ctrl, req.sqe)
    return data if isinstance(data, int) else c2h(ctrl, req, data)


def get_log_page(ctrl: Controller, req: Request) -> int:
    sqe = req.sqe
    lid, rae = sqe.cdw10 & 0xFF, (sqe.cdw10 >> 15) & 1
    length = ((((sqe.cdw11 & 0xFFFF) << 16) | (sqe.cdw10 >> 16)) + 1) * 4
    offset = sqe.lpo
    if offset & 3 or length > (ctrl.page_size << ctrl.config.mdts):
        return S.INVALID_FIELD | DNR
    log = identify.log_page(ctrl, lid, sqe.nsid)
    if isinstance(log, int):
        return log
    if offset >= len(log):
        return S.INVALID_FIELD | DNR
    if lid == LogId.CHANGED_NS_LIST:
        ctrl.changed_nsids = []               # QEMU: a destructive read, even with RAE=1
    if not rae and lid in LOG_CLEARS_EVENT_TYPE:
        events.clear(ctrl, LOG_CLEARS_EVENT_TYPE[lid])
    start = 0 if lid == LogId.ERROR_INFORMATION else offset   # QEMU ignores it there
    return c2h(ctrl, req, log[start:start + min(len(log) - offset, length)])


# ---------------------------------------------------------------------- features
def set_features(ctrl: Controller, req: Request) -> int:
    from nvmefuzz.model import features

    return features.set_feature(ctrl, req)


def get_features(ctrl: Controller, req: Request) -> int:
    from nvmefuzz.model import features

    return features.get_feature(ctrl, req)


# ---------------------------------------------------------------------- the rest
def abort(ctrl: Controller, req: Request) -> int:
    sqid, cid = req.sqe.cdw10 & 0xFFFF, req.sqe.cdw10 >> 16
    req.dw0 = 1                            # QEMU sets "not aborted" before checking SQID
    if sqid not in ctrl.sqs:
        return S.INVALID_FIELD | DNR
    if sqid == 0:
        for aer in ctrl.aer_reqs:
            if aer.sqe.cid == cid:
                ctrl.aer_reqs.remove(aer)
                aer.status = int(S.ABORT_REQUESTED)
                ctrl.complete(aer)
                req.dw0 = 0
                break
    return S.SUCCESS


def async_event_request(ctrl: Controller, req: Request) -> int | None:
    return events.request(ctrl, req)


def doorbell_buffer_config(ctrl: Controller, req: Request) -> int:
    dbs, eis = req.sqe.prp1, req.sqe.prp2
    if dbs & (ctrl.page_size - 1) or eis & (ctrl.page_size - 1):
        return S.INVALID_FIELD | DNR
    ctrl.dbbuf_dbs, ctrl.dbbuf_eis, ctrl.dbbuf_enabled = dbs, eis, True
    for qid, sq in ctrl.sqs.items():
        ctrl.mem.write_u32(dbs + 8 * qid, sq.tail)
    for qid, cq in ctrl.cqs.items():
        ctrl.mem.write_u32(dbs + 8 * qid + 4, cq.head)
    return S.SUCCESS


HANDLERS = {
    A.DELETE_IO_SQ: delete_sq,
    A.CREATE_IO_SQ: create_sq,
    A.GET_LOG_PAGE: get_log_page,
    A.DELETE_IO_CQ: delete_cq,
    A.CREATE_IO_CQ: create_cq,
    A.IDENTIFY: identify_cmd,
    A.ABORT: abort,
    A.SET_FEATURES: set_features,
    A.GET_FEATURES: get_features,
    A.ASYNC_EVENT_REQUEST: async_event_request,
    A.DOORBELL_BUFFER_CONFIG: doorbell_buffer_config,
}
