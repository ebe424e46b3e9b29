"""Known findings: matched by root cause where lost state explains them, else by signature."""

from __future__ import annotations

import attrs

from nvmefuzz.fuzz.known import Known
from nvmefuzz.fuzz.session import lost_paths, replay
from nvmefuzz.trace import corpus
from nvmefuzz.trace.schema import Step, Trace, Verdict

from tests.fuzz.test_cause import (CORPUS, ENABLE, TWO_MIGRATIONS, TWO_READS, as_qemu,
                                  in_flight, trace, write)

#: QEMU 11.1's in-flight loss as the corpus stores it (a Write's CQE missing)
QEMU_LOSS = CORPUS / "qemu-target" / "divergence-posted-io-missing-5d210b1444.cbor"

NS_CHANGED = Step("environment", {"event": "ns_changed", "arg": 1})
#: an interrupt the migrated side misses because the CQ's IEN was lost
IEN_LOST = [ENABLE, Step("create_cq", {"qid": 1, "size": 4, "ien": 1, "iv": 0}),
            Step("create_sq", {"qid": 1, "cqid": 1, "size": 4}), Step("migrate"),
            write(1, 0, 0), Step("advance", {"ns": 100_000})]
#: ... because the outstanding AER was lost
AER_LOST = [ENABLE, Step("aer", {"reap": False}), Step("migrate"), NS_CHANGED]


def found(profile: str, steps: list[Step]) -> tuple[Trace, list[str]]:
    """The trace as a run stores it (with the verdict it reaches), and what it lost."""
    t = trace(profile, steps)
    verdict, stats = replay(t)
    assert not verdict.ok
    return attrs.evolve(t, verdict=verdict), sorted(lost_paths(stats))


def test_another_face_of_a_known_loss_is_known():
    """QEMU 11.1's in-flight loss shows as a missing CQE with interrupts off and a missing
    interrupt with them on: storing one makes the other known, though the signatures differ."""
    stored, _ = found("qemu-11.1", in_flight(ien=0))
    other, lost = found("qemu-11.1", in_flight(ien=1))
    assert stored.verdict.signature != other.verdict.signature
    known = Known.of([stored])
    assert known.match(other)
    assert known.match(other, lost)              # as a model session asks, without a replay


def test_a_qemu_finding_timed_another_way_is_known_by_its_root_cause():
    """QEMU lost both Reads' completions at the step (interrupt first, then the CQ), where
    the model loses one: the stored loss explains it through the step's other difference."""
    known = Known.of([corpus.load(QEMU_LOSS)])
    both = as_qemu(TWO_READS, Verdict("divergence", "divergence:irq/missing", step=6,
                                      also=("divergence:posted/io/missing",)))
    assert both.verdict.signature not in known.signatures
    assert known.match(both)
    assert known.stats["known by root cause"] == 1
    assert not known.match(attrs.evolve(both, verdict=attrs.evolve(both.verdict, also=())))
    later = as_qemu(TWO_MIGRATIONS, Verdict("divergence", "divergence:irq/missing", step=9,
                                            also=("divergence:posted/io/cqes",)))
    assert known.match(later)                    # QEMU came through the first migration


def test_a_known_signature_with_another_cause_is_new():
    """Both lose an interrupt; fixing the lost IEN would not bring back the lost AER."""
    ien, _ = found("full-without-cq.ien", IEN_LOST)
    aer, lost = found("full-without-aer_reqs", AER_LOST)
    assert ien.verdict.signature == aer.verdict.signature == "divergence:irq/missing"
    known = Known.of([ien])
    assert not known.match(aer) and not known.match(aer, lost)
    assert known.match(ien)
    known.add(aer, None)                         # stored without an attributed cause
    assert not known.match(aer)                  # lost state explains it: still not known
    assert Known.of([ien, aer]).match(aer)


def test_without_lost_state_the_signature_decides():
    steps = [ENABLE, Step("create_cq", {"qid": 1, "size": 2}),
             Step("create_sq", {"qid": 1, "cqid": 1, "size": 3}),
             write(1, 0, 0), write(1, 16375, 3), Step("migrate")]
    refused, lost = found("qemu-v3-patch", steps)
    assert refused.verdict.kind == "refused" and lost == []
    assert not Known().match(refused)
    assert Known.of([refused]).match(refused, lost)
    other, _ = found("qemu-v3-patch", in_flight(ien=0))            # hangs, loses nothing
    assert not Known.of([refused]).match(other)
