"""Shrinking findings after Hypothesis: steps the verdict does not need, simpler values, and a
QEMU finding shrunk on the model first."""

from __future__ import annotations

from pathlib import Path

import attrs

from nvmefuzz.fuzz.cause import on_model
from nvmefuzz.fuzz.minimize import (
    minimize, reproduces_on_model, reshrink, shrink, simplify, via_model,
)
from nvmefuzz.fuzz.session import replay
from nvmefuzz.targets import TargetConfig
from nvmefuzz.trace.schema import PASS, Step, Trace, Verdict

CORPUS = Path(__file__).resolve().parents[2] / "corpus"


def _fake_replay(needed: set[str]):
    """A replay that diverges at the last needed step once every needed step has run."""
    calls = []

    def replay(trace: Trace):
        calls.append(len(trace.steps))
        seen = set()
        for i, s in enumerate(trace.steps):
            seen.add(s.action)
            if needed <= seen:
                return Verdict("divergence", "divergence:x", "", i, -1), None
        return Verdict(PASS), None
    return replay, calls


def _trace(actions: list[str]) -> Trace:
    steps = tuple(Step(a, {}) for a in actions)
    return Trace(target={"kind": "model"}, campaign="c", seed=0, steps=steps,
                 verdict=Verdict("divergence", "divergence:x", "", len(steps) - 2, -1))


def test_keeps_only_the_steps_the_finding_needs():
    """Unneeded steps go, including everything after the verdict step."""
    actions = ["enable"] + ["migrate"] * 12 + ["create_cq", "migrate", "io"] + ["migrate"] * 5
    actions += ["consume", "tail"]
    replay, calls = _fake_replay({"enable", "create_cq", "io", "consume"})
    out = minimize(_trace(actions), replay=replay)
    assert [s.action for s in out.steps] == ["enable", "create_cq", "io", "consume"]
    assert out.verdict.step == 3 and out.verdict.signature == "divergence:x"
    assert len(calls) < 60


def test_steps_that_are_all_needed_stay():
    """When every step up to the verdict is needed, only the tail after it goes."""
    replay, _ = _fake_replay({"a", "b", "c"})
    out = minimize(_trace(["a", "b", "c", "d"]), replay=replay)
    assert [s.action for s in out.steps] == ["a", "b", "c"] and out.verdict.step == 2


def test_a_finding_that_no_longer_reproduces_is_left_alone():
    """If even the cut trace passes now, the original trace is returned."""
    replay, _ = _fake_replay({"zzz"})
    trace = _trace(["a", "b", "c", "d"])
    assert minimize(trace, replay=replay) == trace


def test_passing_traces_and_budgets_are_respected():
    """A pass is returned as is; a zero budget still cuts the tail after the verdict."""
    replay, calls = _fake_replay({"a"})
    ok = Trace(target={}, campaign="c", seed=0, steps=(Step("a", {}),))
    assert minimize(ok, replay=replay) is ok and calls == []
    out = minimize(_trace(["x", "a", "y"]), seconds=0, replay=replay)
    assert [s.action for s in out.steps] == ["x", "a"]


def _two_forms(needed: set[str], full: int, form: str):
    """A replay on a target whose timing varies: once every needed step has run, the loss
    shows at that step as ``posted/io/missing`` in a trace of ``full`` steps, and in a shorter
    one in another form: ``irq/missing`` with ``posted/io/cqes`` beside it (``"both"``), that
    one step before (``"before"``), or ``irq/extra`` alone (``"other"``)."""
    def replay(trace: Trace):
        seen: set[str] = set()
        for i, s in enumerate(trace.steps):
            seen.add(s.action)
            if needed <= seen:
                if len(trace.steps) == full:
                    return Verdict("divergence", "divergence:posted/io/missing", "", i), None
                if form == "other":
                    return Verdict("divergence", "divergence:irq/extra", "", i), None
                at = i - 1 if form == "before" else i
                return Verdict("divergence", "divergence:irq/missing", "", at,
                               also=("divergence:posted/io/cqes",)), None
        return Verdict(PASS), None
    return replay


