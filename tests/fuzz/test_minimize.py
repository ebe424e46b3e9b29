"""Step-level shrinking of findings: deletes what the verdict does not need, nothing else."""

from __future__ import annotations

from nvmefuzz.fuzz.minimize import minimize
from nvmefuzz.trace.schema import PASS, Step, Trace, Verdict


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
