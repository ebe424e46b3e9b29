"""Traces on the qemu target: a short one replays to a pass (twin vs migrated QEMU), and a
finding shrunk on the model replays on QEMU as it did."""

from __future__ import annotations

import attrs

from nvmefuzz.fuzz.minimize import via_model
from nvmefuzz.fuzz.session import replay
from nvmefuzz.targets.base import TargetConfig
from nvmefuzz.trace.schema import PASS, Step, Trace


def _trace(**cfg) -> Trace:
    steps = [
        Step("enable", {}),
        Step("admin", {"opc": 6, "cdw10": 1, "length": 4096}),
        Step("create_cq", {"qid": 1, "size": 4, "iv": 1}),
        Step("create_sq", {"qid": 1, "size": 4, "cqid": 1}),
        Step("io", {"qid": 1, "opc": 1, "slba": 3, "nlb": 2, "pattern": 5}),
        Step("migrate", {}),
        Step("io", {"qid": 1, "opc": 2, "slba": 3, "nlb": 2}),
        Step("io", {"qid": 1, "opc": 2, "slba": 0, "nlb": 1}),
        Step("migrate", {}),
        Step("consume", {"qid": 1}),
        Step("aer", {"reap": False}),
        Step("migrate", {}),
        Step("admin", {"opc": 2, "cdw10": 2 | 1 << 16, "length": 512}),
        Step("reg_read", {"offset": 0x1C}),
    ]
    return Trace(target=TargetConfig(kind="qemu", **cfg).to_plain(), campaign="test", seed=0,
                 steps=tuple(steps))


def test_short_trace_passes_on_qemu(qemu_binary):
    verdict, stats = replay(_trace())
    assert verdict.kind == PASS, verdict.detail
    assert stats["migrations"] == 3 and stats["steps"] == 14


def test_short_trace_passes_on_qemu_with_pin_interrupts(qemu_binary):
    verdict, stats = replay(_trace(msix=False))
    assert verdict.kind == PASS, verdict.detail
    assert stats["migrations"] == 3


def test_a_pin_high_at_migration_that_drops_and_rises_again_is_seen_on_the_destination(
        qemu_binary):
    """Stray admin completions keep INTx high across the migration.  The next admin command
    consumes them (the pin drops) and completes (it rises).  A destination's qtest starts with
    every line low, so it reports only the rise; the target knows the pin was high, so a
    report of the level it already has means the drop before it was swallowed."""
    steps = (Step("enable", {}), Step("ring_sq", {"qid": 0, "value": 2}), Step("migrate", {}),
             Step("admin", {"opc": 2, "cdw10": 0xF8001, "length": 64, "nsid": 0xFFFFFFFF}))
    trace = Trace(target=TargetConfig(kind="qemu", msix=False).to_plain(), campaign="test",
                  seed=0, steps=steps)
    seen = []
    verdict, _ = replay(trace, on_step=lambda i, step, twin, mig: seen.append((twin, mig)))
    assert verdict.kind == PASS, verdict.detail
    assert dict(seen[3][1])["irq"] == {"events": (("intx", 0), ("intx", 1))}


def test_source_refused_with_a_full_io_cq_carries_on_like_its_twin(qemu_binary):
    """QEMU 11.1 refuses while an I/O completion waits in a full CQ; the source still matches."""
    steps = (Step("enable", {}), Step("create_cq", {"qid": 1, "size": 2, "ien": 0}),
             Step("create_sq", {"qid": 1, "size": 3, "cqid": 1}),
             Step("io", {"qid": 1, "opc": 1, "slba": 0, "nlb": 1, "pattern": 0}),
             Step("io", {"qid": 1, "opc": 1, "slba": 0, "nlb": 1, "pattern": 0}),
             Step("io", {"qid": 1, "opc": 1, "slba": 1, "nlb": 1, "pattern": 2}),
             Step("migrate", {}), Step("consume", {"qid": 1}), Step("consume", {"qid": 1}),
             Step("consume", {"qid": 1}), Step("io", {"qid": 1, "opc": 2, "slba": 1, "nlb": 1}),
             Step("migrate", {}), Step("consume", {"qid": 1}), Step("consume", {"qid": 1}))
    trace = Trace(target=TargetConfig(kind="qemu").to_plain(), campaign="test", seed=0,
                  steps=steps, refusals="continue")
    verdict, stats = replay(trace)
    assert verdict.kind == PASS, verdict.detail
    assert stats["refusals"] == 1 and stats["migrations"] == 1
    finding = attrs.evolve(trace, refusals="finding")
    verdict, _ = replay(finding)
    assert verdict.signature == "refused:pre-save for nvme failed: req->ns != NULL"


def test_concurrent_completions_consumed_one_by_one_replay_the_same_every_time(qemu_binary):
    """A Compare and a Write Zeroes rung by one doorbell complete in either order through
    QEMU's thread pool; consuming one per step used to make this trace diverge in about half
    of its replays (found by a nightly run).  It passes every time now."""
    steps = (Step("enable", {"acqs": 7, "asqs": 7}),
             Step("create_cq", {"qid": 2, "size": 16, "iv": 0}),
             Step("create_sq", {"qid": 1, "size": 4, "cqid": 2}),
             Step("io", {"qid": 1, "opc": 8, "slba": 15, "nlb": 6, "offset": 3584}),
             Step("migrate", {}),
             Step("io", {"qid": 1, "opc": 5, "slba": 1, "nlb": 3, "pattern": 136,
                         "ring": False}),
             Step("consume", {"qid": 2, "ring": False}),
             Step("io", {"qid": 1, "opc": 8, "slba": 54, "nlb": 8}),
             Step("consume", {"qid": 2, "limit": 1}),
             Step("consume", {"qid": 2, "limit": 1}))
    trace = Trace(target=TargetConfig(kind="qemu").to_plain(), campaign="test", seed=0,
                  steps=steps)
    verdicts = [replay(trace)[0] for _ in range(8)]
    assert [v.kind for v in verdicts] == [PASS] * 8, [v.detail for v in verdicts]


