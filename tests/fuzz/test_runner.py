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
    result = run_campaign(camp, seed=1, examples=300, corpus_dir=tmp_path)
    assert result.findings
    assert result.stats["findings shrunk on the model"] == len(result.findings)
    assert not shrinks
    for f in result.findings:
        assert f.trace.target["kind"] == "qemu" and len(f.trace.steps) <= 8
        assert reproduces_on_model(f.trace)


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
    assert sizes(examples=30) == [20, 10]


def test_a_model_finding_is_stored_with_arguments_as_simple_as_it_allows(tmp_path):
    """After Hypothesis and step deletion, ``simplify``: nothing in the stored trace can be
    left at its default or made smaller and still reach the verdict."""
    camp = campaigns.load("mutant-hunt-admin").with_profile("full-without-acq")
    result = run_campaign(camp, seed=1, examples=50, corpus_dir=tmp_path)
    [finding] = result.findings
    assert simplify(finding.trace) == finding.trace
    assert finding.trace.steps[0] == Step("enable", {})
