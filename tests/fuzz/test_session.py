"""Hand-written traces replayed through the twin-vs-migrated session."""

from __future__ import annotations

import pytest

from nvmefuzz.errors import CampaignError, TraceFormatError
from nvmefuzz.fuzz.session import Session, replay
from nvmefuzz.protocol.spec import AdminOpcode as A, IoOpcode as IO
from nvmefuzz.targets import TargetConfig
from nvmefuzz.trace.schema import PASS, Step, Trace

ENABLE = Step("enable", {"asqs": 7, "acqs": 7})
IDENTIFY = Step("admin", {"opc": int(A.IDENTIFY), "cdw10": 1, "length": 4096})


def trace(profile: str, steps, refusals: str = "finding", waivers=()) -> Trace:
    """A trace for the model target under ``profile``."""
    return Trace(target=TargetConfig(profile=profile).to_plain(), campaign="hand", seed=0,
                 steps=tuple(steps), refusals=refusals, waivers=tuple(waivers))


def on_twin(steps, look, profile: str = "full"):
    """``look(controller)`` of the twin after ``steps`` on a model session."""
    s = Session(TargetConfig(profile=profile))
    try:
        for step in steps:
            s.apply(step)
        return look(s.twin.ctrl)
    finally:
        s.close()


def write(qid: int, slba: int, pattern: int, nlb: int = 1) -> Step:
    """A write of ``nlb`` blocks on SQ ``qid``."""
    return Step("io", {"qid": qid, "opc": int(IO.WRITE), "slba": slba, "nlb": nlb,
                       "pattern": pattern})


def read(qid: int, slba: int, nlb: int = 1) -> Step:
    """A read of ``nlb`` blocks on SQ ``qid``."""
    return Step("io", {"qid": qid, "opc": int(IO.READ), "slba": slba, "nlb": nlb})


#: a 2-entry CQ behind an 8-entry SQ: three writes leave one posted and two waiting
FULL_CQ = [
    ENABLE,
    Step("create_cq", {"qid": 1, "size": 2}),
    Step("create_sq", {"qid": 1, "cqid": 1, "size": 8}),
    write(1, 0, 1), write(1, 1, 2), write(1, 2, 3),
    Step("advance", {"ns": 100_000}),
]

#: the same with writes to an inactive namespace, which fail at fetch: completions QEMU 11.1
#: carries (it refuses to save a waiting completion of an active namespace)
FULL_CQ_FAILED = FULL_CQ[:3] + [Step("io", {**w.args, "nsid": 5}) for w in FULL_CQ[3:6]] + [
    FULL_CQ[6]]

#: everything hard at once: a full CQ with waiting completions, every AER slot used,
#: a queued (masked) event and I/O in flight on a second queue pair
HARD = FULL_CQ + [
    Step("create_cq", {"qid": 2, "size": 16}),
    Step("create_sq", {"qid": 2, "cqid": 2, "size": 16}),
    Step("aer", {}),
    Step("environment", {"event": "ns_changed", "arg": 1}),   # completes it, masks Notice
    Step("aer", {}), Step("aer", {}), Step("aer", {}), Step("aer", {}),
    Step("environment", {"event": "ns_changed", "arg": 2}),   # queued: Notice is masked
    write(2, 8, 4, nlb=2), read(2, 0),
]

AFTER = [
    Step("advance", {"ns": 100_000}),
    Step("consume", {"qid": 2}),
    Step("consume", {"qid": 1}), Step("consume", {"qid": 1}), Step("consume", {"qid": 1}),
    read(1, 0, nlb=3), read(2, 8, nlb=2),
    Step("advance", {"ns": 100_000}),
    Step("consume", {"qid": 1}), Step("consume", {"qid": 2}),
    # a SMART temperature event completes one of the migrated AERs
    Step("admin", {"opc": int(A.SET_FEATURES), "cdw10": 0x0B, "cdw11": 0x2}),
    Step("admin", {"opc": int(A.SET_FEATURES), "cdw10": 0x04, "cdw11": 0x100}),
    Step("admin", {"opc": int(A.GET_LOG_PAGE), "nsid": 0xFFFFFFFF,
                   "cdw10": 0x04 | 1023 << 16, "length": 4096}),
    Step("admin", {"opc": int(A.GET_FEATURES), "cdw10": 0x04}),
    Step("consume", {"qid": 0}),
]


