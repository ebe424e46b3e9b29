"""The figures of the mutant bench (``bench/mutants.py``) and how they are judged.

How it works
------------
A run is a list of rows, one per mutant and seed, each holding every strategy's ``Kill``
as a plain dict.  ``summarise`` gives a strategy's kill rate, medians (a hunt that did not
kill counts as never) and kill times.  ``compare`` puts nvmefuzz against one baseline with a
paired bootstrap over the mutants (a mutant drawn brings all its seeds): nvmefuzz minus the
baseline on each figure, with a 95% interval; ``better`` reads the intervals, and
``acceptance`` checks the issue's goals with them.  ``over_time`` compares the kill rates at
``CHECKPOINTS`` short of the budget the same way, and ``head_to_head`` counts, hunt by hunt,
who killed first and who needed fewer examples (with a sign test).  ``judge`` fills all of
that into a report.
"""

from __future__ import annotations

import math
import random
import statistics
from typing import Callable

GOALS = {"kill_rate": 0.95, "median_seconds": 5.0, "median_length": 8}
#: resamples of the paired bootstrap that judges "better than a baseline" (``compare``)
RESAMPLES = 2000
#: seconds at which kill rates are compared too, short of the budget (``over_time``)
CHECKPOINTS = (0.1, 0.3, 1.0, 3.0)
INF = float("inf")


def by_mutant(rows: list[dict]) -> dict[str, list[dict]]:
    """The killable rows, grouped by mutant: one row per seed it was hunted with."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if r["killable"]:
            groups.setdefault(r["name"], []).append(r)
    return groups


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarise(rows: list[dict], strategy: str) -> dict:
    """Kill rate, medians and the kill-time curve of one strategy over the killable mutants
    (over every hunt of one: a row per mutant and seed), and how many mutants it killed
    under every seed."""
    res = [r["results"][strategy] for r in rows if r["killable"]]
    killed = [r for r in res if r["killed"]]
    figures = _statistics(res)
    groups = by_mutant(rows).values()
    return {
        "killable": len(res), "killed": len(killed), "mutants": len(groups),
        "killed_every_seed": sum(all(r["results"][strategy]["killed"] for r in g)
                                 for g in groups),
        "kill_rate": round(figures["kill_rate"], 4),
        "median_seconds": None if figures["median_seconds"] == INF
        else round(figures["median_seconds"], 3),
        "median_seconds_killed": _r(median([r["seconds"] for r in killed])),
        "median_length": None if figures["median_length"] == INF else figures["median_length"],
        "median_examples": median([r["examples"] for r in killed]),
        "times": sorted(round(r["seconds"], 3) for r in killed),
    }


#: what one "example" of each strategy is: examples to kill compare only within one unit
UNIT = {"nvmefuzz": "example", "unguided": "example", "random-walk": "walk",
        "functional": "workload"}


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test: the chance of a split at least this uneven between
    ``wins`` and ``losses`` if either side were as likely to come out ahead (ties dropped)."""
    n, k = wins + losses, min(wins, losses)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n) if n else 1.0


def head_to_head(rows: list[dict], strategies: list[str]) -> dict[str, dict]:
    """Per baseline, over the killable mutants: who killed first, and how many mutants both
    killed after the same number of examples (before Hypothesis' first target phase, in the
    third round of batches, that means the same examples: their times differ by the clock
    alone).  Against a baseline whose examples are examples too (``UNIT``), it also counts
    who needed fewer of them, with a sign test: a count the clock cannot blur."""
    out = {}
    for rival in (s for s in strategies if s != "nvmefuzz"):
        tally = dict.fromkeys(("nvmefuzz_first", "rival_first", "neither", "same_examples"), 0)
        fewer = dict.fromkeys(("nvmefuzz_fewer", "rival_fewer"), 0)
        for row in (r for r in rows if r["killable"]):
            ours, theirs = row["results"]["nvmefuzz"], row["results"][rival]
            t_ours = ours["seconds"] if ours["killed"] else float("inf")
            t_theirs = theirs["seconds"] if theirs["killed"] else float("inf")
            if t_ours == t_theirs == float("inf"):
                tally["neither"] += 1
            else:
                tally["nvmefuzz_first" if t_ours < t_theirs else "rival_first"] += 1
            # a mutant one side never killed took it more examples than it ran
            n_ours = ours["examples"] if ours["killed"] else float("inf")
            n_theirs = theirs["examples"] if theirs["killed"] else float("inf")
            if n_ours != n_theirs:
                fewer["nvmefuzz_fewer" if n_ours < n_theirs else "rival_fewer"] += 1
            tally["same_examples"] += (ours["killed"] and theirs["killed"]
                                       and ours["examples"] == theirs["examples"])
        if UNIT.get(rival) == UNIT["nvmefuzz"]:
            tally.update(fewer, sign_p=sign_test(fewer["nvmefuzz_fewer"], fewer["rival_fewer"]))
        out[rival] = tally
    return out


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _statistics(res: list[dict]) -> dict[str, float]:
    """The three figures the acceptance compares, with never (inf) for what was not reached."""
    killed = [r for r in res if r["killed"]]
    lengths = [r["length"] for r in killed]
    return {"kill_rate": len(killed) / len(res) if res else 0.0,
            "median_seconds": statistics.median(
                r["seconds"] if r["killed"] else INF for r in res) if res else INF,
            "median_length": statistics.median(lengths) if lengths else INF}