def test_on_qemu_a_deletion_is_kept_when_the_loss_shows_in_its_other_form_at_its_step():
    """On QEMU one loss shows in either form from one replay to the next.  A deletion that
    still diverges at the finding's step, in an observation the finding differed in, is
    kept; another step or another observation is not the finding.  On the model, whose
    replays do not vary, only the exact signature is."""
    actions = ["enable"] + ["migrate"] * 6 + ["create_cq", "io"] + ["migrate"] * 6 + ["consume"]
    needed = {"enable", "create_cq", "io", "consume"}
    finding = Verdict("divergence", "divergence:posted/io/missing", "", len(actions) - 1,
                      also=("divergence:posted/io/cqes",))
    qemu = Trace(target=TargetConfig(kind="qemu").to_plain(), campaign="c", seed=0,
                 steps=tuple(Step(a, {}) for a in actions), verdict=finding)
    model = attrs.evolve(qemu, target={"kind": "model"})

    def shrunk(trace: Trace, form: str) -> Trace:
        return minimize(trace, replay=_two_forms(needed, len(actions), form))

    out = shrunk(qemu, "both")
    assert [s.action for s in out.steps] == ["enable", "create_cq", "io", "consume"]
    assert out.verdict.step == 3 and out.verdict.signature == "divergence:irq/missing"
    for form in ("before", "other"):                 # not the finding: nothing can go
        assert shrunk(qemu, form).steps == qemu.steps
    assert shrunk(model, "both").steps == model.steps   # the model's replays agree exactly
    # unless the caller says its replays vary (``nvmefuzz diff``: QEMU beside the model)
    out = minimize(model, replay=_two_forms(needed, len(actions), "both"), varies=True)
    assert [s.action for s in out.steps] == ["enable", "create_cq", "io", "consume"]
    assert minimize(qemu, replay=_two_forms(needed, len(actions), "both"),
                    varies=False).steps == qemu.steps


def test_on_qemu_the_leeway_stays_at_the_failing_step_when_the_tail_could_not_be_cut():
    """The cut trace did not reproduce at first (QEMU), so deletion goes on over the whole
    trace, steps after the failing one included.  A deletion of the failing step whose replay
    diverges later, in one of the finding's observations, is still another step's finding."""
    calls = []

    def flaky(trace: Trace):
        calls.append(1)
        acts = [s.action for s in trace.steps]
        at = acts.index("x") if "x" in acts else acts.index("t2") if "t2" in acts else None
        if len(calls) == 1 or at is None:
            return Verdict(PASS), None
        return Verdict("divergence", "divergence:irq/missing", "", at,
                       also=("divergence:posted/io/cqes",)), None

    qemu = Trace(target=TargetConfig(kind="qemu").to_plain(), campaign="c", seed=0,
                 steps=tuple(Step(a, {}) for a in ["a", "b", "c", "x", "t1", "t2"]),
                 verdict=Verdict("divergence", "divergence:posted/io/missing", "", 3))
    out = minimize(qemu, replay=flaky)
    assert [s.action for s in out.steps] == ["x"] and out.verdict.step == 0


# ---------------------------------------------------------------- values, and QEMU via the model
def _qemu(steps) -> Trace:
    """A QEMU trace of ``steps`` with the verdict the model reaches under the QEMU profile."""
    t = Trace(target=TargetConfig(kind="qemu").to_plain(), campaign="c", seed=0,
              steps=tuple(steps))
    return attrs.evolve(t, verdict=replay(on_model(t))[0])


def _on_model(trace: Trace):
    """The model in QEMU's place, as the qemu target would show it (no QEMU needed)."""
    return replay(on_model(trace))


#: QEMU 11.1 reports DMRSL 0 after a migration (Identify CNS 06h), with steps it does not need
DMRSL = [Step("enable", {"asqs": 7, "acqs": 7}),
         Step("create_cq", {"qid": 1, "size": 8, "iv": 3}),
         Step("admin", {"opc": 0x0A, "cdw10": 0x07, "length": 0}),
         Step("migrate"), Step("advance", {"ns": 5000}),
         Step("admin", {"opc": 6, "cdw10": 6, "length": 4096})]


def test_simplify_makes_each_argument_as_simple_as_the_finding_allows():
    t = _qemu(DMRSL)
    model = attrs.evolve(on_model(t), verdict=t.verdict)
    out = simplify(model)
    assert out.verdict.signature == t.verdict.signature == (
        "divergence:cqe/admin/IDENTIFY/cns=0x06/data@0x4")
    assert out.steps[0] == Step("enable", {})                 # defaults: the arguments went
    assert out.steps[-1].args["cdw10"] == 6                   # CNS 06h is what it needs
    assert len(out.steps) == len(DMRSL)                       # it deletes no steps
    assert simplify(out) == out                               # nothing left to simplify


