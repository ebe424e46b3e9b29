"""One batch of a state machine: what ends it, the seed, and the example database key."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import Phase, settings
from hypothesis.database import InMemoryExampleDatabase
from hypothesis import strategies as st
from hypothesis.errors import FlakyStrategyDefinition
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from nvmefuzz.errors import Divergence
from nvmefuzz.fuzz import batch
from nvmefuzz.fuzz.batch import Observer, batch_settings, divergent, run_batch
from nvmefuzz.fuzz.campaign import load
from nvmefuzz.fuzz.machine import build_machine


def _machine(profile: str, observer: Observer | None = None):
    return build_machine(load("mutant-hunt-admin").with_profile(profile), observer)


def test_a_batch_ends_with_the_divergence_it_found():
    """A mutant that loses ACQ is caught; the observer heard of the finding first."""
    obs = Observer()
    failure = run_batch(_machine("full-without-acq", obs), batch_settings(50, 40), seed=1)
    assert failure is not None
    assert divergent(failure)
    assert obs.last_failure is not None and not obs.last_failure.verdict.ok


def test_a_batch_without_a_finding_returns_none():
    obs = Observer()
    assert run_batch(_machine("full", obs), batch_settings(4, 30), seed=1) is None
    assert obs.stats["examples"] == 4


def test_the_same_seed_gives_the_same_examples():
    runs = []
    for _ in range(2):
        obs = Observer()
        run_batch(_machine("full", obs), batch_settings(4, 30), seed=7)
        runs.append((obs.stats["steps"], obs.stats["migrations"]))
    assert runs[0] == runs[1]


def test_a_failure_saved_by_a_batch_replays_from_the_machine_class():
    """The factory keeps the class's database key: a finding saved by a batch is the one
    Hypothesis replays for the machine class itself (and for later runs of the fuzzer)."""
    db = InMemoryExampleDatabase()
    machine = _machine("full-without-acq")
    assert run_batch(machine, batch_settings(50, 40, database=db), seed=1) is not None
    test = machine.TestCase
    test.settings = settings(database=db, phases=[Phase.reuse], deadline=None,
                             stateful_step_count=40)
    with pytest.raises(Exception) as caught:
        test("runTest").runTest()
    assert divergent(caught.value)


def test_a_machine_class_has_its_database_key_digested_once(monkeypatch):
    """Hypothesis would tokenise its test's source for the key on every batch; the key is
    the class's, so the batches after its first reuse it (and replay, above, shows it is
    the key Hypothesis itself gives the class)."""
    digests = []
    real = batch.function_digest
    monkeypatch.setattr(batch, "function_digest", lambda f: digests.append(f) or real(f))
    machine, other = _machine("full"), _machine("full-without-acq")
    for seed in (1, 2, 3):
        run_batch(machine, batch_settings(1, 5), seed)
    assert len(digests) == 1
    run_batch(other, batch_settings(1, 5), 1)
    assert len(digests) == 2
    assert batch.database_key(machine, None) != batch.database_key(other, None)


class _Broken(RuleBasedStateMachine):
    @rule()
    def fail(self) -> None:
        raise ValueError("not a divergence")


def test_an_error_that_is_not_a_divergence_propagates():
    with pytest.raises(ValueError, match="not a divergence"):
        run_batch(_Broken, batch_settings(3, 5, phases=(Phase.generate,)), seed=1)


class _DrawsLessOnReplay(RuleBasedStateMachine):
    """A target that diverges, then behaves differently when Hypothesis replays the example
    (as a real QEMU may): Hypothesis raises FlakyStrategyDefinition while handling it."""

    runs = 0

    @rule(data=st.data())
    def step(self, data) -> None:
        type(self).runs += 1
        if type(self).runs == 3:
            data.draw(st.integers(0, 9))
            raise Divergence("divergence", "x", "first time")
        if type(self).runs > 3:
            raise Divergence("divergence", "x", "again, drawing less")


def test_a_finding_that_replays_differently_still_ends_the_batch_as_a_finding():
    _DrawsLessOnReplay.runs = 0
    failure = run_batch(_DrawsLessOnReplay, batch_settings(20, 5), seed=3)
    assert failure is not None and divergent(failure)


class _RulesComeAndGo(RuleBasedStateMachine):
    """Which rules apply changes from run to run, as on a real QEMU where whether a completion
    has arrived decides whether an SQ has room: Hypothesis sees the same choices draw
    differently and stops with FlakyStrategyDefinition."""

    looks = 0

    @rule()
    def step(self) -> None:
        pass

    @precondition(lambda self: _RulesComeAndGo._look() % 3 != 0)
    @rule(n=st.integers(0, 3))
    def sometimes(self, n: int) -> None:
        pass

    @classmethod
    def _look(cls) -> int:
        cls.looks += 1
        return cls.looks


def test_a_target_whose_timing_varies_ends_a_batch_when_hypothesis_sees_it_draw_differently():
    config = batch_settings(100, 10)
    with pytest.raises(FlakyStrategyDefinition):         # on the model: a bug of the machine
        run_batch(_RulesComeAndGo, config, seed=1)
    ended = run_batch(_RulesComeAndGo, config, seed=1, nondeterministic=True)
    assert isinstance(ended, FlakyStrategyDefinition) and not divergent(ended)
    assert run_batch(_machine("full"), batch_settings(3, 20), seed=1,
                     nondeterministic=True) is None
    with pytest.raises(ValueError, match="not a divergence"):
        run_batch(_Broken, batch_settings(3, 5), seed=1, nondeterministic=True)


def test_a_batch_never_shrinks_hypothesis_pareto_front():
    """With an example database Hypothesis keeps a Pareto front of target() scores and shrinks
    all of it, unbounded; inside a batch that pass does nothing, and it is back after."""
    from hypothesis.internal.conjecture import engine

    from nvmefuzz.fuzz.runner import _shrink_budget

    original = engine.ConjectureRunner.pareto_optimise
    old_budget = engine.MAX_SHRINKING_SECONDS
    with _shrink_budget() as limit:
        assert engine.ConjectureRunner.pareto_optimise is not original
        assert engine.ConjectureRunner.pareto_optimise(object()) is None
        assert engine.MAX_SHRINKING_SECONDS == old_budget       # until the batch fails
        limit(29.2)
        assert engine.MAX_SHRINKING_SECONDS == min(30, old_budget)
        limit(float("inf"))
        assert engine.MAX_SHRINKING_SECONDS == old_budget       # never more than its own
        limit(0)
        assert engine.MAX_SHRINKING_SECONDS == 0
    assert engine.ConjectureRunner.pareto_optimise is original
    assert engine.MAX_SHRINKING_SECONDS == old_budget


def test_a_batch_says_nothing_when_its_shrink_budget_runs_out(monkeypatch, capsys):
    """A run's shrink budget stops Hypothesis shrinking routinely (``runner._shrink_budget``);
    its warning about five minutes spent shrinking would be false, and is not printed."""
    from hypothesis.internal.conjecture import engine

    monkeypatch.setattr(engine, "MAX_SHRINKING_SECONDS", 0)
    obs = Observer()
    assert run_batch(_machine("full-without-acq", obs), batch_settings(50, 40), seed=1)
    out = capsys.readouterr()
    assert "WARNING" not in out.out + out.err and obs.last_failure is not None


def test_warm_up_pays_a_fresh_process_one_off_costs_before_its_first_batch():
    """A fresh process: no constant pool and no Hypothesis run yet; ``warm_up`` builds the
    pool and runs Hypothesis once, so neither is left for the first batch to pay."""
    probe = (
        "import hypothesis.core as core\n"
        "from nvmefuzz.fuzz import batch\n"
        "before = (batch.constant_pool.cache_info().currsize,\n"
        "          core.threadlocal._hypothesis_global_random is not None)\n"
        "batch.warm_up()\n"
        "after = (batch.constant_pool.cache_info().currsize,\n"
        "         core.threadlocal._hypothesis_global_random is not None)\n"
        "print(before, after)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.split("\n")[0]
    assert out == "(0, False) (1, True)"
