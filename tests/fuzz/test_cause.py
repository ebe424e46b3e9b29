"""Root causes: which lost state a finding needs, found by repairing migrations on the model."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from nvmefuzz.errors import TargetUnavailable
from nvmefuzz.fuzz.cause import (NOTHING_LOST, OUTSIDE, PASSES, QEMU_PROFILE, STATE,
                                 UNEXPLAINED, attribute, explained, lost_lines, lost_values,
                                 on_model, reproduces, shows)
from nvmefuzz.fuzz.session import Session, lost_paths, replay
from nvmefuzz.protocol.spec import AdminOpcode as A
from nvmefuzz.targets import TargetConfig
from nvmefuzz.targets.model import RAM_PASS
from nvmefuzz.trace import corpus
from nvmefuzz.trace.schema import PASS, Step, Verdict

from tests.fuzz.test_session import ENABLE, IDENTIFY, read, trace, write

SET_ERR_REC = Step("admin", {"opc": int(A.SET_FEATURES), "cdw10": 0x05, "cdw11": 0x10,
                                   "nsid": 1})
GET_ERR_REC = Step("admin", {"opc": int(A.GET_FEATURES), "cdw10": 0x05, "nsid": 1})
SET_TEMP = Step("admin", {"opc": int(A.SET_FEATURES), "cdw10": 0x04, "cdw11": 0x150})
ERR_REC = [ENABLE, SET_ERR_REC, SET_TEMP, Step("migrate"), GET_ERR_REC]
CORPUS = Path(__file__).resolve().parents[2] / "corpus"


def in_flight(ien: int) -> list[Step]:
    """A write in flight at the migration (QEMU 11.1 loses its completion)."""
    return [ENABLE, Step("create_cq", {"qid": 1, "size": 2, "ien": ien, "iv": 0}),
            Step("create_sq", {"qid": 1, "cqid": 1, "size": 2}), write(1, 0, 0),
            Step("migrate")]


def test_a_field_mutant_is_explained_by_its_field():
    cause = attribute(trace("full-without-features.err_rec", ERR_REC))
    assert (cause.kind, cause.paths) == (STATE, ("features.err_rec",))
    assert cause.key == "lost features.err_rec"
    assert "features.err_rec" in cause.describe()


def test_the_values_a_cause_lost_are_named_per_queue_and_migration():
    """What a bug report needs beside ``lost cq.tail``: which queue, and the values."""
    cause = attribute(trace("full-without-features.err_rec", ERR_REC))
    assert lost_values(trace("full-without-features.err_rec", ERR_REC), cause.paths) == [
        (3, "features.err_rec", 0x10, 0)]
    stored = corpus.load(CORPUS / "nvmecs-v0" /
                         "divergence-cqe-admin-abort-missing-ae0261168a.cbor")
    cause = attribute(stored)
    assert cause.paths == ("features.async_config", "cq.tail")
    seen = lost_values(stored, cause.paths)
    migrations = [i for i, s in enumerate(stored.steps) if s.action == "migrate"]
    assert {i for i, *_ in seen} <= set(migrations) and seen
    assert {where for _, where, *_ in seen} == {"features.async_config", "cq[0].tail"}
    assert all(twin != migrated and migrated == 0 for *_, twin, migrated in seen)
    assert lost_lines(stored, cause)[0].startswith(f"migrate at step {seen[0][0]}: ")
    assert lost_lines(stored, attrs.evolve(cause, kind=OUTSIDE)) == []     # not why


def test_the_cause_is_the_lost_state_the_finding_needs_not_all_it_lost():
    t = trace("qemu-v3-patch", ERR_REC)
    lost = lost_paths(replay(t)[1])
    assert {"features.err_rec", "features.temp_thresh_hi"} <= lost   # it lost more
    cause = attribute(t)
    assert (cause.kind, cause.paths) == (STATE, ("features.err_rec",))
    assert cause.replays == 2 + len(lost) + 1      # one per path, and the RAM pass (ram_first)


def test_two_faces_of_one_loss_share_one_cause():
    """QEMU 11.1 writes an in-flight completion after the final RAM pass: with interrupts on,
    the guest misses the interrupt first, with them off the CQE."""
    with_irq = attribute(trace("qemu-11.1", in_flight(ien=1)))
    without = attribute(trace("qemu-11.1", in_flight(ien=0)))
    assert with_irq.signature == "divergence:irq/missing"
    assert without.signature == "divergence:posted/io/missing"
    assert with_irq.kind == without.kind == STATE
    assert with_irq.paths == without.paths == (RAM_PASS,)
    assert with_irq.key == without.key


def test_a_qemu_trace_is_explained_on_the_model_under_the_qemu_profile():
    """As the qemu target sees it: a command completes within its step unless the backend
    holds it, so the write is in flight at the migration only with the hold."""
    steps = in_flight(ien=0)
    held = (*steps[:3], Step("environment", {"event": "hold_io", "arg": 1}), *steps[3:])
    t = trace("full", held)
    qemu = attrs.evolve(t, target={**t.target, "kind": "qemu"},
                        verdict=Verdict("divergence", "divergence:posted/io/missing", step=5))
    cause = attribute(qemu)                       # no QEMU needed: only the model replays
    assert cause.profile == QEMU_PROFILE
    assert (cause.kind, cause.paths) == (STATE, (RAM_PASS,))
    unheld = attrs.evolve(qemu, steps=tuple(steps), verdict=Verdict(PASS))
    assert attribute(unheld).kind == PASSES


HOLD = Step("environment", {"event": "hold_io", "arg": 1})
#: two Reads held in flight at the migration on a CQ with interrupts on: QEMU 11.1 loses
#: the completions it posts while saving, one or both of them by when its backend finishes
TWO_READS = [ENABLE, Step("create_cq", {"qid": 1, "size": 4, "ien": 1, "iv": 0}),
             Step("create_sq", {"qid": 1, "cqid": 1, "size": 4}), HOLD,
             read(1, 16375, 7), read(1, 0, 2), Step("migrate")]


def as_qemu(steps, verdict: Verdict):
    t = trace("full", steps)
    return attrs.evolve(t, target={**t.target, "kind": "qemu"}, verdict=verdict)


def test_the_model_reproduces_a_qemu_step_that_differed_in_the_same_observation():
    """On QEMU the step lost both completions (the interrupt differs first, then the CQ); the
    model under qemu-11.1 loses one (its CQ differs, its interrupt does not): the same loss,
    timed another way.  The step's other differences (``Verdict.also``) say so."""
    both = Verdict("divergence", "divergence:irq/missing", step=6,
                   also=("divergence:posted/io/missing",))
    model, seen, _, same = explained(as_qemu(TWO_READS, both))
    assert seen.signature == "divergence:posted/io/cqes" and seen.step == 6
    assert same
    cause = attribute(as_qemu(TWO_READS, both))
    assert (cause.kind, cause.paths) == (STATE, (RAM_PASS,))
    assert cause.signature == "divergence:posted/io/cqes"     # as the model saw it
    # the first difference alone does not tell, nor one at another step
    assert attribute(as_qemu(TWO_READS, attrs.evolve(both, also=()))).kind == UNEXPLAINED
    assert attribute(as_qemu(TWO_READS, attrs.evolve(both, step=5))).kind == UNEXPLAINED


