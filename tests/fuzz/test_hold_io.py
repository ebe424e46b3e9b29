"""``hold_io``: the backend keeps the guest's reads and writes in flight until released, and a
migration ends the hold on both sides (model target; the QEMU side is in tests/qemu)."""

from __future__ import annotations

import pytest

from nvmefuzz.errors import Divergence
from nvmefuzz.fuzz.session import Session, replay
from nvmefuzz.protocol.spec import IoOpcode as IO
from nvmefuzz.targets import TargetConfig
from nvmefuzz.targets.base import HOLD_IO
from nvmefuzz.trace.schema import PASS, Step, Trace

HOLD, RELEASE = (Step("environment", {"event": HOLD_IO, "arg": a}) for a in (1, 0))
SETUP = [Step("enable", {"asqs": 7, "acqs": 7}),
         Step("create_cq", {"qid": 1, "size": 16}),
         Step("create_sq", {"qid": 1, "cqid": 1, "size": 16})]


def io(opc: int, slba: int = 0, pattern: int = 0) -> Step:
    args = {"qid": 1, "opc": int(opc)}
    if opc not in (IO.FLUSH, IO.DATASET_MANAGEMENT):
        args |= {"slba": slba, "nlb": 1, "pattern": pattern}
    return Step("io", args)


def _posted(session: Session) -> list[int]:
    """CIDs posted on I/O CQ 1 of the migrated side, not yet consumed."""
    return [c.cid for c in _peek(session)]


def _peek(session: Session):
    from nvmefuzz.protocol.queues import CQE
    return [CQE.decode(r) for r in session.mig_host.peek(1)]


def _peek_twin(session: Session):
    from nvmefuzz.protocol.queues import CQE
    return [CQE.decode(r) for r in session.twin_host.peek(1)]


def test_held_reads_and_writes_stay_in_flight_and_the_rest_completes():
    s = Session(TargetConfig(profile="full"))
    try:
        for step in SETUP + [HOLD, io(IO.WRITE, 0, 1), io(IO.READ, 0), io(IO.COMPARE, 0, 1),
                             io(IO.WRITE_ZEROES, 2), io(IO.FLUSH),
                             io(IO.DATASET_MANAGEMENT), Step("advance", {"ns": 10 ** 9})]:
            s.apply(step)
        ctrl = s.mig.ctrl
        assert sorted(r.sqe.opc for r in ctrl.inflight) == sorted(
            [IO.WRITE, IO.READ, IO.COMPARE, IO.WRITE_ZEROES])
        assert _posted(s) == [4, 5]                       # Flush and Dataset Management
        s.apply(RELEASE)
        s.apply(Step("advance", {"ns": 100_000}))
        assert not ctrl.inflight and sorted(_posted(s)) == [0, 1, 2, 3, 4, 5]
    finally:
        s.close()


@pytest.mark.parametrize("profile", ["full", "nvmecs-v0"])
def test_a_migration_ends_the_hold_on_both_sides(profile):
    """The twin is released at the migration, the destination starts unheld: both complete
    the held commands, so a design that keeps them loses nothing."""
    steps = SETUP + [HOLD, io(IO.WRITE, 3, 7), io(IO.READ, 3), Step("migrate", {}),
                     Step("advance", {"ns": 100_000}), Step("consume", {"qid": 1}),
                     io(IO.WRITE, 4, 8), Step("advance", {"ns": 100_000}),
                     Step("consume", {"qid": 1})]
    trace = Trace(target=TargetConfig(profile=profile).to_plain(), campaign="hand", seed=0,
                  steps=tuple(steps))
    seen: list = []
    verdict, _ = replay(trace, on_step=lambda i, st, a, b: seen.append((i, a, b)))
    assert verdict.kind == PASS
    consumed = [label for label, _ in seen[8][1] if label.startswith("cqe/")]
    assert consumed == ["cqe/io/WRITE", "cqe/io/READ"]    # held before, done after
    assert [label for label, _ in seen[11][2] if label.startswith("cqe/")] == ["cqe/io/WRITE"]


def test_without_the_twin_released_a_migration_would_look_like_a_loss(monkeypatch):
    """The release at a migration is what keeps the comparison fair: a twin left holding
    shows no completion where the unheld destination shows two."""
    from nvmefuzz.targets.model import ModelTarget
    real = ModelTarget.environment
    monkeypatch.setattr(ModelTarget, "environment",
                        lambda self, event, arg: True if (event, arg) == (HOLD_IO, 0)
                        else real(self, event, arg))
    steps = SETUP + [HOLD, io(IO.WRITE, 3, 7), Step("migrate", {}),
                     Step("advance", {"ns": 100_000})]
    trace = Trace(target=TargetConfig(profile="full").to_plain(), campaign="hand", seed=0,
                  steps=tuple(steps))
    verdict, _ = replay(trace)
    assert verdict.kind == "divergence" and verdict.step == len(steps) - 1


def test_qemu_11_1_loses_the_completion_its_save_posts_after_the_final_ram_pass():
    """As QEMU 11.1.3 does (docs/qemu-target.md): vm_stop's drain posts the held Write's
    completion while the Read is still in flight; the Read's completion is posted by pre_save,
    after guest RAM went. The destination's CQ tail counts it, its memory never gets it: the
    guest's Read never completes and a later completion lands behind the hole."""
    s = Session(TargetConfig(profile="qemu-11.1"))
    try:
        for step in SETUP + [HOLD, io(IO.WRITE, 3, 7), io(IO.READ, 3)]:
            s.apply(step)
        with pytest.raises(Divergence) as exc:
            s.apply(Step("migrate", {}))
        # its MSI-X message went after RAM too: the twin signalled twice, the destination once
        assert exc.value.signature == "divergence:irq/events"
        assert [c.cid for c in _peek_twin(s)] == [0, 1]
        assert _posted(s) == [0]                          # the Write, posted in time
        cq = s.mig.ctrl.cqs[1]
        assert cq.tail == 2 and not cq.waiting            # the saved tail counts the Read
        assert s.mig.ctrl.store.read(3, 1) == s.twin.ctrl.store.read(3, 1)  # the Write landed
    finally:
        s.close()
