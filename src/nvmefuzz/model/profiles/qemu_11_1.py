"""``qemu-11.1``: what upstream QEMU 11.1's hw/nvme saves, and how its hooks behave.

Source: the merged series (pull-nvme-20260707, commit 9d378cab "hw/nvme: add basic live
migration support"), VMState "nvme" version 1; see the reference notes on QEMU migration,
sections 1.1-1.6.

* saved: the BAR register image, page size, qs_created, irq_status, cq_pending, the INTx
  level (PCI device state), timestamps, temperature and critical warning, shadow-doorbell
  configuration, the AER mask, outstanding AERs and queued events, every SQ and CQ including
  a full CQ's waiting completions (those pre_save lets through), and the features
  temp_thresh_hi/low, async_config, host behavior support, write atomicity (dn), and through
  the namespace's VMState the volatile write cache and error recovery settings.
* not saved: the SMART I/O counters, the changed-namespace list, and the DSM range size
  limit (``n->dmrsl``, computed when the controller starts; post_load does not compute it, so
  the destination reports DMRSL = DMSL = 0 and deallocates nothing until the guest resets
  it); in-flight I/O never exists at save time because pre_save drains it.
* where the save sits (measured on QEMU 11.1.3, docs/qemu-target.md): ``vm_stop`` drains the
  block layer before the final RAM pass.  While requests remain in flight the main loop runs
  the CQ bottom halves, so completions post and a freed request of a used-up pool re-arms its
  SQ, which fetches more; the completion of the last request to finish waits for
  ``pre_save`` (``stop``).  Device state is saved after RAM, so what ``pre_save`` writes to
  guest memory, that completion's CQE first, never reaches the destination, while the saved
  CQ tail counts it (``ram_first``): the guest's command never completes and the CQ has a
  hole.  The model completes the drained requests one by one in due order, the one schedule
  of QEMU's that the traces show.
* pre_save: cancel SQ bottom halves, drain (nothing is left in flight), post what fits.  A
  CQ's waiting completion may be carried only if it holds no namespace and no AIO: one of an
  I/O command whose namespace was found refuses the save with QEMU's message, "req->aiocb !=
  NULL" for a Flush and "req->ns != NULL" for the rest (a full CQ at save: measured per
  opcode on QEMU 11.1.3).  Admin completions are carried.  After a refusal the VM runs on and
  every SQ is processed again.  A completion posted by ``pre_save`` into a used-up request
  pool re-arms its SQ, which on QEMU then runs on the source after the capture (the reference
  notes' race); the model does not run it there: the destination fetches those SQEs again.
* post_load: rebuild CQs then SQs, schedule the CQ bottom half of every CQ that got waiting
  completions back, then schedule every SQ.
"""

from nvmefuzz.errors import MigrationRefused
from nvmefuzz.model.controller import Controller
from nvmefuzz.model.identify import ACTIVE_NSIDS
from nvmefuzz.model.profiles.base import ALL_FIELDS, Profile
from nvmefuzz.protocol.spec import BROADCAST_NSID, IoOpcode

NOT_SAVED = frozenset({
    "inflight", "data_units_read", "data_units_written", "host_reads", "host_writes",
    "changed_nsids", "dmrsl",
})


REFUSAL = "pre-save for nvme failed: "
REFUSE_NS, REFUSE_AIOCB = REFUSAL + "req->ns != NULL", REFUSAL + "req->aiocb != NULL"


def vm_stop(ctrl: Controller) -> None:
    """Drain before the final RAM pass: bottom halves run between completions while I/O
    remains in flight; the last completion's CQ bottom half is left scheduled."""
    while ctrl.inflight:
        req = min(ctrl.inflight, key=lambda r: r.due)
        ctrl.inflight.remove(req)
        ctrl.finish_io(req)
        if ctrl.inflight:
            ctrl._run()


def _why_not_carried(req) -> str | None:
    """Why pre_save cannot carry this waiting completion (QEMU's message), or None."""
    sqe = req.sqe
    if req.sqid == 0:
        return None
    if sqe.opc == IoOpcode.FLUSH:
        ok = sqe.nsid != BROADCAST_NSID and sqe.nsid not in ACTIVE_NSIDS
        return None if ok else REFUSE_AIOCB
    return REFUSE_NS if sqe.nsid in ACTIVE_NSIDS else None


def pre_save(ctrl: Controller) -> None:
    ctrl.quiesce()                        # qemu_bh_cancel(sq->bh), nvme_ns_drain, post
    for cq in ctrl.cqs.values():
        for req in cq.waiting:
            why = _why_not_carried(req)
            if why is not None:
                ctrl.kick()               # the VM runs on; its SQs are processed again
                raise MigrationRefused(why)


def post_load(ctrl: Controller) -> None:
    for cq in ctrl.cqs.values():
        if cq.waiting:
            ctrl._schedule("cq", cq.cqid)
    ctrl.kick()


PROFILE = Profile(
    name="qemu-11.1",
    description="upstream QEMU 11.1 hw/nvme VMState 'nvme' v1 and its pre_save/post_load",
    source="QEMU commit 9d378cab (pull-nvme-20260707); reference/qemu-migration.md s1",
    saves=ALL_FIELDS - NOT_SAVED,
    pre_save=pre_save,
    post_load=post_load,
    drains_inflight=True,
    stop=vm_stop,
    ram_first=True,
)
