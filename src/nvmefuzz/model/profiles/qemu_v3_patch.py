"""``qemu-v3-patch``: the v3 series "hw/nvme: add basic live migration support" (2026-03-06).

Source: ``shared/seeds/000_*.txt`` (PATCH v3 5/6).  Differences from what was merged:

* saved: the BAR image, controller scalars, AER state, SQs and CQs, but no feature values
  (temperature thresholds, async event config, host behavior, write atomicity) and no
  namespace state (volatile write cache, error recovery): those come back at power-on values.
* a CQ's waiting completions are never saved: if any CQ is full with completions waiting
  after the drain, pre_save fails with "no free space in CQ (not supported)".
* pre_save sets ``stop_processing_sq`` and cancels the SQ bottom halves before draining; the
  error path clears the flag but does not schedule the SQ bottom halves again, so an SQ that
  was kicked during the drain stays idle until the host rings its doorbell again.
* post_load schedules SQ processing only.
"""

from nvmefuzz.errors import MigrationRefused
from nvmefuzz.model.controller import Controller
from nvmefuzz.model.profiles.base import ALL_FIELDS, Profile
from nvmefuzz.model.profiles.qemu_11_1 import NOT_SAVED as NOT_SAVED_11_1

NOT_SAVED = NOT_SAVED_11_1 | {
    "cq.waiting", "features.temp_thresh_hi", "features.temp_thresh_lo",
    "features.async_config", "features.err_rec", "features.write_cache",
    "features.write_atomicity_dn", "features.host_behavior",
}

REFUSAL = "no free space in CQ (not supported)"


def pre_save(ctrl: Controller) -> None:
    ctrl.stop_processing = True
    ctrl.drain()
    if any(cq.waiting for cq in ctrl.cqs.values()):
        ctrl.stop_processing = False          # and the cancelled SQ BHs stay cancelled
        raise MigrationRefused(REFUSAL)


PROFILE = Profile(
    name="qemu-v3-patch",
    description="the v3 patch: no features saved, refuses a full CQ, error path stalls SQs",
    source="shared/seeds/000 ([PATCH v3 5/6] hw/nvme: add basic live migration support)",
    saves=ALL_FIELDS - NOT_SAVED,
    pre_save=pre_save,
    drains_inflight=True,
)
