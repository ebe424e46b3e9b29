"""A session: the twin and the migrated controller driven by the same steps.

``Session.apply(step)`` runs one host action on both sides (each side has its own target,
with its own guest memory and disk, and its own host driver), observes what each guest could
see, and compares.  ``migrate`` steps move only the migrated side; when the profile drains
in-flight I/O at save time the twin drains too (a legal timing choice, not a finding).

On a target without a fixed completion order (QEMU) both hosts talk to their target through
a ``reorder.DoorbellTap`` and the comparator keeps a ``reorder.Ledger``, so completions of
commands outstanding together may reach the two guests in different steps.

A finding is raised as ``Divergence`` carrying its verdict class and the first differing
observation; the session records the step index and the number of steps since the last
migration so a report can say where the state was lost.  ``replay`` runs a whole trace and
returns its ``Verdict`` without Hypothesis.

On the model both sides can be looked inside: after every completed migration ``lost`` names
the state paths (``model.snapshot`` schema) on which the migrated controller differs from the
twin, whether or not the guest has seen it yet, and the statistics count each
(``lost at migration: <path>``).  The guest-visible comparison alone decides findings.
"""

from __future__ import annotations

import re
from collections import Counter

import attrs

from nvmefuzz.errors import (
    Divergence, NvmeFuzzError, TargetError, TargetTimeout, TargetUnavailable,
    TraceFormatError,
)
from nvmefuzz.fuzz import hardness
from nvmefuzz.fuzz.actions import ACTIONS, Observation, observe
from nvmefuzz.fuzz.compare import TARGET_WAIVERS, WAIVERS, Comparator, canonical_order
from nvmefuzz.fuzz.reorder import DoorbellTap, HostView, Ledger
from nvmefuzz.host.driver import Host
from nvmefuzz.model.profiles import get as get_profile
from nvmefuzz.model.snapshot import capture
from nvmefuzz.model.statediff import differing
from nvmefuzz.targets import TargetConfig, open_target
from nvmefuzz.targets.base import COMPLETED, CRASHED, HOLD_IO, HUNG, REFUSED
from nvmefuzz.trace.schema import PASS, Step, Trace, Verdict


#: statistics key of a state path a migration lost (``Session.lost_state``)
LOST_PREFIX = "lost at migration: "
#: statistics keys of a hard state a migration, and a reset, started from
HARD_PREFIX = "migrated with "
RESET_PREFIX = "reset with "
#: the steps that reset the controller
RESET_ACTIONS = frozenset({"disable", "shutdown"})


def lost_paths(stats: Counter) -> set[str]:
    """The state paths the migrations counted in ``stats`` lost."""
    return {k[len(LOST_PREFIX):] for k, n in stats.items() if k.startswith(LOST_PREFIX) and n}


def _where(detail: str) -> str:
    """A stable name for where a migration failed: 'load failed: cq[3].size: ...' gives
    'load failed: cq[].size'."""
    head = ":".join(detail.split(":")[:2])
    return re.sub(r"\[\d+\]", "[]", head).strip()


