"""Running a campaign: batch sizes under a time budget, and how findings are shrunk."""

from __future__ import annotations

import attrs
from hypothesis.errors import FlakyStrategyDefinition
from hypothesis.internal.conjecture import engine

from nvmefuzz.fuzz import campaign as campaigns
from nvmefuzz.fuzz import session
from nvmefuzz.fuzz.minimize import reproduces_on_model, simplify
from nvmefuzz.fuzz.runner import FIRST_BATCH, run_campaign
from nvmefuzz.report.summary import summary
from nvmefuzz.targets import open_target
from nvmefuzz.targets.base import QEMU_VIEW
from nvmefuzz.trace.schema import Step


def test_a_qemu_run_shrinks_what_the_model_reproduces_on_the_model(monkeypatch, tmp_path):
    """The model under the QEMU profile stands in for QEMU: every finding is shrunk on the
    model, Hypothesis never shrinks with the target in the loop, and QEMU confirms."""
    monkeypatch.setattr(session, "open_target", lambda cfg, **kw: open_target(
        attrs.evolve(cfg, kind="model", profile="qemu-11.1", **QEMU_VIEW))
        if cfg.kind == "qemu" else open_target(cfg))
    shrinks = []
    real = engine.ConjectureRunner.shrink
    monkeypatch.setattr(engine.ConjectureRunner, "shrink",
                        lambda self, *a, **k: shrinks.append(1) or real(self, *a, **k))
    camp = attrs.evolve(campaigns.load("default"), target="qemu")
    result = run_campaign(camp, seed=1, examples=300, corpus_dir=tmp_path / "corpus",
                          out_dir=tmp_path / "run")
    assert result.findings
    assert result.stats["findings shrunk on the model"] == len(result.findings)
    assert not shrinks
    for f in result.findings:
        assert f.trace.target["kind"] == "qemu" and len(f.trace.steps) <= 8
        assert reproduces_on_model(f.trace)
        assert f.raw_path is not None and f.raw_path.exists()    # as first seen, unshrunk


def test_a_qemu_run_goes_on_after_a_batch_its_timing_ended(monkeypatch):
    """Hypothesis stops a batch when QEMU's timing made the same choices draw differently:
    the run counts it and goes on; on the model that is a bug and would propagate."""
    from nvmefuzz.fuzz import runner

    calls: list[bool] = []
    real = runner.run_batch

    def run_batch(machine, config, seed, nondeterministic=False):
        calls.append(nondeterministic)
        if len(calls) == 1:
            return FlakyStrategyDefinition("the same choices drew differently")
        return real(machine, config, seed, nondeterministic)

    monkeypatch.setattr(runner, "run_batch", run_batch)
    monkeypatch.setattr(session, "open_target", lambda cfg, **kw: open_target(
        attrs.evolve(cfg, kind="model", profile="full", **QEMU_VIEW)))
    camp = attrs.evolve(campaigns.load("default"), target="qemu")
    result = run_campaign(camp, seed=1, examples=6, batch=3)
    assert calls == [True, True]
    assert result.stats["batches ended by timing"] == 1
    assert result.stats["examples"] == 3 and not result.findings
    assert summary(result)["batches_ended_by_timing"] == 1


def test_a_timed_run_measures_its_rate_on_a_small_first_batch():
    """A first batch of 100 QEMU examples overran a 30-second nightly slice by up to 90 s:
    a time-budgeted run starts with ``FIRST_BATCH`` examples and sizes the rest by the rate
    they showed; an example budget runs full batches."""
    def sizes(**budget) -> list[int]:
        out: list[int] = []
        run_campaign(campaigns.load("default"), seed=1, batch=20, **budget,
                     progress=lambda r: out.append(r.stats["examples"] - sum(out)))
        return out

    timed = sizes(seconds=3.0)
    assert timed[0] == FIRST_BATCH and max(timed[1:]) > FIRST_BATCH
    first, *rest = sizes(examples=30)      # Hypothesis may run an example it then discards
    assert first == 20 and len(rest) == 1 and 10 <= rest[0] <= 12


def test_a_model_finding_is_stored_with_arguments_as_simple_as_it_allows(tmp_path):
    """After Hypothesis and step deletion, ``simplify``: nothing in the stored trace can be
    left at its default or made smaller and still reach the verdict."""
    camp = campaigns.load("mutant-hunt-admin").with_profile("full-without-acq")
    result = run_campaign(camp, seed=1, examples=50, corpus_dir=tmp_path)
    [finding] = result.findings
    assert simplify(finding.trace) == finding.trace
    assert finding.trace.steps[0] == Step("enable", {})


