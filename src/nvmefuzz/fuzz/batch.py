"""One batch of a state machine: Hypothesis runs up to ``examples`` examples under one seed.

How it works
------------
``run_batch`` gives Hypothesis a *factory* for the machine, not the machine class.
Hypothesis names a stateful test by a digest of its factory's source. For a class that
``build_machine`` made at run time, ``inspect`` parses the whole module again, fails to find
the class, and falls back to the name. That costs about 10 ms on every batch, a tenth of a
five-example batch. The factory has the machine's name and signature, so the digest, and with
it the key in the example database, is the one the class had. It also carries the seed, because
Hypothesis reads the seed from the factory.  The key itself is a digest of the source of
Hypothesis' own test function, the same for every batch of a machine class, which Hypothesis
would tokenise again each time (about 2.5 ms, a quarter of a one-example batch): ``run_batch``
computes it once per class (``database_key``) and hands it to the test.

``batch_settings`` holds the settings every fuzzing batch shares: no deadline, no health
checks, and none of Hypothesis' own reporting (quiet: not even its warning that shrinking
stopped, which a run's shrink budget makes routine). A batch returns what ended it: the
``Divergence`` or Hypothesis' wrapper around it (Flaky, an exception group), and on a target
whose timing varies the ``Flaky`` Hypothesis raises when the same choices drew differently.
It returns None when the batch ended without one. Any other exception propagates. An ``Observer``
hears of every finding as the machine meets it, and of every example's statistics.
``recorded`` runs a batch and returns each example's steps, so the same steps can go to
another target or version of the code without Hypothesis (``bench/qemu_sessions.py``).

Hypothesis now and then draws an integer from the literals of the "local" modules loaded in
the process (``sys.modules``, outside site-packages and test files), so the same seed drew
different examples from the CLI, from pytest and from a bench script, and from an installed
package none at all.  A batch pins that pool (``pinned_constants``) to the literals of the
controller's own code, ``nvmefuzz.protocol`` and ``nvmefuzz.model``: its boundary values,
whatever else is imported and however nvmefuzz is installed.

A process pays two costs once, on its first batch: building that pool (about 10 ms) and
Hypothesis' first run in a thread, which collects all garbage (about 15 ms).  ``warm_up``
pays them at once, where a caller wants them out of what it times (``bench/mutants.py``
times each hunt in a fresh process).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import pkgutil
import weakref
from collections import Counter
from typing import Callable, Iterator, Sequence

from hypothesis import HealthCheck, Phase, Verbosity, given, settings, strategies as st
from hypothesis.database import ExampleDatabase
from hypothesis.errors import Flaky, FlakyStrategyDefinition
from hypothesis.internal.conjecture import providers
from hypothesis.internal.floats import float_to_int
from hypothesis.internal.reflection import function_digest
from hypothesis.stateful import RuleBasedStateMachine, get_state_machine_test
from sortedcontainers import SortedSet

try:                  # Hypothesis internals; without them there is no local pool to pin
    from hypothesis.internal.constants_ast import Constants, constants_from_module
except ImportError:   # pragma: no cover - an older or newer Hypothesis
    Constants = constants_from_module = None

from nvmefuzz.errors import Divergence
from nvmefuzz.trace.schema import Trace

#: generation, Hypothesis' target phase (``target()`` steers it) and shrinking
FUZZ_PHASES = (Phase.generate, Phase.target, Phase.shrink)
#: the packages whose literals Hypothesis may draw as constants (every module in them)
CONSTANT_SOURCES = ("nvmefuzz.protocol", "nvmefuzz.model")


@functools.cache
def constant_pool() -> Constants:
    """The literals of every module under ``CONSTANT_SOURCES``, in a sorted (stable) pool."""
    pool = Constants(integers=SortedSet(), floats=SortedSet(key=float_to_int),
                     bytes=SortedSet(), strings=SortedSet())
    for package in CONSTANT_SOURCES:
        root = importlib.import_module(package)
        names = [package] + sorted(m.name for m in pkgutil.walk_packages(
            root.__path__, prefix=package + "."))
        for name in names:
            pool |= constants_from_module(importlib.import_module(name))
    return pool


@contextlib.contextmanager
def pinned_constants() -> Iterator[None]:
    """Hypothesis draws its local constants from ``constant_pool`` only, for the duration.
    (A Hypothesis without the pool has nothing to pin; one that renamed it fails
    ``test_a_seed_draws_the_same_examples_whatever_else_is_imported``.)"""
    if Constants is None or not hasattr(providers, "_get_local_constants"):
        yield                                        # pragma: no cover
        return
    old = providers._get_local_constants
    providers._get_local_constants = constant_pool
    providers.CONSTANTS_CACHE.cache.clear()         # filtered views of the previous pool
    try:
        yield
    finally:
        providers._get_local_constants = old
        providers.CONSTANTS_CACHE.cache.clear()


def warm_up() -> None:
    """Pay the process's one-off costs now: the constant pool, and a first Hypothesis run."""
    constant_pool()

    @settings(max_examples=1, database=None, phases=[Phase.generate], deadline=None)
    @given(st.none())
    def nothing(_: None) -> None:
        pass

    nothing()


