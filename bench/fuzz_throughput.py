"""Steps/s and migrations/s of the fuzz loop on the model, next to a bare Hypothesis machine.

Three machines run in this process, one after the other, for the same wall time:

* the campaign's state machine (twin + migrated model controllers, every observation
  compared) -- the fuzz loop;
* the same machine with every rule body replaced by a step counter (``bare``): the same
  rules, weights, strategies and preconditions, so Hypothesis does exactly the same work
  and the difference is the cost of nvmefuzz's own step;
* a two-rule RuleBasedStateMachine with trivial bodies, for scale.

The figures are printed as a table and again as one JSON object on the last line.  Target:
the fuzz loop keeps >= 50% of the bare rate.
"""

from __future__ import annotations

import argparse
import json
import time

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

from nvmefuzz.fuzz.batch import batch_settings, run_batch
from nvmefuzz.fuzz.campaign import load
from nvmefuzz.fuzz.machine import Observer, build_machine

STEPS = 60


class Bare(RuleBasedStateMachine):
    count = 0

    def __init__(self):
        super().__init__()
        self.total = 0

    @rule(x=st.integers(0, 255))
    def add(self, x):
        self.total += x
        Bare.count += 1

    @rule(x=st.integers(0, 255))
    def sub(self, x):
        self.total -= x
        Bare.count += 1


def run(machine, seconds: float) -> float:
    """Batches of 20 examples, as the fuzzer runs them, until ``seconds`` have passed."""
    start = time.perf_counter()
    done = 0
    while time.perf_counter() - start < seconds:
        run_batch(machine, batch_settings(20, STEPS), done)
        done += 1
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--campaign", default="default")
    args = ap.parse_args()

    Bare.count = 0
    trivial_s = run(Bare, args.seconds)
    trivial_rate = Bare.count / trivial_s

    camp = load(args.campaign)
    bare_obs = Observer()
    bare_s = run(build_machine(camp, bare_obs, bare=True), args.seconds)
    bare_rate = bare_obs.stats["steps"] / bare_s

    obs = Observer()
    fuzz_s = run(build_machine(camp, obs), args.seconds)
    steps, migrations = obs.stats["steps"], obs.stats["migrations"]
    fuzz_rate = steps / fuzz_s
    result = {
        "campaign": args.campaign,
        "trivial_two_rule_steps_per_s": round(trivial_rate, 1),
        "bare_steps_per_s": round(bare_rate, 1),
        "fuzz_steps_per_s": round(fuzz_rate, 1),
        "fuzz_migrations_per_s": round(migrations / fuzz_s, 1),
        "ratio": round(fuzz_rate / bare_rate, 3),
    }
    for k, v in result.items():
        print(f"{k:24s} {v}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