def test_a_findings_shrinking_keeps_to_what_is_left_of_the_time_budget(monkeypatch):
    """A finding met late in a nightly slice was shrunk for minutes past it: each pass gets
    its own bound, but no more than what is left of the budget, or ``SHRINK_FLOOR`` seconds
    from the finding where less is left, for all the passes together."""
    from nvmefuzz.fuzz import runner

    now = [1000.0]
    monkeypatch.setattr(runner.time, "monotonic", lambda: now[0])
    assert runner._shrink_clock(None, 0.0)(120.0) == 120.0          # an example budget
    assert runner._shrink_clock(300.0, 1000.0)(60.0) == 60.0        # the budget has room
    now[0] = 1280.0
    left = runner._shrink_clock(300.0, 1000.0)                      # 20 s left
    assert left(60.0) == 20.0
    now[0] = 1290.0
    assert left(120.0) == 10.0                                      # the passes share them
    now[0] = 1500.0
    left = runner._shrink_clock(300.0, 1000.0)                      # spent: the floor
    assert left(60.0) == runner.SHRINK_FLOOR
    now[0] += runner.SHRINK_FLOOR + 1
    assert left(60.0) == 0.0


def test_a_timed_qemu_run_gives_its_shrinking_passes_no_more_than_its_budget(monkeypatch):
    """The passes after Hypothesis are bounded by the run's budget (here less than the floor
    is left), where an example budget leaves them their own bounds."""
    from nvmefuzz.fuzz import runner

    monkeypatch.setattr(session, "open_target", lambda cfg, **kw: open_target(
        attrs.evolve(cfg, kind="model", profile="qemu-11.1", **QEMU_VIEW))
        if cfg.kind == "qemu" else open_target(cfg))
    given: list[float] = []
    for name in ("via_model", "minimize"):
        real = getattr(runner, name)
        monkeypatch.setattr(runner, name, lambda t, seconds, *a, real=real, **k: (
            given.append(seconds), real(t, seconds, *a, **k))[1])
    camp = attrs.evolve(campaigns.load("default"), target="qemu")
    result = run_campaign(camp, seed=1, seconds=3.0)
    assert result.findings and given
    assert all(0 <= s <= runner.SHRINK_FLOOR for s in given)
    given.clear()
    run_campaign(camp, seed=1, examples=300)
    assert set(given) == {60.0, 120.0}


def test_hypothesis_shrinks_a_late_finding_within_what_is_left_of_the_budget(monkeypatch):
    """Hypothesis' own bound is read when it starts shrinking: a run sets it when the batch
    first fails, to what is left of the budget (here less than ``SHRINK_FLOOR``)."""
    from nvmefuzz.fuzz import runner

    bounds: list[int] = []
    real = engine.ConjectureRunner.shrink_interesting_test_cases

    def shrink_interesting_test_cases(self):
        bounds.append(engine.MAX_SHRINKING_SECONDS)
        return real(self)

    monkeypatch.setattr(engine.ConjectureRunner, "shrink_interesting_test_cases",
                        shrink_interesting_test_cases)
    # the batch began with 30 s left and met its finding 28 s later
    clock, late = runner.time.monotonic, [0.0]
    monkeypatch.setattr(runner.time, "monotonic", lambda: clock() + late[0])
    finding = runner.RawWriter.finding
    monkeypatch.setattr(runner.RawWriter, "finding",
                        lambda self, t: (late.__setitem__(0, 28.0), finding(self, t))[1])
    camp = campaigns.load("mutant-hunt-admin").with_profile("full-without-acq")
    assert run_campaign(camp, seed=1, seconds=30.0).findings
    assert bounds and set(bounds) == {runner.SHRINK_FLOOR}
    monkeypatch.setattr(runner.RawWriter, "finding", finding)
    bounds.clear()
    assert run_campaign(camp, seed=1, examples=20).findings
    assert bounds and all(b > runner.SHRINK_FLOOR for b in bounds)


def test_a_finding_qemu_confirmed_in_its_other_form_keeps_its_raw_trace(monkeypatch, tmp_path):
    """The finding stored is the form QEMU confirmed; its raw trace is the one first seen."""
    from nvmefuzz.fuzz import runner

    monkeypatch.setattr(session, "open_target", lambda cfg, **kw: open_target(
        attrs.evolve(cfg, kind="model", profile="qemu-11.1", **QEMU_VIEW))
        if cfg.kind == "qemu" else open_target(cfg))
    real = runner.via_model

    def other_form(trace, seconds, **kw):
        small = real(trace, seconds, **kw) or trace
        return attrs.evolve(small, verdict=attrs.evolve(
            small.verdict, signature=small.verdict.signature + "-other"))

    monkeypatch.setattr(runner, "via_model", other_form)
    monkeypatch.setattr(runner, "minimize", lambda trace, seconds, **kw: trace)
    camp = attrs.evolve(campaigns.load("default"), target="qemu")
    result = run_campaign(camp, seed=1, examples=100, out_dir=tmp_path)
    assert result.findings
    for f in result.findings:
        assert f.signature.endswith("-other")
        assert f.raw_path is not None and f.raw_path.exists()