def test_full_profile_migrates_every_hard_state():
    """`full` loses nothing with I/O in flight, a full CQ, all AERs used and a queued event."""
    s = Session(TargetConfig(profile="full"))
    try:
        for step in HARD:
            s.apply(step)
        for ctrl in (s.twin.ctrl, s.mig.ctrl):
            assert len(ctrl.inflight) == 2
            assert ctrl.cqs[1].full() and len(ctrl.cqs[1].waiting) == 2
            assert len(ctrl.aer_reqs) == ctrl.config.aerl + 1
            assert [e.log_page for e in ctrl.aer_queue] == [0x04]
        assert set(s.hard_states()) >= {"a full CQ with waiting completions",
                                         "every AER slot used", "events queued",
                                         "I/O in flight"}
        before = s.mig.ctrl
        s.apply(Step("migrate"))
        after = s.mig.ctrl
        assert after is not before
        assert s.stats["migrations"] == 1 and s.last_migration == len(HARD)
        assert s.lost == [] and not s.stats["migrations that lost state"]
        assert len(after.inflight) == 2 and len(after.cqs[1].waiting) == 2
        assert len(after.aer_reqs) == 4 and len(after.aer_queue) == 1
        for step in AFTER:
            s.apply(step)
        assert not s.twin.ctrl.inflight and not s.twin.ctrl.cqs[1].waiting
        assert len(s.twin.ctrl.aer_reqs) == 3          # the SMART event used one
        assert s.stats["steps"] == len(HARD) + 1 + len(AFTER)
        for name in ("a full CQ with waiting completions", "every AER slot used",
                     "events queued", "I/O in flight"):
            assert s.stats[f"migrated with {name}"] == 1
    finally:
        s.close()


@pytest.mark.parametrize("profile, lost", [
    ("full-without-features.err_rec", ["features.err_rec"]),
    ("full-without-cq.waiting", ["cq.waiting"]),
    ("full+inflight-reads-dropped", ["inflight"]),
])
def test_a_migration_names_the_state_it_lost_before_the_guest_sees_it(profile, lost):
    """The session compares the twin's state with the migrated controller's at once: what a
    design lost is known at the migration, before any read shows it."""
    s = Session(TargetConfig(profile=profile))
    try:
        for step in [*HARD, Step("admin", {"opc": int(A.SET_FEATURES), "cdw10": 0x05,
                                           "cdw11": 0x10, "nsid": 1})]:
            s.apply(step)
        s.apply(Step("migrate"))
        assert s.lost == lost
        assert s.stats["migrations that lost state"] == 1
        assert s.stats[f"lost at migration: {lost[0]}"] == 1
    finally:
        s.close()


def test_full_profile_replay_of_hard_trace_passes():
    """The same steps as a trace replay to a pass, also with repeated migrations."""
    steps = HARD + [Step("migrate")] + AFTER[:5] + [Step("migrate"), Step("migrate")] + AFTER[5:]
    verdict, stats = replay(trace("full", steps))
    assert verdict.kind == PASS and verdict.ok
    assert verdict.signature == "" and verdict.step == -1
    assert stats["migrations"] == 3 and stats["steps"] == len(steps)


def test_full_profile_on_intx_passes():
    """Pin-based interrupts (MSI-X off) migrate perfectly under `full` too."""
    cfg = TargetConfig(profile="full", msix=False).to_plain()
    t = Trace(target=cfg, campaign="hand", seed=0,
              steps=tuple(HARD + [Step("migrate")] + AFTER))
    verdict, _ = replay(t)
    assert verdict.ok, verdict