def _brief(value: object, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


class Session:
    def __init__(self, cfg: TargetConfig, waivers: tuple[str, ...] = (),
                 refusals: str = "finding", repair: frozenset[str] = frozenset()) -> None:
        unknown = [w for w in waivers if w not in WAIVERS]
        if unknown:
            from nvmefuzz.errors import CampaignError

            raise CampaignError(f"unknown waiver(s) {unknown}; known: {sorted(WAIVERS)}")
        self.cfg = cfg
        waivers = tuple(waivers) + tuple(w for w in TARGET_WAIVERS.get(cfg.kind, ())
                                         if w not in waivers)
        self.profile = get_profile(cfg.profile)
        if repair and cfg.kind != "model":
            raise TargetUnavailable(f"repairing a migration needs the model, not {cfg.kind}")
        self.twin = open_target(cfg, migrates=False)
        self.mig = open_target(cfg)
        if repair or cfg.perfect_migrations:    # models only (``fuzz.cause``)
            self.mig.repair = frozenset(repair)
            self.mig.truth = lambda: capture(self.twin.ctrl)
        self.deterministic = self.twin.deterministic_order
        # without a fixed completion order the comparator follows the CQ heads each side
        # wrote (``fuzz/reorder.py``); hosts and actions reach the targets through the taps
        self.taps = None if self.deterministic else (DoorbellTap(self.twin),
                                                     DoorbellTap(self.mig))
        self.twin_bus = self.taps[0] if self.taps else self.twin
        self.mig_bus = self.taps[1] if self.taps else self.mig
        self.twin_host = Host(self.twin_bus)
        self.mig_host = Host(self.mig_bus)
        self.comparator = Comparator(tuple(WAIVERS[w] for w in waivers),
                                     ledger=None if self.deterministic else Ledger())
        self.refusals = refusals
        self.stats: Counter = Counter()
        self.index = 0
        self.last_migration = -1
        #: the hard states the latest migration started from, and their depths (``hard``)
        self.migrated_from: list[str] = []
        self.migrated_depths: frozenset = frozenset()
        #: the state paths the latest completed migration lost (``lost_state``)
        self.lost: list[str] = []
        #: called with (index, step, twin observations, migrated observations) if set
        self.on_step = None

    # ------------------------------------------------------------------ stepping
    def apply(self, step: Step) -> None:
        """Run ``step`` on both sides; raises ``Divergence`` on a finding."""
        try:
            if step.action == "migrate":
                twin_obs, mig_obs = self._migrate()
            else:
                if step.action in RESET_ACTIONS:
                    self.stats["resets"] += 1
                    self._count_hard(RESET_PREFIX)
                action = ACTIONS.get(step.action)
                if action is None:
                    raise TraceFormatError(f"unknown action {step.action!r}")
                try:
                    twin_obs = action(self.twin_host, self.twin_bus, step.args)
                except (KeyError, TypeError) as exc:
                    raise TraceFormatError(f"{step.render()}: bad arguments ({exc})") from None
                try:
                    mig_obs = action(self.mig_host, self.mig_bus, step.args)
                except (TargetError, NvmeFuzzError):
                    raise
                except Exception as exc:   # the twin ran this step: the restored state broke it
                    self._fail("crashed", type(exc).__name__,
                               f"the migrated controller raised {exc!r}")
            twin_obs += observe(self.twin_host, self.twin_bus)
            mig_obs += observe(self.mig_host, self.mig_bus)
        except TargetTimeout as exc:
            self._fail("hung", "target", str(exc))
        except TargetError as exc:
            self._fail("crashed", "target", str(exc))
        self.stats["steps"] += 1
        self.stats[f"action:{step.action}"] += 1
        views = None
        if self.taps is not None:
            twin_obs, mig_obs = canonical_order(twin_obs), canonical_order(mig_obs)
            views = (HostView.of(self.twin_host, self.taps[0]),
                     HostView.of(self.mig_host, self.taps[1]))
        if self.on_step is not None:
            self.on_step(self.index, step, twin_obs, mig_obs)
        found = self.comparator.differences(twin_obs, mig_obs, views)
        if found:
            diff = found[0]
            self._fail("divergence", diff.label,
                       f"twin saw {_brief(diff.twin)}, migrated saw {_brief(diff.mig)}",
                       tuple(d.label for d in found[1:]))
        self.index += 1

    def _fail(self, kind: str, observation: str, detail: str,
              others: tuple[str, ...] = ()) -> None:
        since = self.index - self.last_migration if self.last_migration >= 0 else -1
        raise Divergence(kind, observation,
                         f"{detail} (step {self.index}, {since} steps after the last "
                         f"migration, {self.cfg.design})", others)

    def _migrate(self) -> tuple[list[Observation], list[Observation]]:
        self.stats["migrations attempted"] += 1
        self.lost = []
        self.migrated_from, self.migrated_depths = self._count_hard(HARD_PREFIX)
        if self.profile.drains_inflight:
            self.twin.drain()
        self.twin.environment(HOLD_IO, 0)        # a migration ends a hold (targets.base)
        outcome = self.mig.migrate()
        self.stats["state bytes"] += outcome.size
        if outcome.kind == COMPLETED:
            self.stats["migrations"] += 1
            self.last_migration = self.index
            self.lost = self.lost_state()
            self.stats["migrations that lost state"] += bool(self.lost)
            for path in self.lost:
                self.stats[f"{LOST_PREFIX}{path}"] += 1
        elif outcome.kind == REFUSED:
            self.stats["refusals"] += 1
            if self.refusals == "finding":
                self._fail("refused", outcome.detail, "the design refused to migrate")
        elif outcome.kind in (CRASHED, HUNG):
            self.stats[outcome.kind] += 1
            self._fail(outcome.kind, _where(outcome.detail), outcome.detail)
        return [], []

    def held(self) -> bool:
        """Does the backend hold I/O (``HOLD_IO``)?  Both sides always agree."""
        return bool(getattr(self.twin, "held", False))

    def _count_hard(self, prefix: str) -> tuple[list[str], frozenset]:
        """Count, under ``prefix``, the hard states a migration or a reset met; return them
        and their depths (``hard``)."""
        states, depths = self.hard()
        for name in states:
            self.stats[f"{prefix}{name}"] += 1
        return states, depths

    def hard(self) -> tuple[list[str], frozenset]:
        """Which hard states the controller is in right now (``hardness.STATES``), and each
        with its depth (``hardness.depths``: what steering keys on); one measurement."""
        ctrl = getattr(self.twin, "ctrl", None)
        if ctrl is not None:          # the model lets us look inside; QEMU reports its own
            counts = hardness.measure(ctrl)
            return hardness.names(counts), hardness.depths(counts)
        # QEMU's counts the host cannot see: the state alone
        states = (["commands outstanding"]
                  if any(sq.outstanding for sq in self.twin_host.sqs.values()) else [])
        return states, frozenset(states)

    def hard_states(self) -> list[str]:
        return self.hard()[0]

    def hard_depths(self) -> frozenset:
        return self.hard()[1]

    def lost_state(self) -> list[str]:
        """The state paths on which the migrated controller differs from its twin: what a
        migration lost, seen or not yet seen by the guest (models only; ``[]`` on QEMU)."""
        twin, mig = getattr(self.twin, "ctrl", None), getattr(self.mig, "ctrl", None)
        if twin is None or mig is None:
            return []
        return differing(capture(twin), capture(mig))

    def close(self) -> None:
        self.twin.close()
        self.mig.close()


def replay(trace: Trace, on_step=None, before_step=None,
           repair: frozenset[str] = frozenset(), after_step=None) -> tuple[Verdict, Counter]:
    """Run ``trace`` from its first step; the verdict it reaches now, and statistics.

    ``before_step(index, step, session)``, if given, is called before each step runs, and
    ``after_step`` likewise after it (the failing step included);
    ``repair``: state paths every migration loads from the twin (models only, ``fuzz.cause``)."""
    try:
        cfg = TargetConfig.from_plain(trace.target)
        bad = [f.name for f in attrs.fields(TargetConfig)     # e.g. a profile that is an int
               if isinstance(f.default, (bool, int, str))
               and type(getattr(cfg, f.name)) is not type(f.default)]
        if bad:
            raise TypeError(f"wrong types for {bad}")
    except TypeError as exc:
        raise TraceFormatError(f"trace target configuration is malformed: {exc}") from None
    session = Session(cfg, trace.waivers, trace.refusals, repair)
    session.on_step = on_step
    try:
        for i, step in enumerate(trace.steps):
            if before_step is not None:
                before_step(i, step, session)
            try:
                session.apply(step)
            except Divergence as exc:
                since = i - session.last_migration if session.last_migration >= 0 else -1
                if after_step is not None:
                    after_step(i, step, session)
                return Verdict.of(exc, i, since), session.stats
            if after_step is not None:
                after_step(i, step, session)
        return Verdict(PASS), session.stats
    finally:
        session.close()
