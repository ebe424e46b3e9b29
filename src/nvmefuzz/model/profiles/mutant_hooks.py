"""The broken save/load hooks the hand-written mutants of ``full`` are made of.

Three kinds of hook, all deterministic:

* ``decode_state`` hooks corrupt the plain state on its way into the destination (a field
  decoded wrongly, a list cut short or reordered, a link re-derived badly);
* ``post_load`` hooks break what the destination does after the load: some set a field, some
  wrap one of the restored controller's methods on that instance only (a kick that never
  comes, doorbells rejected by a stale "enabled" flag), because the model keeps no scheduling
  or link state a snapshot could carry wrongly;
* ``after_capture`` hooks run on the source after its state was captured (``AfterCapture``):
  the source keeps working, its writes land on the shared disk, and whatever it writes to
  guest memory is lost, as it is after stop-and-copy.

Request records in the plain state are maps ``{sqe, sqid, status, dw0, dw1, due}``; byte 0 of
``sqe`` is the opcode.
"""

from __future__ import annotations

from typing import Callable

import attrs

from nvmefuzz.errors import MigrationRefused
from nvmefuzz.model.controller import Controller
from nvmefuzz.model.profiles.base import Profile, _nothing
from nvmefuzz.model.state import Config
from nvmefuzz.protocol import regs
from nvmefuzz.protocol.spec import AsyncEventType, ErrorEventInfo, IoOpcode as IO

#: commands whose backend work changes the disk
DISK_WRITES = frozenset({IO.WRITE, IO.WRITE_ZEROES, IO.DATASET_MANAGEMENT})
AER_SLOTS = Config().aerl + 1
#: entries of the fixed-size save arrays the ``*_capped`` hooks model
SAVE_ARRAY = 2


@attrs.frozen
class AfterCapture(Profile):
    """A profile whose source keeps running after its state was captured."""

    after_capture: Callable[[Controller], None] = _nothing

    def encode(self, ctrl: Controller) -> bytes:
        blob = Profile.encode(self, ctrl)
        self.after_capture(ctrl)
        return blob


def _io_cqs(state: dict) -> list[dict]:
    return [q for q in state["cq"] if q["cqid"]]


# ---------------------------------------------------------------------- decode_state hooks
def admin_cq_phase_reset(state: dict) -> dict:
    for q in state["cq"]:
        if q["cqid"] == 0:
            q["phase"] = True
    return state


def waiting_last_dropped(state: dict) -> dict:
    for q in state["cq"]:
        q["waiting"] = q["waiting"][:-1]
    return state


def waiting_reversed(state: dict) -> dict:
    for q in state["cq"]:
        q["waiting"] = q["waiting"][::-1]
    return state


def waiting_capped(state: dict) -> dict:
    for q in state["cq"]:
        q["waiting"] = q["waiting"][:SAVE_ARRAY]
    return state


def aer_queue_capped(state: dict) -> dict:
    state["aer_queue"] = state["aer_queue"][:SAVE_ARRAY]
    return state


def inflight_capped(state: dict) -> dict:
    state["inflight"] = state["inflight"][:SAVE_ARRAY]
    return state


def aer_queue_keeps_oldest(state: dict) -> dict:
    state["aer_queue"] = state["aer_queue"][:1]
    return state


def aer_mask_notice_only(state: dict) -> dict:
    state["aer_mask"] &= 1 << AsyncEventType.NOTICE
    return state


def aer_reqs_last_dropped(state: dict) -> dict:
    state["aer_reqs"] = state["aer_reqs"][:-1]
    return state


def aer_reqs_duplicated(state: dict) -> dict:
    reqs = state["aer_reqs"]
    if reqs and len(reqs) < AER_SLOTS:
        reqs.append(dict(reqs[-1]))
    return state


def dbbuf_addresses_zero(state: dict) -> dict:
    if state["dbbuf_enabled"]:
        state["dbbuf_dbs"] = state["dbbuf_eis"] = 0
    return state


def vector_ien_swapped(state: dict) -> dict:
    for q in state["cq"]:
        q["ien"], q["vector"] = bool(q["vector"] & 1), int(q["ien"])
    return state


def inflight_reads_dropped(state: dict) -> dict:
    state["inflight"] = [r for r in state["inflight"] if r["sqe"][0] in DISK_WRITES]
    return state


def host_behavior_defined_only(state: dict) -> dict:
    hb = state["features.host_behavior"]
    state["features.host_behavior"] = hb[:4] + bytes(len(hb) - 4)
    return state


def err_rec_low_word(state: dict) -> dict:
    state["features.err_rec"] &= 0xFFFF
    return state


def sq_head_one_back(state: dict) -> dict:
    for q in state["sq"]:
        if q["sqid"]:
            q["head"] = (q["head"] - 1) % q["size"]
    return state


def wrapped_sq_clamped(state: dict) -> dict:
    """A head past the tail is taken for corrupt and clamped to the tail."""
    for q in state["sq"]:
        if q["tail"] < q["head"]:
            q["head"] = q["tail"]
    return state


