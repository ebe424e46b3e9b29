"""Hunting one mutant: the nvmefuzz state machine and the baselines it is measured against.

Every strategy gets the same campaigns (their profile set to the mutant), the same seed and
the same wall-clock budget, drives the same ``Session`` with steps of the same vocabulary
(``fuzz.actions``), and returns a ``Kill``: whether and when the first failing example was
seen, how many examples that took, and how long the reproducer it hands the user is.

* ``state_machine``: the Hypothesis machine in batches as ``run_campaign`` runs them
  (``fuzz.batch``, seed ``seed * 1000003 + batch``), stopping at the first finding.  The
  campaigns take batches in turn, 3 examples each in the first round, doubling every round
  up to 80 (``batch_size``): every campaign gets a look within the first tenth of a second,
  and batches of 20 and more leave Hypothesis room for its target phase (from half the
  batch on), where ``target()`` steers.  One ``hardness.Memory`` per campaign steers migrations
  across the run's batches.  ``steer=False`` is the baseline without guidance: no read-back
  after a migration that lost state inside, no steered migrations, no ``target()``; the
  same rules, weights, strategies and shrinking.  The reproducer is what ``run_campaign``
  gives the user: Hypothesis' shrunk trace after ``minimize.shrink`` deleted the steps and
  simplified the arguments it does not need.
* ``random_walk``: Python's ``random.Random(seed)`` picks uniformly among the actions (and
  ``migrate``) and uniformly among each argument's values; no preconditions, no bundles, no
  shrinking: the reproducer is the walk up to the failing step.  A walk takes ``WALK_STEPS``
  steps, whatever the campaign's step budget: without guidance a walk needs its length to
  build state, so it keeps the length it kills best with.
* ``functional``: the method of QEMU's migration functional test: a guest read/write workload
  with one migration at a random point, then the test checks only that the workload finished
  with success and that reading back gives the data written.  Nothing is compared per step.
  A workload takes ``WALK_STEPS`` steps too.

With several campaigns, batches (walks, workloads) take them in turn.
"""

from __future__ import annotations

import random
import time
from typing import Callable, Sequence

import attrs

from nvmefuzz.errors import Divergence
from nvmefuzz.fuzz import walk
from nvmefuzz.fuzz.batch import batch_settings, run_batch
from nvmefuzz.fuzz.campaign import Campaign
from nvmefuzz.fuzz.machine import Observer, build_machine
from nvmefuzz.fuzz.minimize import shrink
from nvmefuzz.fuzz.session import Session
from nvmefuzz.targets import TargetConfig
from nvmefuzz.trace.schema import Step, Trace, Verdict

#: examples in the first batch of each campaign; each round of campaigns doubles it up to
#: ``MAX_BATCH``, so every campaign gets a look early and later batches are long enough for
#: Hypothesis' target phase (it runs in the second half of a batch of 20 or more).  A batch
#: opens with Hypothesis' simplest example (one rule repeated, about 8 ms), and its second is
#: often power-on alone (under 1 ms).  Over the catalogue's 225 hunts (warm processes, no
#: shrink) a first batch of 3 reached nvmefuzz's median kill in 0.078 s, one of 2 in 0.089 s
FIRST_BATCH, MAX_BATCH = 3, 80
#: steps of a random walk or a functional workload.  Walks are worse shorter and no better
#: longer: over the catalogue (seed 1, 5 s budget) walks of 40 steps reached a median time
#: to kill of 0.42 s, walks of 80 0.15 s, walks of 160 0.15 s
WALK_STEPS = 80


@attrs.frozen
class Kill:
    """How one strategy fared against one mutant."""

    strategy: str
    killed: bool
    seconds: float | None = None        # wall time to the first failing example
    examples: int = 0                   # examples run, the failing one included
    length: int | None = None           # steps of the reproducer the user gets
    raw_length: int | None = None       # steps of the first failing example
    signature: str = ""
    shrink_seconds: float = 0.0
    trace: bytes = b""                  # the reproducer, encoded

    def to_plain(self) -> dict:
        return {k: v for k, v in attrs.asdict(self).items() if k != "trace"}


def _session(camp: Campaign) -> Session:
    cfg = TargetConfig(kind=camp.target, profile=camp.profile, msix=camp.msix)
    return Session(cfg, camp.waivers, camp.refusals)


def _trace(camp: Campaign, seed: int, steps: list[Step], exc: Divergence) -> Trace:
    cfg = TargetConfig(kind=camp.target, profile=camp.profile, msix=camp.msix)
    verdict = Verdict.of(exc, len(steps) - 1)
    return Trace(target=cfg.to_plain(), campaign=camp.name, seed=seed, steps=tuple(steps),
                 verdict=verdict, waivers=camp.waivers, refusals=camp.refusals)