def test_a_qemu_finding_the_model_reproduces_is_shrunk_there_and_confirmed():
    t = _qemu(DMRSL)
    assert reproduces_on_model(t)
    confirmed = []

    def on_qemu(trace):
        confirmed.append(trace.target["kind"])
        return _on_model(trace)

    out = via_model(t, replay=on_qemu)
    assert out.target == t.target                             # still the QEMU trace
    assert [s.action for s in out.steps] == ["enable", "migrate", "admin"]
    assert out.verdict.signature == t.verdict.signature
    assert confirmed == ["model"] * (len(confirmed) - 1) + ["qemu"]   # one replay on QEMU


def test_a_qemu_finding_is_not_taken_from_the_model_unless_qemu_confirms_it():
    t = _qemu(DMRSL)
    assert via_model(t, replay=lambda tr: (Verdict(PASS), None) if tr.target["kind"] == "qemu"
                     else _on_model(tr)) is None
    assert via_model(t, replay=_on_model, keep=lambda tr: False) is None      # known


def test_qemu_may_confirm_the_other_form_of_the_finding_but_not_another_one():
    """By QEMU's timing the same loss shows in a step's other observation, or differs in how
    (one CQE where two went missing): a confirmation at the model's step in an observation
    the model's verdict holds.  Another step, or another observation, confirms nothing."""
    t = _qemu(DMRSL)
    obs = t.verdict.signature.rsplit("/", 1)[0]

    def qemu_shows(signature: str, later: int = 0):
        def replay_(trace):
            if trace.target["kind"] != "qemu":
                return _on_model(trace)
            seen = _on_model(trace)[0]
            return attrs.evolve(seen, signature=signature, step=seen.step + later), None
        return replay_

    out = via_model(t, replay=qemu_shows(obs + "/data@0x8"))
    assert [s.action for s in out.steps] == ["enable", "migrate", "admin"]
    assert out.verdict.signature == obs + "/data@0x8"         # what QEMU showed, stored
    assert via_model(t, replay=qemu_shows("divergence:irq/extra")) is None
    assert via_model(t, replay=qemu_shows(t.verdict.signature, later=1)) is not None
    assert via_model(t, replay=qemu_shows(obs + "/data@0x8", later=1)) is None


def test_a_qemu_finding_the_model_does_not_reproduce_stays_for_qemu():
    seen = attrs.evolve(_qemu(DMRSL[:3]), verdict=Verdict("divergence", "divergence:x", "", 2))
    assert not reproduces_on_model(seen)
    assert via_model(seen, replay=_on_model) is None
    assert not reproduces_on_model(attrs.evolve(seen, target={"kind": "model"}))


def _needs(check):
    """A replay that diverges at the last step when ``check(steps)`` holds, and counts calls."""
    calls = []

    def replay(trace: Trace):
        calls.append(1)
        if check(trace.steps):
            return Verdict("divergence", "divergence:x", "", len(trace.steps) - 1, -1), None
        return Verdict(PASS), None
    return replay, calls


def _finding(*steps: Step) -> Trace:
    return Trace(target={"kind": "model"}, campaign="c", seed=0, steps=steps,
                 verdict=Verdict("divergence", "divergence:x", "", len(steps) - 1, -1))


def test_a_number_is_simplified_by_bisection_to_the_least_that_reproduces():
    """An hour of virtual time where a millisecond and a bit is what the finding needs: the
    least value that works, in tens of replays, not millions."""
    replay, calls = _needs(lambda steps: steps[0].args.get("ns", 0) >= 1_234_567)
    out = simplify(_finding(Step("advance", {"ns": 3_600_000_000_000}), Step("admin")),
                   replay=replay)
    assert out.steps[0].args == {"ns": 1_234_567}
    assert len(calls) < 100


