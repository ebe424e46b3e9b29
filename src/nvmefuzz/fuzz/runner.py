"""Running a campaign: batches of Hypothesis examples until the budget is spent.

How it works
------------
A run is a series of batches.  Batch ``b`` runs the campaign's state machine with
``max_examples`` examples under the Hypothesis seed ``seed * 1000003 + b``, so the same seed
gives the same examples whatever the machine's speed; only how many batches fit in a time
budget depends on the clock (and their size: the first has ``FIRST_BATCH`` examples, the
others as many as the rate so far lets the budget hold, up to ``batch``).  When a batch
fails, Hypothesis has already shrunk the failure; the machine's observer holds the shrunk
trace, and ``minimize`` deletes the steps Hypothesis had no time to (never turning it into a
known finding); on the model ``shrink`` also makes the arguments as simple as the finding
allows, again until neither helps.  Both are bounded: within a time budget by what is left of
it, or ``SHRINK_FLOOR`` seconds where less is left.  A QEMU finding that the model reproduces
(checked when the batch first meets it) is not shrunk by Hypothesis with QEMU in the loop,
seconds per example, but on the model, and QEMU confirms the result (``minimize.via_model``).
The raw (first seen) trace of a finding is written to the run's folder the moment it is seen,
before shrinking starts; the shrunk trace, its verdict naming its root cause (``fuzz.cause``), goes
to the corpus.  The corpus's findings are ``known`` (``fuzz.known``: by root cause where
lost state explains them, else by signature): examples that reach them end quietly, so later
batches look for new findings.  For the same reason the state paths those findings lose are
``explained``: a migration that loses only them is not followed by reading back everything
(``machine``).  One ``hardness.Memory`` lasts the whole run: a migration is steered only
where none of the run's earlier batches has migrated from.  On QEMU, Hypothesis may end a
batch because an example drew differently from an earlier one with the same start (QEMU's
timing decided which rules applied); the run counts it (``batches ended by timing``) and
goes on with the next batch.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import attrs
from hypothesis import Phase
from hypothesis.database import ExampleDatabase
from hypothesis.internal.conjecture import engine

from nvmefuzz.errors import NvmeFuzzError
from nvmefuzz.fuzz import hardness
from nvmefuzz.fuzz.batch import FUZZ_PHASES, batch_settings, divergent, run_batch
from nvmefuzz.fuzz.campaign import Campaign
from nvmefuzz.fuzz.cause import Cause, lost_lines
from nvmefuzz.fuzz.known import Known, root_cause
from nvmefuzz.fuzz.database import KeepingDatabase
from nvmefuzz.fuzz.machine import Observer, build_machine
from nvmefuzz.fuzz.minimize import minimize, reproduces_on_model, shrink, via_model
from nvmefuzz.fuzz.session import lost_paths, replay
from nvmefuzz.trace import corpus
from nvmefuzz.trace.schema import Trace


#: examples in a time-budgeted run's first batch, which measures the rate the others use
FIRST_BATCH = 10
#: seconds a finding's shrinking after Hypothesis (on the model, then on its own target) gets
#: when a time budget is (nearly) spent: a reproducer a few steps longer than it could be
#: beats a nightly slice that overruns by minutes (one of 35 s ran 318 s, shrinking with
#: QEMU in the loop); ``nvmefuzz corpus shrink`` goes on later
SHRINK_FLOOR = 10.0


@attrs.define
class Finding:
    signature: str
    kind: str
    trace: Trace
    path: Path | None
    raw_path: Path | None
    new: bool
    cause: Cause | None = None          # ``fuzz.cause``; None where the model cannot replay it
    lost: list[str] = attrs.Factory(list)   # ``cause.lost_lines``: the values the cause lost


@attrs.define
class RunResult:
    campaign: Campaign
    seed: int
    elapsed: float = 0.0
    stats: Counter = attrs.Factory(Counter)
    findings: list[Finding] = attrs.Factory(list)
    batches: int = 0


class RawWriter(Observer):
    """An observer that writes every first-seen failing trace to disk immediately."""

    def __init__(self, raw_dir: Path | None, seed: int = 0) -> None:
        super().__init__(seed)
        self.raw_dir = raw_dir
        self.raw: dict[str, Path] = {}
        self.first: Callable[[Trace], None] | None = None    # hears of the first failure

    def finding(self, trace: Trace) -> None:
        if self.last_failure is None and self.first is not None:
            self.first(trace)
        super().finding(trace)
        sig = trace.verdict.signature
        if self.raw_dir is not None and sig not in self.raw:
            path = self.raw_dir / "raw" / corpus.path_for(Path("."), trace).name
            corpus.atomic_write(path, trace.encode())
            self.raw[sig] = path


@contextlib.contextmanager
def _shrink_budget():
    """Keep Hypothesis from shrinking its Pareto front, and yield ``limit(seconds)``: the
    most its shrinking of this batch's failure may take (no more than its own bound; read
    when the shrink phase starts, so the runner sets it when the batch first fails).

    Hypothesis bounds shrinking by its own MAX_SHRINKING_SECONDS (300 s); a run with a time
    budget must not overrun by that much, nor by what was left when the batch began, and a
    shorter shrink still yields a finding (the trace is minimised again below).  With an
    example database, Hypothesis also keeps a Pareto front of the ``target()`` scores and, in
    its target phase, shrinks every member of it with no bound of time (a 15 s run with a
    database took over two minutes).  Without a database it keeps no front, so turning that
    pass off makes runs with and without a database fuzz alike, and keep their budget.
    """
    runner = engine.ConjectureRunner
    old = engine.MAX_SHRINKING_SECONDS, runner.pareto_optimise
    runner.pareto_optimise = lambda self: None

    def limit(seconds: float) -> None:
        engine.MAX_SHRINKING_SECONDS = math.ceil(max(0.0, min(old[0], seconds)))

    try:
        yield limit
    finally:
        engine.MAX_SHRINKING_SECONDS, runner.pareto_optimise = old


def _shrink_clock(seconds: float | None, start: float) -> Callable[[float], float]:
    """Seconds for each shrinking pass of a finding: its own bound (``default``) without a
    time budget; with one, no more than what is left of the budget, or ``SHRINK_FLOOR`` from
    now where less is left, for all the passes together."""
    if seconds is None:
        return lambda default: default
    deadline = time.monotonic() + max(SHRINK_FLOOR, start + seconds - time.monotonic())
    return lambda default: max(0.0, min(default, deadline - time.monotonic()))


def known_findings(corpus_dir: Path | None, profile: str) -> list[Trace]:
    """The corpus's findings on ``profile`` (unreadable files are the corpus's to report)."""
    if corpus_dir is None or not Path(corpus_dir).exists():
        return []
    return [e.trace for e in corpus.load_all(corpus_dir)
            if e.trace is not None and e.trace.profile == profile and not e.trace.verdict.ok]


def explained_losses(findings: list[Trace]) -> set[str]:
    """The state paths the migrations of these findings' model traces lose (``Session.lost``):
    a migration losing only those needs no read-back of everything, it would meet a known
    finding.  Only model traces are replayed (QEMU shows no insides)."""
    paths: set[str] = set()
    for trace in (t for t in findings if t.target.get("kind", "model") == "model"):
        with contextlib.suppress(NvmeFuzzError):   # a trace that no longer replays: nothing
            paths |= lost_paths(replay(trace)[1])
    return paths


def run_campaign(camp: Campaign, *, seed: int = 0, seconds: float | None = None,
                 examples: int | None = None, batch: int = 100,
                 corpus_dir: Path | None = None, out_dir: Path | None = None,
                 database: ExampleDatabase | None = None, steer: bool = True,
                 progress: Callable[[RunResult], None] | None = None) -> RunResult:
    """Fuzz ``camp`` until ``seconds`` or ``examples`` run out (one of them must be given)."""
    if seconds is None and examples is None:
        raise ValueError("give a time budget or an example budget")
    if database is not None:
        database = KeepingDatabase(database)
    result = RunResult(camp, seed)
    where = Trace(target={"kind": camp.target, "profile": camp.profile}, campaign=camp.name,
                  seed=seed, steps=()).profile            # the corpus folder it writes to
    findings = known_findings(corpus_dir, where)
    qemu = camp.target != "model"
    known = Known.of(findings)
    explained = explained_losses(findings)
    memory = hardness.Memory()      # what the run's migrations started from, for steering
    start = time.monotonic()
    done = 0
    while True:
        left = None if examples is None else examples - done
        if (left is not None and left <= 0) or (
                seconds is not None and time.monotonic() - start >= seconds):
            break
        n = batch if left is None else min(batch, left)
        if seconds is not None and result.stats["examples"]:
            per_example = (time.monotonic() - start) / result.stats["examples"]
            remaining = seconds - (time.monotonic() - start)
            n = max(5, min(n, int(remaining / per_example)))
        elif seconds is not None:       # no rate yet: a QEMU example can take a second
            n = min(n, FIRST_BATCH)
        on_model: list[bool] = []       # the model reproduces the batch's finding
        observer = RawWriter(out_dir, seed)
        machine = build_machine(camp, observer, known, steer=steer,
                                explained=frozenset(explained), memory=memory)
        config = batch_settings(n, camp.steps, database=database, phases=FUZZ_PHASES + (
            (Phase.reuse,) if database is not None else ()))
        with _shrink_budget() as limit:
            def first(trace: Trace) -> None:
                """Shrink a QEMU finding the model reproduces on the model, not with QEMU in
                the loop (``minimize.via_model``); else within what is left of the budget."""
                if qemu:
                    on_model.append(reproduces_on_model(trace))
                limit(0 if any(on_model) else _shrink_clock(seconds, start)(math.inf))

            observer.first = first
            failure = run_batch(machine, config, seed * 1_000_003 + result.batches,
                                nondeterministic=qemu)
        result.batches += 1
        if failure is not None and not divergent(failure):
            result.stats["batches ended by timing"] += 1     # the next one goes on
        done += max(1, observer.stats["examples"]) if failure is None else n
        result.stats.update(observer.stats)
        if failure is not None and observer.last_failure is not None:
            # Hypothesis shrinks within a time budget that a slow target can exhaust
            # (and must not make it a known finding on the way)
            trace = attrs.evolve(observer.last_failure, seed=seed)
            seen = trace.verdict.signature      # QEMU may confirm the shrunk one's other form

            def unknown(t: Trace) -> bool:      # not a finding the run already knows
                return not known.match(t)

            left = _shrink_clock(seconds, start)
            if any(on_model):           # Hypothesis did not shrink it; the model does
                small = via_model(trace, left(60.0), keep=unknown)
                result.stats["findings shrunk on the model"] += small is not None
                trace = small or trace
            # on the model also the arguments made simple, at ms per replay
            trace = (minimize(trace, left(120.0), keep=unknown) if qemu
                     else shrink(trace, left(60.0), keep=unknown))
            sig = trace.verdict.signature
            cause = root_cause(trace)
            if cause is not None:
                trace = attrs.evolve(trace, verdict=attrs.evolve(trace.verdict, cause=cause.key))
            path, new = (corpus.save(corpus_dir, trace) if corpus_dir is not None
                         else (None, True))
            raw = observer.raw.get(sig) or observer.raw.get(seen)
            result.findings.append(Finding(sig, trace.verdict.kind, trace, path, raw, new,
                                           cause, lost_lines(trace, cause)))
            known.add(trace, cause)
            explained |= explained_losses([trace])
        if progress is not None:
            result.elapsed = time.monotonic() - start
            progress(result)
    result.elapsed = time.monotonic() - start
    result.stats.update(known.stats)
    return result
