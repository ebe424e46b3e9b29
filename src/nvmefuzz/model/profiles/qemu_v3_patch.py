"""``qemu-v3-patch``: the v3 series "hw/nvme: add basic live migration support" (2026-03-06).

Source: ``shared/seeds/000_*.txt`` (PATCH v3 5/6).  Differences from what was merged:

* saved: the BAR image, controller scalars, AER state, SQs and CQs, but no feature values
  (temperature thresholds, async event config, host behavior, write atomicity) and no
  namespace state (volatile write cache, error recovery): those come back at power-on values.
* where the save sits: as in QEMU 11.1 (``qemu_11_1.vm_stop``, ``ram_first``), the VM stop
  drains in-flight I/O and leaves the completion of the last request to finish waiting in its
  CQ's ``req_list``, its bottom half scheduled; nothing runs it before ``pre_save``.
* pre_save sets ``stop_processing_sq``, cancels the SQ bottom halves and drains (nothing is
  left in flight after the VM stop), then waits for every CQ's ``req_list`` to empty, in CQ
  order.  It posts nothing itself, and the CQ bottom halves that would cannot run while it
  holds the BQL.  The first CQ with waiting completions decides:

  - full: pre_save fails with "no free space in CQ (not supported)";
  - not full: it spins forever (``MigrationHung``).  So does any migration that meets I/O in
    flight at the VM stop, unless a full CQ with waiting completions comes first.

  A CQ's waiting completions are never saved.
* the error path clears ``stop_processing_sq`` but does not schedule the SQ bottom halves
  again; the VM runs on and its CQ bottom halves post.  An SQ whose bottom half was cancelled
  stays idle until the host rings its doorbell again.  In the model that happens when
  ``pre_save`` itself drains I/O (a save without the VM stop); in QEMU, also when the VM
  stop's last poll left an SQ bottom half scheduled, which the model does not reproduce.
* a successful save leaves ``stop_processing_sq`` set on the source.
* post_load schedules SQ processing only.
"""

from nvmefuzz.errors import MigrationHung, MigrationRefused
from nvmefuzz.model.controller import Controller
from nvmefuzz.model.profiles.base import ALL_FIELDS, Profile
from nvmefuzz.model.profiles.qemu_11_1 import NOT_SAVED as NOT_SAVED_11_1, vm_stop

NOT_SAVED = NOT_SAVED_11_1 | {
    "cq.waiting", "features.temp_thresh_hi", "features.temp_thresh_lo",
    "features.async_config", "features.err_rec", "features.write_cache",
    "features.write_atomicity_dn", "features.host_behavior",
}

REFUSAL = "no free space in CQ (not supported)"
HANG = ("pre_save spins on cq[{cqid}].req_list: {n} completion(s) wait in a CQ that is not "
        "full and nothing posts them while pre_save holds the BQL")


def pre_save(ctrl: Controller) -> None:
    ctrl.stop_processing = True               # stop_processing_sq
    ctrl.cancel("sq")                         # qemu_bh_cancel(sq->bh)
    vm_stop(ctrl)                             # nvme_ns_drain: the same polling as the VM stop
    for cqid in sorted(ctrl.cqs):
        cq = ctrl.cqs[cqid]
        if not cq.waiting:
            continue
        if not cq.full():
            raise MigrationHung(HANG.format(cqid=cqid, n=len(cq.waiting)))
        ctrl.cancel("sq")
        ctrl.stop_processing = False          # and the cancelled SQ BHs stay cancelled
        ctrl._run()                           # the VM runs on: CQ bottom halves post
        raise MigrationRefused(REFUSAL)


PROFILE = Profile(
    name="qemu-v3-patch",
    description="the v3 patch: no features saved, refuses a full CQ, hangs on I/O in flight",
    source="shared/seeds/000 ([PATCH v3 5/6] hw/nvme: add basic live migration support)",
    saves=ALL_FIELDS - NOT_SAVED,
    pre_save=pre_save,
    drains_inflight=True,
    stop=vm_stop,
    ram_first=True,
)