def test_v3_patch_refuses_a_full_cq():
    """qemu-v3-patch refuses to save a full CQ with waiting completions."""
    steps = FULL_CQ + [Step("migrate"), Step("consume", {"qid": 1})]
    verdict, stats = replay(trace("qemu-v3-patch", steps))
    assert verdict.kind == "refused"
    assert verdict.signature == "refused:no free space in CQ (not supported)"
    assert verdict.step == len(FULL_CQ) and verdict.since_migration == -1
    assert stats["refusals"] == 1 and stats["migrations"] == 0


def test_v3_patch_refusal_can_be_counted_and_run_on():
    """With refusals='continue' a refused migration is counted and the trace carries on."""
    steps = FULL_CQ + [Step("migrate"), Step("consume", {"qid": 1}),
                       Step("advance", {"ns": 100_000}), Step("consume", {"qid": 1}),
                       Step("consume", {"qid": 1}), IDENTIFY]
    verdict, stats = replay(trace("qemu-v3-patch", steps, refusals="continue"))
    assert verdict.ok, verdict
    assert stats["refusals"] == 1 and stats["migrations"] == 0
    assert stats["steps"] == len(steps) and stats["action:consume"] == 3


def test_v3_patch_migrates_when_no_cq_is_full():
    """qemu-v3-patch does migrate an idle controller with I/O queues."""
    steps = FULL_CQ + [Step("consume", {"qid": 1})] * 3 + [Step("migrate"), read(1, 0, 3),
                                                           Step("advance", {"ns": 50_000}),
                                                           Step("consume", {"qid": 1})]
    verdict, stats = replay(trace("qemu-v3-patch", steps))
    assert verdict.ok, verdict
    assert stats["migrations"] == 1



def test_v3_patch_hangs_with_io_in_flight():
    """A migration that meets I/O in flight hangs the v3 save; the twin, stopped the same way,
    does not matter: a hang ends the trace as a finding named by where it waits."""
    steps = [ENABLE, Step("create_cq", {"qid": 1, "size": 8}),
             Step("create_sq", {"qid": 1, "cqid": 1, "size": 8}),
             write(1, 0, 1), read(1, 0), Step("migrate"), read(1, 0)]
    verdict, stats = replay(trace("qemu-v3-patch", steps))
    assert verdict.kind == "hung"
    assert verdict.signature == "hung:save: pre_save spins on cq[].req_list"
    assert "cq[1].req_list" in verdict.detail
    assert verdict.step == 5 and stats["hung"] == 1 and stats["migrations"] == 0
    verdict, _ = replay(trace("qemu-11.1", steps))
    assert verdict.kind != "hung", verdict           # the merged pre_save posts it itself

TEMPERATURE = [
    ENABLE,
    Step("admin", {"opc": int(A.SET_FEATURES), "cdw10": 0x04, "cdw11": 0x150}),
    Step("migrate"),
    Step("admin", {"opc": int(A.GET_FEATURES), "cdw10": 0x04}),
]


def test_v3_patch_loses_temperature_threshold():
    """qemu-v3-patch does not save feature values: the threshold reads back as the default."""
    verdict, _ = replay(trace("qemu-v3-patch", TEMPERATURE))
    assert verdict.kind == "divergence"
    assert verdict.signature == "divergence:cqe/admin/GET_FEATURES/fid=0x04/dw0"
    assert verdict.step == 3 and verdict.since_migration == 1
    assert "336" in verdict.detail and "343" in verdict.detail   # 0x150 vs default 0x157


def test_full_and_merged_qemu_keep_temperature_threshold():
    """`full` and `qemu-11.1` carry the threshold over."""
    for profile in ("full", "qemu-11.1"):
        verdict, _ = replay(trace(profile, TEMPERATURE))
        assert verdict.ok, (profile, verdict)