# ---------------------------------------------------------------------- the state machine
class _FirstSeen(Observer):
    """An observer that notes when, and after how many examples, a failure was first seen."""

    def __init__(self) -> None:
        super().__init__()
        self.first: tuple[float, int, int] | None = None   # (time, examples, raw length)

    def finding(self, trace: Trace) -> None:
        super().finding(trace)
        if self.first is None:
            self.first = (time.monotonic(), self.stats["examples"] + 1, len(trace.steps))


def batch_size(b: int, campaigns: int) -> int:
    """Examples in batch ``b`` when ``campaigns`` campaigns take batches in turn."""
    return min(MAX_BATCH, FIRST_BATCH << b // campaigns)


def state_machine(camps: Sequence[Campaign], seed: int, seconds: float, *,
                  steer: bool = True) -> Kill:
    """Batches of the Hypothesis machine until the first finding or the budget is spent."""
    name = "nvmefuzz" if steer else "unguided"
    obs = _FirstSeen()
    start = time.monotonic()
    b = 0
    machines = []                   # each built when its campaign's first batch comes
    while time.monotonic() - start < seconds:
        camp = camps[b % len(camps)]
        if b < len(camps):
            machines.append(build_machine(camp, obs, steer=steer))
        machine = machines[b % len(camps)]
        failed = run_batch(machine, batch_settings(batch_size(b, len(camps)), camp.steps),
                           seed * 1_000_003 + b) is not None
        b += 1
        if failed and obs.first is not None and obs.last_failure is not None:
            seen, examples, raw = obs.first
            # what ``run_campaign`` hands the user: Hypothesis' shrink, then the model's
            trace = shrink(attrs.evolve(obs.last_failure, seed=seed))
            return Kill(name, seen - start <= seconds, seen - start, examples,
                        len(trace.steps), raw, trace.verdict.signature,
                        time.monotonic() - seen, trace.encode())
    return Kill(name, False, examples=obs.stats["examples"])


def unguided(camps: Sequence[Campaign], seed: int, seconds: float) -> Kill:
    return state_machine(camps, seed, seconds, steer=False)


# ---------------------------------------------------------------------- random walk
def random_walk(camps: Sequence[Campaign], seed: int, seconds: float) -> Kill:
    """Uniformly random walks of ``WALK_STEPS`` steps, each starting with the machine's
    power-on step; the first walk that diverges is the reproducer."""
    rng = random.Random(seed)
    start = time.monotonic()
    walks = 0
    while time.monotonic() - start < seconds:
        camp = camps[walks % len(camps)]
        walks += 1
        session = _session(camp)
        steps = [walk.POWER_ON]
        try:
            session.apply(steps[0])
            for _ in range(WALK_STEPS - 1):
                steps.append(walk.random_step(rng))
                session.apply(steps[-1])
        except Divergence as exc:
            took = time.monotonic() - start
            trace = _trace(camp, seed, steps, exc)
            return Kill("random-walk", took <= seconds, took, walks, len(steps), len(steps),
                        exc.signature, 0.0, trace.encode())
        finally:
            session.close()
    return Kill("random-walk", False, examples=walks)


# ---------------------------------------------------------------------- QEMU's functional test
class _Blind:
    """A comparator that sees no difference: the functional test only checks its verdict."""

    def differences(self, twin: list, mig: list, views: object = None) -> list:
        return []


def functional(camps: Sequence[Campaign], seed: int, seconds: float) -> Kill:
    """Random read/write workloads with one migration each, judged only at the end."""
    rng = random.Random(seed)
    start = time.monotonic()
    runs = 0
    while time.monotonic() - start < seconds:
        camp = camps[runs % len(camps)]
        runs += 1
        session = _session(camp)
        session.comparator = _Blind()
        workload = walk.Workload(rng, WALK_STEPS, session.mig_host, camp.msix)
        seen: list[list] = []
        session.on_step = lambda i, step, twin, mig: seen.append(mig)
        steps: list[Step] = []
        failure: Divergence | None = None
        try:
            for step in workload.steps():
                steps.append(step)
                session.apply(step)
            failure = workload.judge(session.mig_host, seen)
        except Divergence as exc:            # the migration itself failed (load error)
            failure = exc
        finally:
            session.close()
        if failure is not None:
            took = time.monotonic() - start
            trace = _trace(camp, seed, steps, failure)
            return Kill("functional", took <= seconds, took, runs, len(steps), len(steps),
                        failure.signature, 0.0, trace.encode())
    return Kill("functional", False, examples=runs)


Strategy = Callable[[Sequence[Campaign], int, float], Kill]
STRATEGIES: dict[str, Strategy] = {
    "nvmefuzz": state_machine, "unguided": unguided, "random-walk": random_walk,
    "functional": functional,
}
