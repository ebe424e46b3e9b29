"""Shadow doorbells turned on while a queue is in use, or a queue re-created under them.

NVMe Base, Annex B (shadow doorbells): the host rings the MMIO doorbell only when the new
shadow value passes the EventIdx; the controller *may* read the shadow buffer at any time.
A zero EventIdx that the controller never wrote, next to a queue whose tail is already past
zero (or a stale EventIdx left by a deleted queue), lets the host skip a doorbell and leaves
the command's fetch to the controller's discretion: a migrated controller that rereads every
shadow tail on load fetches it, a never-migrated one does not.  So the host starts each slot
of the EventIdx page at the queue's current tail / head (Doorbell Buffer Config) or at zero
(queue creation), and its next update rings.  These traces diverged before that (QEMU 11.1.3,
and the model with QEMU's post-load kick, both fetched on the destination only).
"""

from __future__ import annotations

import pytest

from nvmefuzz.fuzz.session import Session, replay
from nvmefuzz.targets.base import TargetConfig
from nvmefuzz.trace.schema import PASS, Step, Trace

ON = [Step("enable", {"asqs": 7, "acqs": 7}),
      Step("create_cq", {"qid": 1, "size": 4, "ien": 0, "iv": 0}),
      Step("create_sq", {"qid": 1, "cqid": 1, "size": 3})]
WRITE = Step("io", {"qid": 1, "opc": 1, "slba": 0, "nlb": 1, "pattern": 0})
#: a queue already in use when shadow doorbells go on
#: (each migrates with the writes done: the model's ``qemu-11.1`` loses a completion in flight)
IN_USE = ON + [WRITE, Step("dbbuf", {}), WRITE, Step("advance", {"ns": 100_000}),
               Step("migrate", {}), Step("advance", {"ns": 100_000}),
               Step("consume", {"qid": 1})]
#: a queue re-created while shadow doorbells are on (its slot holds the old queue's EventIdx)
RECREATED = ON + [Step("dbbuf", {}), WRITE, WRITE, Step("advance", {"ns": 100_000}),
                  Step("consume", {"qid": 1}), Step("delete_sq", {"qid": 1}),
                  Step("create_sq", {"qid": 1, "cqid": 1, "size": 3}), WRITE,
                  Step("advance", {"ns": 100_000}), Step("migrate", {}),
                  Step("advance", {"ns": 100_000}),
                  Step("consume", {"qid": 1})]


def _trace(steps: list[Step], **cfg) -> Trace:
    return Trace(target=TargetConfig(**cfg).to_plain(), campaign="test", seed=0,
                 steps=tuple(steps))


@pytest.mark.parametrize("steps", [IN_USE, RECREATED], ids=["in-use", "recreated"])
@pytest.mark.parametrize("profile", ["full", "qemu-11.1"])
def test_model_twin_and_migrated_agree(steps, profile):
    verdict, _ = replay(_trace(steps, kind="model", profile=profile))
    assert verdict.kind == PASS, verdict.detail


def test_first_update_after_dbbuf_rings_the_mmio_doorbell():
    s = Session(TargetConfig(kind="model", profile="full"))
    try:
        for step in ON + [WRITE, Step("dbbuf", {})]:
            s.apply(step)
        ctrl = s.twin.ctrl
        before = ctrl.sqs[1].tail
        s.apply(WRITE)                       # tail 1 -> 2, EventIdx still the host's 0
        assert ctrl.sqs[1].tail == before + 1, "the controller saw the doorbell"
        s.apply(Step("advance", {"ns": 100_000}))
        s.apply(Step("consume", {"qid": 1}))   # the CQ head moves past its EventIdx too
        assert s.twin.ctrl.cqs[1].head == 2
    finally:
        s.close()


@pytest.mark.parametrize("steps", [IN_USE, RECREATED], ids=["in-use", "recreated"])
def test_qemu_twin_and_migrated_agree(qemu_binary, steps):
    verdict, stats = replay(_trace(steps, kind="qemu"))
    assert verdict.kind == PASS, verdict.detail
    assert stats["migrations"] == 1
