"""Differential mode: the reference model and a real QEMU driven by the same steps.

How it works
------------
``DiffSession`` holds two targets, the model and QEMU, each with its own host driver, and no
migrations: ``apply(step)`` runs one action on both sides, observes what each guest could see
(action results, interrupts, posted CQEs) and compares them with the comparator the fuzzer
uses.  QEMU's completion order is not deterministic, so both sides go through
``canonical_order`` first, and, as on the twin and migrated QEMU of a fuzz run, through a
``reorder.DoorbellTap`` with a ``reorder.Ledger`` in the comparator: a completion one side
shows and the other still legally holds (its CQ full, or consumed a few at a time) is owed,
not a disagreement.  Which of the completions of one step take the last slots of a CQ that
fills up is the backend's timing on QEMU and fetch order on the model.  ``migrate`` and
``environment`` steps are skipped (``SKIPPED``): this mode asks whether the model *behaves*
like QEMU, not whether a migration loses state.

The model runs with ``targets.base.QEMU_VIEW``: every command completes within its step, as
the qemu target's settle makes it, and a look at the interrupts shows each MSI-X vector that
fired once, as QEMU's per-vector message dwords do (INTx level changes are compared as they
are).  Timing and visibility choices, not behaviour differences.

A trace ends at its first disagreement (after it the two controllers are in different states,
so later differences say nothing new).  ``diff_steps`` returns it as a ``Disagreement``;
``generate`` draws example step lists from a campaign's Hypothesis state machine (run on the
model with the ``migrate`` rule disabled, i.e. the campaign's examples with their migrations
removed); ``group`` buckets disagreements by label for the report.  ``as_trace`` turns a
disagreement into a trace (its steps up to it, signature ``disagreement:<label>``) that
``nvmefuzz diff PATH`` replays, and ``shrink`` deletes the steps it does not need, with QEMU
in the loop, so a device-model developer gets the few steps to look at.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Callable, Iterable

import attrs

from nvmefuzz.errors import NvmeFuzzError, TargetError, TraceFormatError
from nvmefuzz.fuzz.actions import ACTIONS, Observation, observe
from nvmefuzz.fuzz.campaign import Campaign
from nvmefuzz.fuzz.compare import Comparator, Waiver, canonical_order
from nvmefuzz.fuzz.reorder import DoorbellTap, HostView, Ledger
from nvmefuzz.host.driver import Host
from nvmefuzz.targets import TargetConfig, open_target
from nvmefuzz.targets.base import QEMU_VIEW
from nvmefuzz.fuzz.minimize import minimize
from nvmefuzz.trace.schema import Step, Trace, Verdict

#: steps run on neither side: migrations (not what this mode compares) and environment
#: events (the qemu target has none: a namespace change needs hotplug, which QEMU's
#: migration support excludes)
SKIPPED = frozenset({"migrate", "environment"})


@attrs.frozen
class Disagreement:
    """Where model and QEMU first disagreed on one step list."""

    source: str                  # trace path or "campaign#example"
    step: int                    # index of the step
    action: str                  # the step, rendered
    label: str                   # the first differing observation (as in signatures)
    model: Any
    qemu: Any

    def to_plain(self) -> dict:
        at = _first_data_difference(self.model, self.qemu)
        return {"source": self.source, "step": self.step, "action": self.action,
                "label": self.label, "model": _brief(self.model, at),
                "qemu": _brief(self.qemu, at)}


def _first_data_difference(a: Any, b: Any) -> int | None:
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return None
    x, y = a.get("data"), b.get("data")
    if not (isinstance(x, bytes) and isinstance(y, bytes)) or x == y:
        return None
    return next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))


def _brief(value: Any, at: int | None = None, limit: int = 400) -> str:
    """A short repr; returned data is shown as the 16 bytes from the first difference."""
    if isinstance(value, dict):
        shown = {}
        for k, v in value.items():
            if isinstance(v, bytes):
                start = (at or 0) - (at or 0) % 16
                k, v = f"{k}[{start:#x}:]", v[start:start + 16].hex()
            shown[k] = v
        value = shown
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


class DiffSession:
    """The model and QEMU side by side; ``apply`` returns the first unwaived difference."""

    def __init__(self, model_cfg: TargetConfig, qemu_cfg: TargetConfig,
                 ignore: tuple[str, ...] = ()) -> None:
        """``ignore``: label prefixes of known disagreements to count and look past (only
        sound for observations that change no state, such as a register or Identify read)."""
        self.model = open_target(model_cfg)
        try:
            self.qemu = open_target(qemu_cfg, migrates=False)
        except BaseException:
            self.model.close()
            raise
        self.taps = (DoorbellTap(self.model), DoorbellTap(self.qemu))
        self.model_host, self.qemu_host = Host(self.taps[0]), Host(self.taps[1])
        self.comparator = Comparator(tuple(
            Waiver(p, "known model/QEMU difference", "nvmefuzz diff --ignore", (p,))
            for p in ignore), ledger=Ledger())
        #: called with (index, step, model observations, qemu observations) if set
        self.on_step: Callable | None = None
        self.index = 0

    def apply(self, step: Step) -> tuple[str, Any, Any] | None:
        """Run ``step`` on both sides; (label, model value, qemu value) where they differ."""
        if step.action in SKIPPED:
            self.index += 1
            return None
        action = ACTIONS.get(step.action)
        if action is None:
            raise TraceFormatError(f"unknown action {step.action!r}")
        model_obs = self._side(action, self.model_host, self.taps[0], step)
        qemu_obs = self._side(action, self.qemu_host, self.taps[1], step)
        model_obs = canonical_order(model_obs)
        qemu_obs = canonical_order(qemu_obs)
        if self.on_step is not None:
            self.on_step(self.index, step, model_obs, qemu_obs)
        self.index += 1
        views = (HostView.of(self.model_host, self.taps[0]),
                 HostView.of(self.qemu_host, self.taps[1]))
        diff = self.comparator.check(model_obs, qemu_obs, views)
        return None if diff is None else (diff.label, diff.twin, diff.mig)

    @staticmethod
    def _side(action, host: Host, target, step: Step) -> list[Observation]:
        """The observations of one side; a failure is an observation too (``error/...``)."""
        try:
            return action(host, target, step.args) + observe(host, target)
        except (KeyError, TypeError) as exc:
            raise TraceFormatError(f"{step.render()}: bad arguments ({exc})") from None
        except TargetError:
            raise
        except NvmeFuzzError as exc:
            return [(f"error/{type(exc).__name__}", {"detail": str(exc)[:200]})]

    def close(self) -> None:
        self.model.close()
        self.qemu.close()


def configs(msix: bool = True, profile: str = "full",
            nsze: int | None = None) -> tuple[TargetConfig, TargetConfig]:
    """The model and QEMU configurations of a differential run."""
    extra = {} if nsze is None else {"nsze": nsze}
    return (TargetConfig(kind="model", profile=profile, msix=msix, **QEMU_VIEW, **extra),
            TargetConfig(kind="qemu", msix=msix, **extra))


def diff_steps(source: str, steps: Iterable[Step], model_cfg: TargetConfig,
               qemu_cfg: TargetConfig, on_step: Callable | None = None,
               ignore: tuple[str, ...] = (), ignored: Counter | None = None,
               ) -> tuple[Disagreement | None, int]:
    """Run ``steps`` on both sides; the first disagreement (or None) and the steps run.

    Differences under an ``ignore`` prefix are counted into ``ignored`` and looked past."""
    session = DiffSession(model_cfg, qemu_cfg, ignore)
    session.on_step = on_step
    ran = 0
    try:
        for i, step in enumerate(steps):
            ran = i + 1
            try:
                found = session.apply(step)
            except TargetError as exc:          # QEMU crashed or hung where the model did not
                kind = "hung" if "Timeout" in type(exc).__name__ else "crashed"
                return Disagreement(source, i, step.render(), f"qemu/{kind}", None,
                                    str(exc)[:300]), ran
            if found is not None:
                label, model, qemu = found
                return Disagreement(source, i, step.render(), label, model, qemu), ran
        return None, ran
    finally:
        if ignored is not None:
            ignored.update(session.comparator.suppressed)
        session.close()


def generate(camp: Campaign, examples: int, seed: int = 0) -> list[tuple[Step, ...]]:
    """``examples`` step lists drawn from ``camp``'s state machine, without migrations.

    The machine runs on the model (whose host view drives the preconditions) with the
    ``migrate`` rule at weight 0, so the draws are the campaign's with migrations removed."""
    from hypothesis import Phase

    from nvmefuzz.fuzz.batch import batch_settings, run_batch
    from nvmefuzz.fuzz.machine import build_machine

    weights = {**camp.weights, "migrate": 0}
    model_camp = attrs.evolve(camp, target="model", weights=weights, waivers=())
    machine = build_machine(model_camp, steer=False)
    drawn: list[tuple[Step, ...]] = []
    teardown = machine.teardown

    def keep(self) -> None:
        drawn.append(tuple(s for s in self.steps if s.action != "migrate"))
        teardown(self)

    machine.teardown = keep
    run_batch(machine, batch_settings(examples, camp.steps, phases=(Phase.generate,)), seed)
    return drawn[:examples]