def test_a_list_loses_the_elements_it_can_and_its_elements_are_simplified():
    """DSM ranges: of three, only one with two blocks or more is needed; it becomes (0, 2)."""
    replay, _ = _needs(lambda steps: any(n >= 2 for _, n in steps[0].args.get("ranges", ())))
    out = simplify(_finding(Step("io", {"ranges": [[0, 1], [8, 8], [100, 3]]})), replay=replay)
    assert out.steps[0].args == {"ranges": [[0, 2]]}
    replay, _ = _needs(lambda steps: len(steps[0].args.get("ranges", ())) == 2)
    out = simplify(_finding(Step("io", {"ranges": [[5, 9], [7, 1]]})), replay=replay)
    assert out.steps[0].args == {"ranges": [[0, 0], [0, 0]]}      # a range stays a pair


def test_shrink_repeats_until_a_simpler_value_has_freed_the_steps_it_can():
    """Once the big value is gone, the step that only mattered with it goes too."""
    def check(steps):        # it needs the advance, and the enable only with a long one
        ns = [s.args.get("ns", 0) for s in steps if s.action == "advance"]
        return (steps[-1].action == "admin" and bool(ns)
                and (ns[0] <= 10 or steps[0].action == "enable"))
    replay, _ = _needs(check)
    t = _finding(Step("enable"), Step("advance", {"ns": 50}), Step("admin"))
    assert [s.action for s in minimize(t, replay=replay).steps] == ["enable", "advance", "admin"]
    out = shrink(t, replay=replay)
    assert out.steps == (Step("advance"), Step("admin"))


def test_a_stored_finding_is_shrunk_again_keeping_its_root_cause():
    """The corpus's nvmecs-v0 Abort finding is lost AEN config and CQ tail together; shrunk
    with no regard for that it becomes the CQ tail alone, which another stored finding is.
    ``reshrink`` keeps verdict, signature and cause, and the file name with them."""
    from nvmefuzz.fuzz.known import root_cause
    from nvmefuzz.trace import corpus

    path = CORPUS / "nvmecs-v0" / "divergence-cqe-admin-abort-missing-ae0261168a.cbor"
    stored = corpus.load(path)
    cause = root_cause(stored).key
    assert cause == "lost features.async_config + cq.tail"
    assert root_cause(shrink(stored)).key == "lost cq.tail"
    padded = attrs.evolve(stored, steps=(stored.steps[0], Step("migrate"), *stored.steps[1:]),
                          verdict=attrs.evolve(stored.verdict, step=stored.verdict.step + 1))
    out = reshrink(padded)
    assert len(out.steps) <= len(stored.steps) and root_cause(out).key == cause
    assert out.verdict.signature == stored.verdict.signature
    assert corpus.path_for(CORPUS, out) == path
    assert reshrink(out) == out                         # as small as it gets


def test_a_stored_qemu_trace_is_shrunk_again_only_if_qemu_reproduces_it_every_time():
    """Shrunk on the model, then QEMU must reach the verdict in all CONFIRMATIONS replays: a
    stored reproducer that comes and goes would read as a regression in CI."""
    from nvmefuzz.fuzz.minimize import CONFIRMATIONS

    t = _qemu(DMRSL)
    on_qemu = []

    def steady(trace):
        if trace.target["kind"] == "qemu":
            on_qemu.append(trace.steps)
        return _on_model(trace)

    out = reshrink(t, replay=steady)
    assert [s.action for s in out.steps] == ["enable", "migrate", "admin"]
    assert on_qemu == [out.steps] * CONFIRMATIONS and CONFIRMATIONS >= 2

    def flaky(trace):                    # QEMU shows it once, then no more
        if trace.target["kind"] == "qemu":
            on_qemu.append(trace.steps)
            if len(on_qemu) > 1:
                return Verdict(PASS), None
        return _on_model(trace)

    on_qemu.clear()
    assert reshrink(t, replay=flaky) == t and len(on_qemu) == 2


def test_a_stored_qemu_trace_keeps_its_signature_when_shrunk_again():
    """A run stores the other form of a finding QEMU confirmed, but a stored trace's file is
    its signature: shrunk again, it keeps its form or stays as it is."""
    t = _qemu(DMRSL)
    other = t.verdict.signature.rsplit("/", 1)[0] + "/data@0x8"

    def other_form(trace):
        seen = _on_model(trace)
        if trace.target["kind"] != "qemu":
            return seen
        return attrs.evolve(seen[0], signature=other), None

    assert reshrink(t, replay=other_form) == t