def _minus(a: float, b: float) -> float:
    return 0.0 if a == b else a - b            # never minus never is a tie, not nan


def compare(rows: list[dict], rival: str,
            figures: Callable[[list[dict]], dict[str, float]] = _statistics
            ) -> dict[str, dict[str, float]]:
    """nvmefuzz minus ``rival`` on each figure (by default the three the acceptance compares),
    with a 95% interval from a paired bootstrap.

    The mutants are resampled with replacement, each keeping both strategies' results under
    every seed it was hunted with, and the figures are recomputed ``RESAMPLES`` times.  An
    interval that stays on one side of zero is a difference that neither the choice of
    mutants nor the clock explains; one that holds zero is a tie, however the point
    estimates fall.
    """
    groups = [[(r["results"]["nvmefuzz"], r["results"][rival]) for r in g]
              for g in by_mutant(rows).values()]
    pairs = [p for g in groups for p in g]
    rng = random.Random(0)
    point = (figures([p[0] for p in pairs]), figures([p[1] for p in pairs]))
    out = {k: {"difference": _minus(point[0][k], point[1][k])} for k in point[0]}
    draws: dict[str, list[float]] = {k: [] for k in out}
    for _ in range(RESAMPLES if pairs else 0):
        sample = [p for _ in groups for p in groups[rng.randrange(len(groups))]]
        ours, theirs = figures([p[0] for p in sample]), figures([p[1] for p in sample])
        for k, values in draws.items():
            values.append(_minus(ours[k], theirs[k]))
    for k, values in draws.items():
        values.sort()
        out[k]["low"] = values[int(0.025 * len(values))] if values else 0.0
        out[k]["high"] = values[int(0.975 * len(values)) - 1] if values else 0.0
    return out


def rates_by(checkpoints: list[float]) -> Callable[[list[dict]], dict[str, float]]:
    """The share of hunts killed within each of ``checkpoints`` seconds (keys ``"0.3"``...)."""
    def figures(res: list[dict]) -> dict[str, float]:
        return {f"{t:g}": sum(r["killed"] and r["seconds"] <= t for r in res) / len(res)
                if res else 0.0 for t in checkpoints}
    return figures


def over_time(rows: list[dict], rival: str, budget: float) -> dict[str, dict[str, float]]:
    """``compare`` of the kill rate at each of ``CHECKPOINTS`` short of the budget: the plot's
    curves in figures, with where they part beyond chance and where they meet."""
    return compare(rows, rival, rates_by([t for t in CHECKPOINTS if t < budget]))


def higher(d: dict[str, float]) -> bool:
    """Is a difference (nvmefuzz minus a baseline) above zero beyond its interval?"""
    return d["low"] > 0


def better(diff: dict[str, dict[str, float]]) -> dict[str, bool]:
    """Which figures are better for nvmefuzz beyond the bootstrap's 95% interval."""
    return {"kill_rate": higher(diff["kill_rate"]),
            "median_seconds": diff["median_seconds"]["high"] < 0,
            "median_length": diff["median_length"]["high"] < 0}


def acceptance(summary: dict, comparisons: dict[str, dict]) -> dict[str, bool]:
    """The issue's goals; "better than every baseline" is judged by ``compare``'s intervals."""
    ours = summary["nvmefuzz"]
    sec = INF if ours["median_seconds"] is None else ours["median_seconds"]
    length = INF if ours["median_length"] is None else ours["median_length"]
    wins = [better(d) for d in comparisons.values()]
    return {
        "kill rate >= 95% of killable": ours["kill_rate"] >= GOALS["kill_rate"],
        "median time to kill <= 5 s": sec <= GOALS["median_seconds"],
        "median shrunk length <= 8 steps": length <= GOALS["median_length"],
        # with no baseline in the run there is nothing to be better than: not met
        "kill rate above every baseline": bool(wins) and all(w["kill_rate"] for w in wins),
        "median time below every baseline": bool(wins) and all(w["median_seconds"]
                                                               for w in wins),
        "median length below every baseline": bool(wins) and all(w["median_length"]
                                                                 for w in wins),
    }


def judge(report: dict) -> None:
    """Fill in a report's comparisons, acceptance and head to head from its rows."""
    rows, strategies = report["mutants"], report["meta"]["strategies"]
    if "nvmefuzz" not in strategies:
        report.update(comparisons={}, over_time={}, acceptance={}, head_to_head={})
        return
    report["comparisons"] = {s: compare(rows, s) for s in strategies if s != "nvmefuzz"}
    report["over_time"] = {s: over_time(rows, s, report["meta"].get("budget", INF))
                           for s in strategies if s != "nvmefuzz"}
    report["acceptance"] = acceptance(report["summary"], report["comparisons"])
    report["head_to_head"] = head_to_head(rows, strategies)