ADMIN_WRAP = [ENABLE] + [IDENTIFY] * 8 + [Step("migrate")] + [IDENTIFY] * 2


def test_nvmecs_v0_loses_the_admin_queue_state():
    """nvmecs-v0 does not carry the admin queue positions: after a wrap a completion is lost."""
    verdict, _ = replay(trace("nvmecs-v0", ADMIN_WRAP))
    assert verdict.kind == "divergence"
    assert verdict.signature.startswith("divergence:cqe/admin/")
    assert verdict.signature == "divergence:cqe/admin/IDENTIFY/cns=0x01/missing"
    assert verdict.step == 10 and verdict.since_migration == 1
    ok, _ = replay(trace("full", ADMIN_WRAP))
    assert ok.ok


def test_nvmecs_v0_loses_outstanding_aers():
    """nvmecs-v0 drops outstanding AERs: an event later completes one only on the twin."""
    steps = [ENABLE, Step("aer", {}), Step("migrate"),
             Step("environment", {"event": "ns_changed", "arg": 1}), Step("consume", {"qid": 0})]
    verdict, _ = replay(trace("nvmecs-v0", steps))
    assert verdict.kind == "divergence"
    assert verdict.signature == "divergence:irq/missing"      # the twin's AER completion
    assert verdict.step == 3 and verdict.since_migration == 1


def test_merged_qemu_needs_the_spurious_interrupt_waiver():
    """qemu-11.1 re-signals a restored full CQ; the trace's waiver suppresses exactly that."""
    steps = FULL_CQ_FAILED + [Step("migrate"), Step("consume", {"qid": 1}),
                              Step("consume", {"qid": 1}), Step("consume", {"qid": 1})]
    verdict, _ = replay(trace("qemu-11.1", steps))
    assert verdict.signature == "divergence:irq/extra"
    verdict, _ = replay(trace("qemu-11.1", steps, waivers=["spurious-interrupt"]))
    assert verdict.ok, verdict


def test_after_a_refused_save_qemu_11_1_runs_on_like_its_twin():
    """qemu-11.1 refuses a full I/O CQ's waiting Write (as QEMU 11.1.3 does); the source runs
    on: its writes to guest memory stay, the waiting completion posts when the guest makes
    room, and new commands are fetched."""
    steps = FULL_CQ + [Step("migrate"), Step("consume", {"qid": 1}),
                       Step("consume", {"qid": 1}), write(1, 3, 4), read(1, 0, 4),
                       Step("advance", {"ns": 100_000})] + [Step("consume", {"qid": 1})] * 3
    seen: list = []
    verdict, stats = replay(trace("qemu-11.1", steps, refusals="continue"),
                            on_step=lambda i, step, twin, mig: seen.extend(mig))
    assert verdict.ok, verdict
    assert stats["refusals"] == 1 and stats["migrations"] == 0
    assert [label for label, _ in seen if label.startswith("cqe/io")] == [
        "cqe/io/WRITE"] * 4 + ["cqe/io/READ"]
    verdict, _ = replay(trace("qemu-11.1", steps))
    assert verdict.signature == "refused:pre-save for nvme failed: req->ns != NULL"


def test_session_counts_waived_differences():
    """A session with a waiver counts every suppression in its comparator."""
    s = Session(TargetConfig(profile="qemu-11.1"), ("spurious-interrupt",))
    try:
        for step in FULL_CQ_FAILED + [Step("migrate")]:
            s.apply(step)
        assert s.comparator.suppressed["spurious-interrupt"] == 1
    finally:
        s.close()


def test_unknown_action_is_a_trace_format_error():
    """A step naming no action fails with TraceFormatError, in a session and in replay."""
    with pytest.raises(TraceFormatError, match="frobnicate"):
        replay(trace("full", [ENABLE, Step("frobnicate", {"x": 1})]))
    s = Session(TargetConfig())
    try:
        with pytest.raises(TraceFormatError):
            s.apply(Step("no_such_action"))
    finally:
        s.close()