#: two Writes held at a first migration, a Compare held at a second: QEMU may finish the
#: Writes inside the VM stop and lose nothing there, and lose the Compare's completion
TWO_MIGRATIONS = [ENABLE, Step("create_cq", {"qid": 1, "size": 8, "ien": 1, "iv": 0}),
                  Step("create_sq", {"qid": 1, "cqid": 1, "size": 8}), HOLD,
                  write(1, 32, 17, nlb=4), write(1, 32, 249, nlb=3), Step("migrate"), HOLD,
                  Step("io", {"qid": 1, "opc": 5, "slba": 30, "nlb": 2, "pattern": 61}),
                  Step("migrate")]


def test_a_migration_qemu_came_through_is_made_perfect_on_the_model():
    """The model loses a Write's completion at the first migration, which QEMU came through;
    with that migration perfect, the model diverges where QEMU did, the same way."""
    seen = Verdict("divergence", "divergence:irq/missing", step=9,
                   also=("divergence:posted/io/cqes",))
    qemu = as_qemu(TWO_MIGRATIONS, seen)
    first, _ = replay(on_model(qemu))
    assert first.step == 6                               # unaligned, the model fails earlier
    model, verdict, _, same = explained(qemu)
    assert model.target["perfect_migrations"] == [0]
    assert same and verdict.signatures == seen.signatures and verdict.step == 9
    cause = attribute(qemu)
    assert (cause.kind, cause.paths) == (STATE, (RAM_PASS,))
    # QEMU failing at the first migration is the model's own verdict: nothing to align
    assert explained(as_qemu(TWO_MIGRATIONS, first))[0].target.get("perfect_migrations") is None


def test_events_the_qemu_target_skips_are_skipped_when_the_model_explains_it():
    """QEMU has no namespace to change under the guest, so its target skips ``ns_changed``:
    on the model a QEMU trace must not lose a Changed Namespace List QEMU never had."""
    ns_changed = Step("environment", {"event": "ns_changed", "arg": 1})
    steps = [ns_changed, Step("enable", {"asqs": 1, "acqs": 1}), Step("disable"),
             Step("enable", {"asqs": 31, "acqs": 1}), Step("migrate"), Step("aer"), ns_changed]
    seen, _ = replay(trace("qemu-11.1", steps))
    assert attribute(attrs.evolve(trace("qemu-11.1", steps), verdict=seen)).paths == (
        "changed_nsids",)                               # the model's own event, lost
    qemu = as_qemu(steps, seen)
    assert on_model(qemu).steps[0] == on_model(qemu).steps[6] == Step("advance", {"ns": 0})
    assert on_model(as_qemu([HOLD], Verdict(PASS))).steps == (HOLD,)
    assert attribute(qemu).kind == UNEXPLAINED         # QEMU cannot have seen that


