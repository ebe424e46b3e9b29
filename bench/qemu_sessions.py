"""Fuzzer steps per second on the qemu target, on the same steps every time.

Run: ``python bench/qemu_sessions.py [--campaigns a,b] [--examples N] [--seed S]``

``bench/qemu_throughput.py`` times single commands; a fuzz run also starts two QEMUs per
example, migrates into a fresh one every few steps and settles after every step, on both
sides, and Hypothesis draws every step.  This bench keeps all of that but Hypothesis, and
keeps the steps fixed so two versions of the code can be compared on the same work:

1. record: each campaign's state machine runs ``--examples`` examples on the model under
   ``--seed`` (the model is deterministic, so the same steps every time) and each example's
   steps are kept, the migrations the machine steered into included;
2. replay: every example's steps go to a fresh ``Session`` on the qemu target (twin and
   migrated QEMU, every observation compared), as a fuzz run would send them.  A divergence
   or a refusal ends the example there, as a finding does in a fuzz run (QEMU 11.1 has
   known migration bugs the corpus holds; the count is printed).

Printed per campaign: steps/s, migrations/s, qtest round trips per step (both sides), and
examples ended early; all of it as one JSON object on the last line.  Wall-clock figures move
with whatever else runs on the machine; round trips per step do not.
"""

from __future__ import annotations

import argparse
import json
import time

import attrs

from nvmefuzz.errors import NvmeFuzzError
from nvmefuzz.fuzz.batch import batch_settings, recorded
from nvmefuzz.fuzz.campaign import Campaign, load
from nvmefuzz.fuzz.machine import build_machine
from nvmefuzz.fuzz.session import Session
from nvmefuzz.targets import TargetConfig
from nvmefuzz.targets.discovery import find_qemu
from nvmefuzz.trace.schema import Step

CAMPAIGNS = ("default", "cq-pressure", "inflight-migration")


def record(camp: Campaign, examples: int, seed: int) -> list[list[Step]]:
    """The steps of each example the campaign's machine runs on the model."""
    machine = build_machine(attrs.evolve(camp, target="model"))
    return recorded(machine, batch_settings(examples, camp.steps), seed)


def replay(camp: Campaign, runs: list[list[Step]]) -> dict:
    """Every example's steps on a fresh qemu session; wall time, steps, migrations, trips."""
    cfg = TargetConfig(kind="qemu", profile=camp.profile, msix=camp.msix)
    steps = migrations = trips = ended = 0
    start = time.perf_counter()
    for run in runs:
        session = Session(cfg, camp.waivers, camp.refusals)
        try:
            for step in run:
                session.apply(step)
                steps += 1
        except NvmeFuzzError:
            ended += 1
        finally:
            migrations += session.stats["migrations"]
            trips += session.twin.stats["round trips"] + session.mig.stats["round trips"]
            session.close()
    seconds = time.perf_counter() - start
    return {"examples": len(runs), "steps": steps, "seconds": round(seconds, 2),
            "steps_per_s": round(steps / seconds, 1),
            "migrations_per_s": round(migrations / seconds, 1),
            "round_trips_per_step": round(trips / max(steps, 1), 2),
            "ended_early": ended}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--campaigns", default=",".join(CAMPAIGNS))
    ap.add_argument("--examples", type=int, default=60)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    binary = find_qemu()
    print(f"QEMU {binary.version_text} via {binary.origin}; {a.examples} examples per "
          f"campaign recorded on the model, seed {a.seed}")
    figures = {}
    for name in a.campaigns.split(","):
        camp = load(name)
        f = figures[name] = replay(camp, record(camp, a.examples, a.seed))
        print(f"{name:20s} {f['steps']:6,d} steps in {f['seconds']:6.2f} s: "
              f"{f['steps_per_s']:6.1f} steps/s, {f['migrations_per_s']:5.1f} migrations/s, "
              f"{f['round_trips_per_step']:.2f} round trips per step, "
              f"{f['ended_early']} of {f['examples']} examples ended by a finding")
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