class Observer:
    """What a run wants to hear about: findings as they happen, and statistics."""

    def __init__(self, seed: int = 0) -> None:
        self.stats: Counter = Counter()
        self.last_failure: Trace | None = None
        self.seed = seed

    def finding(self, trace: Trace) -> None:
        self.last_failure = trace

    def example_done(self, stats: Counter) -> None:
        self.stats.update(stats)
        self.stats["examples"] += 1


class Factory:
    """Makes one machine per example. Its digest is its name: no source is parsed."""

    def __init__(self, machine: type[RuleBasedStateMachine], seed: int) -> None:
        self.machine = machine
        self.__name__ = machine.__name__
        self.__signature__ = inspect.signature(machine)
        self._hypothesis_internal_use_seed = seed

    def __call__(self) -> RuleBasedStateMachine:
        return self.machine()


def batch_settings(examples: int, steps: int, *, database: ExampleDatabase | None = None,
                   phases: Sequence[Phase] = FUZZ_PHASES) -> settings:
    return settings(max_examples=examples, stateful_step_count=steps, deadline=None,
                    database=database, derandomize=False, print_blob=False,
                    verbosity=Verbosity.quiet,
                    report_multiple_bugs=False, suppress_health_check=list(HealthCheck),
                    phases=list(phases))


def divergent(exc: BaseException) -> bool:
    """Is ``exc`` a Divergence, or Hypothesis' wrapper around one?"""
    return (isinstance(exc, Divergence) or isinstance(exc.__cause__, Divergence)
            or any(isinstance(e, Divergence) for e in getattr(exc, "exceptions", ()))
            # Hypothesis replaying a finding on a nondeterministic target (real QEMU) may
            # see it draw differently and raise Flaky... while handling the Divergence
            or isinstance(exc, Flaky) and isinstance(exc.__context__, Divergence))


_KEYS: "weakref.WeakKeyDictionary[type, bytes]" = weakref.WeakKeyDictionary()


def database_key(machine: type[RuleBasedStateMachine], test: Callable[[], None]) -> bytes:
    """The example database key of ``machine``'s stateful ``test``: Hypothesis' own digest
    of it (its source, the factory's name and signature), computed on the class's first
    batch; every batch of one class has the same."""
    if machine not in _KEYS:
        _KEYS[machine] = function_digest(test.hypothesis.inner_test)  # type: ignore[attr-defined]
    return _KEYS[machine]


def run_batch(machine: type[RuleBasedStateMachine], config: settings, seed: int,
              nondeterministic: bool = False) -> Exception | None:
    """Run one batch of ``machine`` under ``config`` and Hypothesis seed ``seed``.

    ``nondeterministic``: the target's timing may change what the same choices do (a real
    QEMU: whether a completion arrived decides which rules apply), so Hypothesis may find an
    example drawing differently from an earlier one with the same start and stop the batch
    with ``Flaky``; that ends the batch like a finding does, and is returned."""
    getattr(machine, "before_batch", lambda: None)()
    flaky = {"selecting_rule": False}
    test = get_state_machine_test(Factory(machine, seed), settings=config, _flaky_state=flaky)
    test._hypothesis_internal_database_key = database_key(machine, test)  # type: ignore
    try:
        with pinned_constants():
            test()
    except Exception as exc:
        if isinstance(exc, FlakyStrategyDefinition) and flaky["selecting_rule"]:
            exc.add_note("while selecting a rule to run: a flaky precondition, or a bundle "
                         "that was unexpectedly empty")     # as run_state_machine_as_test
        if not (divergent(exc) or nondeterministic and isinstance(exc, Flaky)):
            raise
        return exc
    return None


def recorded(machine: type[RuleBasedStateMachine], config: settings,
             seed: int) -> list[list]:
    """Run one batch as ``run_batch`` does and return the steps of each example (what the
    machine kept in its ``steps``), to send the same steps elsewhere without Hypothesis."""
    examples: list[list] = []

    class Recording(machine):                  # type: ignore[misc, valid-type]
        def teardown(self) -> None:
            examples.append(list(self.steps))
            super().teardown()

    run_batch(Recording, config, seed)
    return examples
