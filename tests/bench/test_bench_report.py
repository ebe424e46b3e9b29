"""The mutant bench's report arithmetic (bench/mutants.py): censored medians, the acceptance
check and the head-to-head tally, on hand-made rows."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "mutants.py"
_spec = importlib.util.spec_from_file_location("bench_mutants", BENCH)
mutants = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mutants)

STRATEGIES = ["nvmefuzz", "unguided", "random-walk"]


def _kill(seconds: float | None, examples: int = 1, length: int = 4) -> dict:
    return {"killed": seconds is not None, "seconds": seconds, "examples": examples,
            "length": length if seconds is not None else None}


def _row(name: str, killable: bool = True, **results: dict) -> dict:
    return {"name": name, "killable": killable, "results": results}


ROWS = [
    _row("a", nvmefuzz=_kill(0.1, 3), unguided=_kill(0.2, 3), **{"random-walk": _kill(0.01)}),
    _row("b", nvmefuzz=_kill(0.3, 7), unguided=_kill(0.25, 7), **{"random-walk": _kill(None)}),
    _row("c", nvmefuzz=_kill(None, 9), unguided=_kill(2.0, 60), **{"random-walk": _kill(None)}),
    _row("d", nvmefuzz=_kill(None), unguided=_kill(None), **{"random-walk": _kill(None)}),
    _row("dead", killable=False, nvmefuzz=_kill(None), unguided=_kill(None),
         **{"random-walk": _kill(None)}),
]


def test_head_to_head_counts_who_killed_first_and_identical_generation():
    h = mutants.head_to_head(ROWS, STRATEGIES)
    assert h["unguided"] == {"nvmefuzz_first": 1, "rival_first": 2, "neither": 1,
                             "same_examples": 2}
    assert h["random-walk"] == {"nvmefuzz_first": 1, "rival_first": 1, "neither": 2,
                                "same_examples": 0}
    assert "nvmefuzz" not in h


def test_unkilled_mutants_count_as_never_in_the_median():
    s = mutants.summarise(ROWS, "nvmefuzz")
    assert (s["killable"], s["killed"]) == (4, 2)
    assert s["median_seconds"] is None          # two of four never killed: median is never
    assert s["median_seconds_killed"] == 0.2
    assert mutants.summarise(ROWS, "unguided")["median_seconds"] == 1.125


def test_acceptance_wants_strictly_better_than_every_baseline():
    summary = {s: mutants.summarise(ROWS, s) for s in STRATEGIES}
    verdict = mutants.acceptance(summary)
    assert verdict["kill rate above every baseline"] is False      # 2 of 4 against 3 of 4
    assert verdict["median time to kill <= 5 s"] is False
    assert verdict["median length below every baseline"] is False  # 4 against 4: a tie