def test_stale_entries_fetched_again_may_complete_in_either_order(qemu_binary):
    """A refused migration (the Writes still in flight), then an SQ tail rung behind the
    host's own: QEMU fetches eleven zeroed entries and the five stale commands again, and a
    stale Write and a stale Flush complete in either order into a CQ with three usable slots.
    Found by sq-exhaustion; it diverged in four of five replays while completions of no
    outstanding command were compared by position.  It passes every time now."""
    steps = (Step("enable", {"acqs": 7, "asqs": 7}),
             Step("create_cq", {"qid": 1, "size": 4, "ien": 0, "iv": 0}),
             Step("create_sq", {"qid": 1, "size": 16, "cqid": 1}),
             Step("io", {"qid": 1, "opc": 1, "slba": 0, "nlb": 6, "pattern": 0}),
             Step("io", {"qid": 1, "opc": 1, "slba": 0, "nlb": 6, "pattern": 50}),
             Step("io", {"qid": 1, "opc": 0, "slba": 16377, "nlb": 2, "pattern": 231}),
             Step("io", {"qid": 1, "opc": 0, "slba": 56, "nlb": 3, "nsid": 2}),
             Step("io", {"qid": 1, "opc": 1, "slba": 9, "nlb": 6, "pattern": 38}),
             Step("migrate", {}),
             Step("consume", {"qid": 1}),
             Step("ring_sq", {"qid": 1, "value": 4}),
             *[Step("consume", {"qid": 1})] * 4)
    trace = Trace(target=TargetConfig(kind="qemu").to_plain(), campaign="test", seed=0,
                  steps=steps, refusals="continue")
    verdicts = [replay(trace)[0] for _ in range(6)]
    assert [v.kind for v in verdicts] == [PASS] * 6, [v.detail for v in verdicts]


def test_bytes_a_log_does_not_transfer_are_not_what_an_earlier_command_left():
    """QEMU transfers one 64-byte entry of the Error Information log however much is asked
    for.  Read into the admin slot where a SMART / Health log was read just before, the rest
    of the 4 KiB buffer held that log, whose I/O counters a migration does not keep: a false
    ``lid=0x01/data`` difference (found by reset-storm).  The host clears a buffer it will
    read back, so the bytes not transferred are zero on both sides."""
    smart = {"opc": 2, "nsid": 0xFFFFFFFF, "cdw10": 2 | 127 << 16, "length": 512}
    errors = {"opc": 2, "cdw10": 1 | 1023 << 16, "length": 4096}
    steps = (Step("enable", {"asqs": 1, "acqs": 3}),               # admin slots 0, 1, 0, ...
             Step("create_cq", {"qid": 1, "size": 4}),
             Step("create_sq", {"qid": 1, "size": 4, "cqid": 1}),
             Step("io", {"qid": 1, "opc": 1, "slba": 0, "nlb": 4, "pattern": 9}),
             Step("consume", {"qid": 1}),
             Step("migrate", {}),
             Step("admin", smart),                                # slot 0
             Step("admin", {"opc": 10, "cdw10": 4}),              # slot 1, no data
             Step("admin", errors))                               # slot 0 again
    trace = Trace(target=TargetConfig(kind="qemu").to_plain(), campaign="test", seed=0,
                  steps=steps)
    seen: list = []
    verdict, _ = replay(trace, on_step=lambda i, step, twin, mig: seen.append(twin))
    assert verdict.kind == PASS, verdict.detail
    (log,) = [f["data"] for label, f in seen[-1] if label.endswith("lid=0x01")]
    assert len(log) == 4096 and not any(log[64:])


def test_a_qemu_finding_is_shrunk_on_the_model_and_qemu_confirms_it(qemu_binary):
    """QEMU reports DMRSL 0 after a migration: a padded trace of it, shrunk on the model under
    ``qemu-11.1`` (``minimize.via_model``), is the three steps that show it, and replaying
    those on QEMU gives the same verdict."""
    steps = [Step("enable", {"asqs": 7, "acqs": 7}),
             Step("create_cq", {"qid": 1, "size": 4, "iv": 1}),
             Step("admin", {"opc": 6, "cdw10": 1, "length": 4096}),
             Step("migrate", {}), Step("reg_read", {"offset": 0x1C}),
             Step("admin", {"opc": 6, "cdw10": 6, "length": 4096})]
    t = Trace(target=TargetConfig(kind="qemu").to_plain(), campaign="test", seed=0,
              steps=tuple(steps))
    seen, _ = replay(t)
    assert seen.signature == "divergence:cqe/admin/IDENTIFY/cns=0x06/data@0x4"
    assert seen.detail.endswith("after the last migration, target qemu)")    # no profile
    small = via_model(attrs.evolve(t, verdict=seen))
    assert small is not None and small.target == t.target
    assert [s.action for s in small.steps] == ["enable", "migrate", "admin"]
    again, _ = replay(small)
    assert again.signature == seen.signature