@pytest.mark.parametrize("step", [
    Step("io", {"opc": 1}),
    Step("create_cq", {"qid": 1}),
    Step("create_sq", {"qid": 1, "size": 4}),
    Step("advance", {}),
    Step("reg_write", {"offset": 0x14}),
    Step("environment", {}),
    Step("consume", {}),
], ids=lambda s: s.action)
def test_missing_arguments_are_a_trace_format_error(step):
    """A step without a required argument fails with TraceFormatError naming the step."""
    with pytest.raises(TraceFormatError, match=step.action):
        replay(trace("full", [ENABLE, step]))


@pytest.mark.parametrize("target", [
    {"kind": "model", "profile": "full", "colour": "red"},
    {"kind": "model", "profile": 5},
    {"kind": "model", "io_latency_ns": "fast"},
    {"kind": "model", "msix": "yes"},
], ids=["unknown-key", "profile-int", "latency-str", "msix-str"])
def test_malformed_target_is_a_trace_format_error(target):
    """A trace whose target configuration has unknown keys or wrong types is a TraceFormatError."""
    t = Trace(target=target, campaign="x", seed=0, steps=(ENABLE,))
    with pytest.raises(TraceFormatError, match="target configuration"):
        replay(t)


def test_unknown_waiver_is_a_campaign_error():
    """A waiver nobody defined is a CampaignError naming it."""
    with pytest.raises(CampaignError, match="no-such-waiver"):
        Session(TargetConfig(), ("no-such-waiver",))
    with pytest.raises(CampaignError, match="no-such-waiver"):
        replay(trace("full", [ENABLE], waivers=["no-such-waiver"]))


def test_a_finding_names_every_observation_its_step_differed_in():
    """qemu-11.1 loses a completion posted while it saves: with interrupts on, the guest
    misses the interrupt first and the CQE after it, in the same step."""
    steps = [ENABLE, Step("create_cq", {"qid": 1, "size": 2, "ien": 1, "iv": 0}),
             Step("create_sq", {"qid": 1, "cqid": 1, "size": 2}), write(1, 0, 0),
             Step("migrate")]
    verdict, _ = replay(trace("qemu-11.1", steps))
    assert verdict.signatures == ("divergence:irq/missing", "divergence:posted/io/missing")
    assert verdict.step == 4
    verdict, _ = replay(trace("qemu-11.1", [*steps[:1], Step("create_cq", {
        "qid": 1, "size": 2, "ien": 0}), *steps[2:]]))
    assert verdict.signatures == ("divergence:posted/io/missing",)


def test_a_perfect_migration_loses_nothing_and_the_others_lose_as_the_profile_does():
    steps = [ENABLE, Step("create_cq", {"qid": 1, "size": 2, "ien": 0}),
             Step("create_sq", {"qid": 1, "cqid": 1, "size": 2}), write(1, 0, 0),
             Step("migrate"), write(1, 1, 1), Step("migrate")]
    lost = []

    def look(i, step, session):
        if step.action == "migrate":
            lost.append(session.lost)

    t = trace("qemu-11.1", steps)
    verdict, _ = replay(t, after_step=look)
    assert verdict.step == 4 and len(lost) == 1 and "dmrsl" in lost[0]
    perfect = Trace(target={**t.target, "perfect_migrations": [0]}, campaign="hand", seed=0,
                    steps=t.steps)
    lost.clear()
    verdict, _ = replay(perfect, after_step=look)
    assert verdict.step != 4 and lost[0] == [] and "dmrsl" in lost[1]
    assert "perfect_migrations" not in TargetConfig().to_plain()


def test_replay_is_repeatable_step_by_step():
    """The step hook sees the same observations on every replay."""
    seen: list[list] = [[], []]
    for run in seen:
        replay(trace("qemu-v3-patch", TEMPERATURE),
               on_step=lambda i, step, twin, mig, run=run: run.append((i, step, twin, mig)))
    assert seen[0] == seen[1]
    assert [i for i, *_ in seen[0]] == [0, 1, 2, 3]
    last = seen[0][-1]
    assert last[2] != last[3]


