"""``qemu-11.1``: what upstream QEMU 11.1's hw/nvme saves, and how its hooks behave.

Source: the merged series (pull-nvme-20260707, commit 9d378cab "hw/nvme: add basic live
migration support"), VMState "nvme" version 1; see the reference notes on QEMU migration,
sections 1.1-1.6.

* saved: the BAR register image, page size, qs_created, irq_status, cq_pending, the INTx
  level (PCI device state), timestamps, temperature and critical warning, shadow-doorbell
  configuration, the AER mask, outstanding AERs and queued events, every SQ and CQ including
  a full CQ's waiting completions, and the features temp_thresh_hi/low, async_config, host
  behavior support, write atomicity (dn), and through the namespace's VMState the volatile
  write cache and error recovery settings.
* not saved: the SMART I/O counters, the changed-namespace list; in-flight I/O never exists
  at save time because pre_save drains it.
* pre_save: cancel SQ bottom halves, drain all AIO (completions post while draining), keep
  what a full CQ cannot take.  After the cancel the model fetches no SQE, also not when a
  drained completion frees a request of an SQ whose pool was used up: those SQEs stay in
  guest memory under the saved tail for the destination to fetch.  (In QEMU such a
  completion re-arms the SQ bottom half, and a command fetched inside the drain would be in
  flight at save time, which pre_save asserts against; the reference notes' open race, not
  modelled: the model must not report a silent loss QEMU's code cannot produce.)  post_load: rebuild CQs then SQs, schedule the CQ bottom half
  of every CQ that got waiting completions back, then schedule every SQ.
"""

from nvmefuzz.model.controller import Controller
from nvmefuzz.model.profiles.base import ALL_FIELDS, Profile

NOT_SAVED = frozenset({
    "inflight", "data_units_read", "data_units_written", "host_reads", "host_writes",
    "changed_nsids",
})


def pre_save(ctrl: Controller) -> None:
    ctrl.quiesce()                        # qemu_bh_cancel(sq->bh), then nvme_ns_drain


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
)
