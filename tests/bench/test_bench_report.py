"""The mutant bench's report arithmetic (bench/mutants.py): censored medians, the acceptance
check and the head-to-head tally, on hand-made rows."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "mutants.py"
_spec = importlib.util.spec_from_file_location("bench_mutants", BENCH)
mutants = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mutants)
stats, report_md = mutants.stats, mutants.report_md    # its figures and its report

STRATEGIES = ["nvmefuzz", "unguided", "random-walk"]


def _kill(seconds: float | None, examples: int = 1, length: int = 4) -> dict:
    return {"killed": seconds is not None, "seconds": seconds, "examples": examples,
            "length": length if seconds is not None else None, "signature": ""}


def _row(name: str, killable: bool = True, **results: dict) -> dict:
    return {"name": name, "kind": "behaviour", "killable": killable, "results": results}


ROWS = [
    _row("a", nvmefuzz=_kill(0.1, 3), unguided=_kill(0.2, 3), **{"random-walk": _kill(0.01)}),
    _row("b", nvmefuzz=_kill(0.3, 7), unguided=_kill(0.25, 7), **{"random-walk": _kill(None)}),
    _row("c", nvmefuzz=_kill(None, 9), unguided=_kill(2.0, 60), **{"random-walk": _kill(None)}),
    _row("d", nvmefuzz=_kill(None), unguided=_kill(None), **{"random-walk": _kill(None)}),
    _row("dead", killable=False, nvmefuzz=_kill(None), unguided=_kill(None),
         **{"random-walk": _kill(None)}),
]


def test_head_to_head_counts_who_killed_first_and_identical_generation():
    h = stats.head_to_head(ROWS, STRATEGIES)
    assert h["unguided"] == {"nvmefuzz_first": 1, "rival_first": 2, "neither": 1,
                             "same_examples": 2, "nvmefuzz_fewer": 0, "rival_fewer": 1,
                             "sign_p": 1.0}
    # a walk is not an example: no count of fewer examples against the random walk
    assert h["random-walk"] == {"nvmefuzz_first": 1, "rival_first": 1, "neither": 2,
                                "same_examples": 0}
    assert "nvmefuzz" not in h


def test_the_sign_test_weighs_only_the_mutants_where_examples_differ():
    assert stats.sign_test(0, 0) == 1.0
    assert stats.sign_test(3, 3) == 1.0
    assert stats.sign_test(5, 0) == stats.sign_test(0, 5) == pytest.approx(2 / 32)
    assert stats.sign_test(24, 1) == pytest.approx(2 * 26 / 2 ** 25)
    rows = _rows([_kill(0.1, 2)] * 6 + [_kill(0.1, 9)] * 40,
                 [_kill(0.1, 5)] * 6 + [_kill(0.1, 9)] * 40)
    h = stats.head_to_head(rows, ["nvmefuzz", "unguided"])["unguided"]
    assert (h["nvmefuzz_fewer"], h["rival_fewer"], h["same_examples"]) == (6, 0, 40)
    assert h["sign_p"] == pytest.approx(2 / 64)
    assert "| unguided | 6 | 0 | 0.031 |" in report_md.markdown(_report(rows))


def test_unkilled_mutants_count_as_never_in_the_median():
    s = stats.summarise(ROWS, "nvmefuzz")
    assert (s["killable"], s["killed"]) == (4, 2)
    assert s["median_seconds"] is None          # two of four never killed: median is never
    assert s["median_seconds_killed"] == 0.2
    assert stats.summarise(ROWS, "unguided")["median_seconds"] == 1.125


def _rows(ours: list, theirs: list) -> list[dict]:
    return [_row(f"m{i}", nvmefuzz=a, unguided=b) for i, (a, b) in enumerate(zip(ours, theirs))]


def _report(rows: list[dict], strategies: list[str] = ["nvmefuzz", "unguided"]) -> dict:
    """A whole judged report of ``rows``, as ``--render`` makes one."""
    meta = {"strategies": strategies, "date": "d", "budget": 1, "seed": 1, "campaigns": [],
            "mutants": len(rows), "killable": sum(r["killable"] for r in rows),
            "hypothesis": "h", "jobs": 1, "machine": "m"}
    report = {"meta": meta, "mutants": rows,
              "summary": {s: stats.summarise(rows, s) for s in strategies},
              "control": dict.fromkeys(strategies, _kill(None))}
    stats.judge(report)
    return report


def test_identical_results_are_a_tie_on_every_figure():
    kills = [_kill(0.1 * (i + 1), i + 1, 3 + i % 4) for i in range(20)]
    diff = stats.compare(_rows(kills, kills), "unguided")
    for figure in ("kill_rate", "median_seconds", "median_length"):
        assert diff[figure] == {"difference": 0.0, "low": 0.0, "high": 0.0}
    assert not any(stats.better(diff).values())


def test_clock_noise_between_the_same_examples_is_a_tie():
    # the same examples up to each kill; the clock adds a few ms either way
    ours = [_kill(0.1 + 0.01 * i, i + 1) for i in range(40)]
    theirs = [_kill(r["seconds"] + (0.003 if i % 2 else -0.003), i + 1) for i, r in enumerate(ours)]
    diff = stats.compare(_rows(ours, theirs), "unguided")
    assert diff["median_seconds"]["low"] < 0 < diff["median_seconds"]["high"]
    assert stats.better(diff)["median_seconds"] is False


def test_one_more_kill_among_few_mutants_is_not_yet_better():
    ours = [_kill(1.0) for _ in range(10)]
    theirs = [_kill(1.0) for _ in range(9)] + [_kill(None)]
    diff = stats.compare(_rows(ours, theirs), "unguided")
    assert diff["kill_rate"]["difference"] == pytest.approx(0.1)
    assert diff["kill_rate"]["low"] == 0.0 and stats.better(diff)["kill_rate"] is False


def test_a_difference_on_most_mutants_is_better():
    ours = [_kill(0.1, 3, 4) for _ in range(30)]
    theirs = [_kill(None) for _ in range(15)] + [_kill(2.0, 40, 20) for _ in range(15)]
    diff = stats.compare(_rows(ours, theirs), "unguided")
    # the rival's median is never in half the resamples, and 1.9 s later in the rest
    assert diff["median_seconds"]["low"] == float("-inf")
    assert diff["median_seconds"]["high"] == pytest.approx(-1.9)
    assert diff["median_length"] == {"difference": -16.0, "low": -16.0, "high": -16.0}
    assert stats.better(diff) == {"kill_rate": True, "median_seconds": True,
                                    "median_length": True}


def test_acceptance_wants_better_than_every_baseline():
    report = {"meta": {"strategies": STRATEGIES}, "mutants": ROWS,
              "summary": {s: stats.summarise(ROWS, s) for s in STRATEGIES}}
    stats.judge(report)
    verdict = report["acceptance"]
    assert verdict["kill rate above every baseline"] is False      # 2 of 4 against 3 of 4
    assert verdict["median time to kill <= 5 s"] is False
    assert verdict["median length below every baseline"] is False  # 4 against 4: a tie
    assert set(report["comparisons"]) == {"unguided", "random-walk"}
    meta = {**report["meta"], "date": "d", "budget": 1, "seed": 1, "campaigns": [],
            "mutants": 5, "killable": 4, "hypothesis": "h", "jobs": 1, "machine": "m",
            "commit": "abc1234+changes"}
    table = report_md.markdown({**report, "meta": meta,
                              "control": dict.fromkeys(STRATEGIES, _kill(None))})
    assert table.startswith("# Mutant kill bench (d, commit abc1234+changes)")
    # four mutants decide nothing: every difference, one kill included, is a tie
    assert ("| unguided | -25 pt (-75 .. +0) tie | +inf s (-0.1 .. +inf) tie | "
            "+0 steps (+0 .. +inf) tie |") in table.splitlines()


def test_with_no_baseline_run_nothing_is_better_than_one():
    """A run of nvmefuzz alone (``--strategies nvmefuzz``) meets its own goals and no
    "better than every baseline": there was none to beat."""
    easy = [_row(n, nvmefuzz=_kill(0.1, 2)) for n in "abcd"]
    report = {"meta": {"strategies": ["nvmefuzz"]}, "mutants": easy,
              "summary": {"nvmefuzz": stats.summarise(easy, "nvmefuzz")}}
    stats.judge(report)
    verdict = report["acceptance"]
    assert report["comparisons"] == {}
    assert verdict["kill rate >= 95% of killable"] and verdict["median time to kill <= 5 s"]
    assert not any(ok for goal, ok in verdict.items() if "every baseline" in goal)


def test_only_a_full_run_replaces_the_committed_results():
    every = list(mutants.STRATEGIES)
    assert mutants.full_run(None, every, mutants.CAMPAIGNS)
    assert not mutants.full_run("aer", every, mutants.CAMPAIGNS)
    assert not mutants.full_run(None, ["nvmefuzz"], mutants.CAMPAIGNS)
    assert not mutants.full_run(None, every, ("default",))


def test_the_results_name_the_commit_they_measured(monkeypatch, tmp_path):
    """In a checkout: its short commit, marked when tracked files have changes; outside
    one: nothing (the table then names no commit)."""
    assert re.fullmatch(r"[0-9a-f]{7,}(\+changes)?", mutants.checkout())
    monkeypatch.setattr(mutants, "ROOT", tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert mutants.checkout() == ""


def _seeded(name: str, seeds: int, ours: dict, theirs: dict) -> list[dict]:
    return [{**_row(name, nvmefuzz=ours, unguided=theirs), "seed": seed}
            for seed in range(1, seeds + 1)]


def test_several_seeds_pool_the_hunts_and_resample_whole_mutants():
    """Mutant ``a`` dies under every seed for nvmefuzz and under none for the rival; ``b``
    dies for both.  Six hunts, but two mutants: a resample holding only ``b`` (one in four)
    is likely, so the kill rate is a tie, where six independent hunts would call it better."""
    rows = _seeded("a", 3, _kill(0.1), _kill(None)) + _seeded("b", 3, _kill(0.1), _kill(0.1))
    s = stats.summarise(rows, "unguided")
    assert (s["killed"], s["killable"], s["killed_every_seed"], s["mutants"]) == (3, 6, 1, 2)
    diff = stats.compare(rows, "unguided")
    assert diff["kill_rate"]["difference"] == pytest.approx(0.5)
    assert diff["kill_rate"]["low"] == 0.0 and not stats.better(diff)["kill_rate"]
    flat = [{**r, "name": f"{r['name']}{r['seed']}"} for r in rows]
    assert stats.better(stats.compare(flat, "unguided"))["kill_rate"]


def test_a_table_of_several_seeds_gives_each_mutant_its_kills_per_seed():
    rows = (_seeded("a", 3, _kill(0.1, length=4), _kill(None))
            + [{**r, "results": {**r["results"], "nvmefuzz": _kill(None)}}
               for r in _seeded("b", 1, _kill(None), _kill(0.3, length=6))]
            + _seeded("b", 3, _kill(0.2, length=5), _kill(0.3, length=6))[1:])
    report = _report(rows)
    report["meta"]["seeds"] = [1, 2, 3]
    table = report_md.markdown(report)
    assert "seeds 1-3" in table
    assert "| `a` | behaviour | 3/3: 0.10 s / 4 st | 0/3 | `` |" in table
    assert "| `b` | behaviour | 2/3: 0.20 s / 5 st | 3/3: 0.30 s / 6 st | `` |" in table
    assert "| nvmefuzz | 5/6 | 83.3% | 1/2 |" in table


def test_kill_rates_over_time_part_where_one_kills_sooner_and_meet_at_the_budget():
    """Both kill every mutant, nvmefuzz within 0.05 s and the baseline after 2 s: nvmefuzz is
    ahead beyond chance up to 1 s, and from 3 s on, as at the budget, they are a tie."""
    rows = _rows([_kill(0.05)] * 30, [_kill(2.0)] * 30)
    over = stats.over_time(rows, "unguided", budget=20)
    assert list(over) == ["0.1", "0.3", "1", "3"]
    for t in ("0.1", "0.3", "1"):
        assert over[t] == {"difference": 1.0, "low": 1.0, "high": 1.0}
    assert over["3"] == {"difference": 0.0, "low": 0.0, "high": 0.0}
    assert stats.over_time(rows, "unguided", budget=0.3).keys() == {"0.1"}
    report = _report(rows)
    report["meta"]["budget"] = 3             # checkpoints 0.1, 0.3 and 1 s, then the budget
    stats.judge(report)
    text = report_md.markdown(report)
    assert "| strategy | 0.1 s | 0.3 s | 1 s | 3 s |" in text
    assert "| nvmefuzz | 100.0% | 100.0% | 100.0% | 100.0% |" in text
    assert "| unguided | 0.0% | 0.0% | 0.0% | 100.0% |" in text
    assert ("| unguided | +100 pt (+100 .. +100) better | +100 pt (+100 .. +100) better | "
            "+100 pt (+100 .. +100) better | +0 pt (+0 .. +0) tie |") in text