def test_a_qemu_replay_in_another_timing_form_still_shows_the_stored_finding():
    both = Verdict("divergence", "divergence:irq/missing", step=6,
                   also=("divergence:posted/io/missing",))
    cqes = Verdict("divergence", "divergence:posted/io/cqes", step=6)
    qemu = as_qemu(TWO_READS, both)
    assert shows(both, qemu) and shows(cqes, qemu)
    assert not shows(attrs.evolve(cqes, step=5), qemu) and not shows(Verdict(PASS), qemu)
    model = attrs.evolve(trace("qemu-11.1", TWO_READS), verdict=both)
    assert shows(both, model) and not shows(cqes, model)   # the model's timing is fixed


def test_reproducing_needs_the_same_step_and_a_shared_observation():
    cqes = Verdict("divergence", "divergence:posted/io/cqes", step=6)
    assert reproduces(cqes, cqes) and reproduces(Verdict(PASS), Verdict(PASS))
    assert reproduces(cqes, Verdict("divergence", "divergence:posted/io/missing", step=6))
    assert reproduces(Verdict("divergence", "divergence:irq/missing", step=6,
                              also=("divergence:posted/io/missing",)), cqes)
    assert not reproduces(cqes, Verdict("divergence", "divergence:irq/missing", step=6))
    assert not reproduces(cqes, Verdict("divergence", "divergence:posted/io/missing", step=7))
    assert not reproduces(cqes, Verdict("divergence", "divergence:posted/admin/cqes", step=6))
    assert not reproduces(Verdict("refused", "refused:a", step=6),
                          Verdict("refused", "refused:b", step=6))
    assert not reproduces(Verdict(PASS), cqes)


def test_a_qemu_finding_the_profile_does_not_reproduce_is_unexplained():
    t = trace("full", [ENABLE, Step("migrate"), IDENTIFY])
    seen = Verdict("divergence", "divergence:cqe/admin/IDENTIFY/cns=0x01/data@0x0", step=2)
    cause = attribute(attrs.evolve(t, target={**t.target, "kind": "qemu"}, verdict=seen))
    assert cause.kind == UNEXPLAINED and QEMU_PROFILE in cause.describe()
    assert "a pass" in cause.describe()           # what the model saw instead


def test_a_trace_that_passes_has_no_cause():
    assert attribute(trace("full", ERR_REC)).kind == PASSES


def test_a_refusal_loses_nothing_and_keeps_its_reason_in_the_key():
    steps = [ENABLE, Step("create_cq", {"qid": 1, "size": 2}),
             Step("create_sq", {"qid": 1, "cqid": 1, "size": 3}),
             write(1, 0, 0), write(1, 16375, 3), Step("migrate")]
    cause = attribute(trace("qemu-v3-patch", steps))
    assert cause.kind == NOTHING_LOST
    assert cause.key == "nothing lost: refused:no free space in CQ (not supported)"


def test_a_loss_the_state_does_not_hold_is_outside_it():
    """nvmecs-v0 re-enables the controller on load, which restarts the timestamp: loading the
    timestamp from the twin does not help."""
    steps = [ENABLE, Step("advance", {"ns": 3_600_000_000_000}), Step("migrate"),
             Step("admin", {"opc": int(A.GET_FEATURES), "cdw10": 0x0E, "length": 8})]
    cause = attribute(trace("nvmecs-v0", steps))
    assert cause.kind == OUTSIDE
    assert "features.timestamp_set_ms" in cause.paths


def test_repairing_needs_the_model():
    with pytest.raises(TargetUnavailable, match="needs the model"):
        Session(TargetConfig(kind="qemu"), repair=frozenset({"cc"}))


@pytest.mark.parametrize("path", sorted((CORPUS / "qemu-target").glob("*.cbor")),
                         ids=lambda p: p.name)
def test_every_qemu_finding_in_the_corpus_is_explained_by_the_qemu_profile(path):
    """Seen as the qemu target sees (``QEMU_VIEW``), the model under ``qemu-11.1`` fails each
    stored QEMU trace as QEMU did: no cause reads ``unexplained``."""
    cause = attribute(corpus.load(path))
    assert cause.kind in (STATE, OUTSIDE, NOTHING_LOST), cause.key


def test_a_qemu_trace_is_replayed_with_the_waivers_the_qemu_target_applies():
    """QEMU does not migrate the SMART I/O counters, and the qemu target waives that; on the
    model under ``qemu-11.1`` the same trace is waived too, so a finding after it can be
    explained there."""
    smart = Step("admin", {"opc": int(A.GET_LOG_PAGE), "cdw10": (127 << 16) | 0x02,
                           "nsid": 0xFFFFFFFF, "length": 512})
    steps = [*in_flight(ien=0)[:4], Step("advance", {"ns": 10**6}),
             Step("consume", {"qid": 1}), Step("migrate"), smart]
    t = trace("qemu-11.1", steps)
    seen, _ = replay(t)
    assert seen.signature.startswith("divergence:cqe/admin/GET_LOG_PAGE/lid=0x02/data.")
    qemu = attrs.evolve(t, target={**t.target, "kind": "qemu"})
    assert "smart-io-counters" in on_model(qemu).waivers
    assert replay(on_model(qemu))[0].ok