def group(found: Iterable[Disagreement]) -> dict[str, list[Disagreement]]:
    """Disagreements by label, most frequent first."""
    out: dict[str, list[Disagreement]] = defaultdict(list)
    for d in found:
        out[d.label].append(d)
    return dict(sorted(out.items(), key=lambda kv: (-len(kv[1]), kv[0])))


def as_trace(found: Disagreement, steps: Iterable[Step], model_cfg: TargetConfig,
             campaign: str = "diff", seed: int = 0) -> Trace:
    """``found`` as a trace of the steps up to it, for ``nvmefuzz diff PATH`` (not a corpus
    entry: it has no migration, and its signature names a model/QEMU disagreement)."""
    return Trace(target=model_cfg.to_plain(), campaign=campaign, seed=seed,
                 steps=tuple(steps)[:found.step + 1], verdict=_verdict(found))


def _verdict(found: Disagreement) -> Verdict:
    return Verdict("divergence", f"disagreement:{found.label}", step=found.step,
                   detail=f"model {_brief(found.model)}, qemu {_brief(found.qemu)}")


def shrink(trace: Trace, model_cfg: TargetConfig, qemu_cfg: TargetConfig, seconds: float,
           ignore: tuple[str, ...] = ()) -> Trace:
    """The shortest variant of a disagreement's trace found in ``seconds`` that still
    disagrees on the same label, or at the same step in the same observation (every try runs
    on a fresh model and a fresh QEMU, whose timing may change how a step disagrees)."""
    def rerun(t: Trace) -> tuple[Verdict, None]:
        found, _ = diff_steps("shrink", t.steps, model_cfg, qemu_cfg, ignore=ignore)
        return (Verdict() if found is None else _verdict(found)), None

    return minimize(trace, seconds, replay=rerun, varies=True)   # QEMU's timing varies