def test_shadow_doorbells_set_up_after_unrung_entries_still_ring_the_controller():
    """The host sets the shadow and EventIdx slots to what the controller was last told, not
    to its own tail: a command written before Doorbell Buffer Config but not rung is fetched
    when the host next rings, so a design that kicks its SQs on load (qemu-11.1) shows
    nothing the twin has not done already."""
    steps = [ENABLE, Step("create_cq", {"qid": 1, "size": 4}),
             Step("create_sq", {"qid": 1, "cqid": 1, "size": 4}),
             Step("io", {**write(1, 0, 7).args, "ring": False}), Step("dbbuf", {}),
             Step("ring_sq", {"qid": 1}), Step("advance", {"ns": 100_000}),
             Step("consume", {"qid": 1})]
    session = Session(TargetConfig(profile="full"), (), "finding")
    for step in steps:
        session.apply(step)
    assert not session.twin_host.sqs[1].outstanding     # the write completed
    assert session.twin_host.sqs[1].rung == 1
    settled = steps[:-2] + [Step("advance", {"ns": 100_000}), Step("consume", {"qid": 1}),
                            Step("migrate", {})]
    assert replay(trace("qemu-11.1", settled + steps[-2:]))[0].ok


def test_a_failed_command_returns_no_data():
    """A Get Log Page that fails (Invalid Field: an offset past the log) in the admin SQ slot
    a SMART log used before leaves that log in its buffer: not an observation, so the host
    does not read it; the SMART log's own data is one."""
    smart = Step("admin", {"opc": int(A.GET_LOG_PAGE), "nsid": 0xFFFFFFFF, "length": 512,
                           "cdw10": 0x02 | 127 << 16})
    past_end = Step("admin", {"opc": int(A.GET_LOG_PAGE), "nsid": 0xFFFFFFFF, "length": 64,
                              "cdw10": 0x02 | 15 << 16, "cdw12": 4096})
    seen: list = []
    replay(trace("full", [ENABLE, smart] + [IDENTIFY] * 7 + [past_end]),
           on_step=lambda i, step, twin, mig: seen.append(
               [f for label, f in twin if label.startswith("cqe/admin/GET_LOG_PAGE")]))
    (ok,), (failed,) = seen[1], seen[-1]
    assert ok["status"] == 0 and any(ok["data"])
    assert failed["status"] != 0 and "data" not in failed


def test_a_log_read_at_an_offset_names_the_field_where_it_lies_in_the_log():
    """A SMART log read from byte 4 (LPOL) that differs in Data Units Read (log byte 32) is
    signed with that field, as a read from byte 0 is, not with the byte's place in the
    buffer: one loss, one signature."""
    def smart(lpo: int) -> Step:
        return Step("admin", {"opc": int(A.GET_LOG_PAGE), "nsid": 0xFFFFFFFF, "length": 508,
                              "cdw10": 0x02 | 126 << 16, "cdw12": lpo})
    steps = [ENABLE, Step("create_cq", {"qid": 1, "size": 2}),
             Step("create_sq", {"qid": 1, "cqid": 1, "size": 2}), read(1, 0),
             Step("advance", {"ns": 100_000}), Step("migrate")]
    seen: list = []
    verdicts = [replay(trace("qemu-11.1", steps + [smart(lpo)]),
                       on_step=lambda i, step, twin, mig: seen.append(twin))[0]
                for lpo in (4, 0)]
    assert [v.signature for v in verdicts] == [
        "divergence:cqe/admin/GET_LOG_PAGE/lid=0x02/data.data_units_read"] * 2
    at = [f.get("at") for obs in seen for label, f in obs if "GET_LOG_PAGE" in label]
    assert at == [4, None]