def wrapped_cq_phase(state: dict) -> dict:
    """The phase tag re-derived as if the tail had never lapped the head."""
    for q in state["cq"]:
        q["phase"] = q["tail"] >= q["head"]
    return state


def sq_paired_by_id(state: dict) -> dict:
    cqids = {q["cqid"] for q in _io_cqs(state)}
    for q in state["sq"]:
        if q["sqid"] and q["sqid"] in cqids:
            q["cqid"] = q["sqid"]
    return state


# ---------------------------------------------------------------------- post_load hooks
def _lose_sq_kicks(ctrl: Controller, lost: set[int], until_rung: bool) -> None:
    """SQs (by object id) in ``lost`` are only processed when their own doorbell is rung:
    room made on their CQ no longer re-kicks them (``until_rung``: until the first ring)."""
    if not lost:
        return
    schedule, doorbell = ctrl._schedule, ctrl._doorbell
    ringing: list[int] = []

    def _schedule(kind: str, qid: int) -> None:
        if kind == "sq" and qid not in ringing and id(ctrl.sqs.get(qid)) in lost:
            return
        schedule(kind, qid)

    def _doorbell(offset: int, value: int) -> None:
        index = (offset - regs.DOORBELL_BASE) >> 2
        qid = -1 if index & 1 else index >> 1
        if until_rung and not offset & 3:
            lost.discard(id(ctrl.sqs.get(qid)))
        ringing.append(qid)
        try:
            doorbell(offset, value)
        finally:
            ringing.pop()

    ctrl._schedule, ctrl._doorbell = _schedule, _doorbell


def stalled_sq_not_rekicked(ctrl: Controller) -> None:
    _lose_sq_kicks(ctrl, {id(q) for q in ctrl.sqs.values() if q.head != q.tail}, True)


def sqs_unlinked_from_cqs(ctrl: Controller) -> None:
    _lose_sq_kicks(ctrl, {id(q) for q in ctrl.sqs.values() if q.sqid}, False)


def intms_written_to_intmc(ctrl: Controller) -> None:
    ctrl.mmio_write(regs.INTMC, 4, ctrl.intms)


def inflight_restarted(ctrl: Controller) -> None:
    for req in ctrl.inflight:
        req.due = ctrl.now + ctrl.config.io_latency_ns


def cq_pending_recounted(ctrl: Controller) -> None:
    ctrl.cq_pending = sum(1 for q in ctrl.cqs.values() if q.head != q.tail)


def timestamp_rebased(ctrl: Controller) -> None:
    ctrl.features.timestamp_set_ms = ctrl.now // 1_000_000


def used_not_recomputed(ctrl: Controller) -> None:
    for q in ctrl.sqs.values():
        q.used = 0


def enabled_flag_stale(ctrl: Controller) -> None:
    """Doorbells are refused as if the controller were disabled until CC is written again."""
    if not ctrl.cc & 1:
        return
    mmio_write = ctrl.mmio_write
    enabled = [False]

    def _mmio_write(offset: int, size: int, value: int) -> None:
        if offset == regs.CC:
            enabled[0] = bool(value & 1)
        elif offset >= regs.DOORBELL_BASE and not enabled[0]:
            ctrl._doorbell_error(ErrorEventInfo.INVALID_DOORBELL_REGISTER)
            ctrl._run()
            return
        mmio_write(offset, size, value)

    ctrl.mmio_write = _mmio_write


def cq_eventidx_at_tail(ctrl: Controller) -> None:
    if ctrl.dbbuf_enabled:
        for q in ctrl.cqs.values():
            if q.cqid:
                ctrl.mem.write_u32(ctrl.dbbuf_eis + 8 * q.cqid + 4, q.tail)


# ---------------------------------------------------------------------- pre_save hooks
def refuse_full_cq_and_stay_stopped(ctrl: Controller) -> None:
    if any(q.waiting for q in ctrl.cqs.values()):
        ctrl.stop_processing = True            # the error path never clears it
        raise MigrationRefused("no free space in CQ (not supported)")


# ---------------------------------------------------------------------- after_capture hooks
def source_lands_inflight_writes(ctrl: Controller) -> None:
    from nvmefuzz.model import nvm

    for req in ctrl.inflight:
        if req.sqe.opc in DISK_WRITES:
            nvm.finish(ctrl, req)


def source_keeps_fetching(ctrl: Controller) -> None:
    """The source drains, posts and fetches on; what it writes to guest RAM and its interrupts
    are undone (the RAM was already copied), what it writes to the shared disk stays."""
    ram = {k: bytes(v) for k, v in ctrl.mem.pages.items()}
    irqs = len(ctrl.irq_log)                     # its interrupts never reach the guest
    for _ in range(64):                          # bounded: the host never consumes here
        if not ctrl.inflight:
            break
        ctrl.drain()
        ctrl.kick()
    ctrl.mem.pages = {k: bytearray(v) for k, v in ram.items()}
    del ctrl.irq_log[irqs:]
