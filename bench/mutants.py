"""How strong is the fuzzer?  Every mutant of ``full``, every strategy, one time budget each.

For each mutant in ``nvmefuzz.model.profiles.mutants.MUTANTS`` (and ``full`` itself as the
control, which nothing may kill) each strategy of ``nvmefuzz.fuzz.baselines.STRATEGIES``
hunts it with the same campaigns, seed and wall-clock budget.  Recorded per pair: killed,
time to kill (to the first failing example), examples to kill, reproducer length (shrunk for
the state machines), signature.  Each hunt runs in a fresh process; the clock starts once the
process has paid its one-off costs (``batch.warm_up``, as it paid its imports), which a
nightly run pays once and a hunt of one mutant would otherwise count against the state
machines alone.  Output:

* ``reports/bench/mutants.json``: everything, plus per-strategy summaries;
* ``reports/bench/mutants.md``: the summary, the acceptance check, the kill rate over time
  (at ``CHECKPOINTS``, each baseline compared as at the budget) and the per-mutant table;
* ``reports/bench/mutants.png``: killed share of the killable mutants over time, per strategy;
* ``reports/bench/traces/<strategy>/<mutant>.cbor``: each reproducer, replayable;
* a full run (every mutant, strategy and campaign) copies the table and JSON to
  ``bench/results/``.

The table also puts nvmefuzz head to head with each baseline, mutant by mutant.  ``--render
JSON`` rewrites the table of an earlier run from its JSON.

Acceptance: nvmefuzz kills >= 95% of the killable mutants with a median time to kill <= 5 s
(mutants it does not kill count as never) and a median reproducer <= 8 steps, each better than
every baseline: beyond the 95% interval of a paired bootstrap over the mutants, so a gap of
clock noise or of which mutants happen to be in the catalogue is a tie.
With ``--seeds N`` every mutant is hunted once per seed (``--seed`` to ``--seed + N - 1``):
one seed decides which examples a run makes, so a hard mutant killed late may die or not
by the seed alone, and several seeds give the kill rate it has over seeds.
Usage: ``python bench/mutants.py --budget 20 --jobs 2 --seeds 3 [--only PATTERN]``.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import multiprocessing
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import hypothesis

from nvmefuzz.fuzz.baselines import STRATEGIES, Kill
from nvmefuzz.fuzz.batch import warm_up
from nvmefuzz.fuzz.campaign import load
from nvmefuzz.model.profiles import mutants as M
from nvmefuzz.trace.corpus import slug

ROOT = Path(__file__).resolve().parents[1]
CAMPAIGNS = ("mutant-hunt-admin", "mutant-hunt-io", "mutant-hunt-intx")
CONTROL = "full"
GOALS = {"kill_rate": 0.95, "median_seconds": 5.0, "median_length": 8}
#: resamples of the paired bootstrap that judges "better than a baseline" (``compare``)
RESAMPLES = 2000
#: seconds at which kill rates are compared too, short of the budget (``over_time``)
CHECKPOINTS = (0.1, 0.3, 1.0, 3.0)
INF = float("inf")


def checkout() -> str:
    """The commit the bench runs, ``+changes`` when the tree has uncommitted edits ('' when
    there is no git checkout): the results say what code they measured."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    try:
        head = git("rev-parse", "--short", "HEAD")
        return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return ""


Job = tuple[str, str, tuple[str, ...], int, float]   # mutant, strategy, campaigns, seed, budget


def hunt(job: Job) -> tuple[str, str, int, dict, bytes]:
    mutant, strategy, campaigns, seed, budget = job
    camps = [load(c).with_profile(mutant) for c in campaigns]
    kill: Kill = STRATEGIES[strategy](camps, seed, budget)
    return mutant, strategy, seed, kill.to_plain(), kill.trace


def by_mutant(rows: list[dict]) -> dict[str, list[dict]]:
    """The killable rows, grouped by mutant: one row per seed it was hunted with."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if r["killable"]:
            groups.setdefault(r["name"], []).append(r)
    return groups


def _median(values: list[float]) -> float | None:
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
        "median_seconds_killed": _r(_median([r["seconds"] for r in killed])),
        "median_length": None if figures["median_length"] == INF else figures["median_length"],
        "median_examples": _median([r["examples"] for r in killed]),
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


def better(diff: dict[str, dict[str, float]]) -> dict[str, bool]:
    """Which figures are better for nvmefuzz beyond the bootstrap's 95% interval."""
    return {"kill_rate": diff["kill_rate"]["low"] > 0,
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


# ---------------------------------------------------------------------- output
def _cell(hunts: list[dict]) -> str:
    """One strategy on one mutant: time and reproducer length of a kill; under several
    seeds, how many killed it and the medians of those that did."""
    killed = [r for r in hunts if r["killed"]]
    if len(hunts) == 1:
        return f"{killed[0]['seconds']:.2f} s / {killed[0]['length']} st" if killed else "-"
    if not killed:
        return f"0/{len(hunts)}"
    return (f"{len(killed)}/{len(hunts)}: {_median([r['seconds'] for r in killed]):.2f} s / "
            f"{_median([r['length'] for r in killed]):g} st")


def seeds_text(meta: dict) -> str:
    """``seed 1`` or ``seeds 1-3``: what the run hunted with."""
    seeds = meta.get("seeds") or [meta["seed"]]
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}-{seeds[-1]}"


def markdown(report: dict) -> str:
    meta, summary, strategies = report["meta"], report["summary"], report["meta"]["strategies"]
    at = f", commit {meta['commit']}" if meta.get("commit") else ""
    out = [f"# Mutant kill bench ({meta['date']}{at})", "",
           f"Budget {meta['budget']} s per mutant per strategy and seed, {seeds_text(meta)}, "
           f"campaigns {', '.join(meta['campaigns'])} (taken in turn), {meta['mutants']} "
           f"mutants of which {meta['killable']} killable, Hypothesis {meta['hypothesis']}, "
           f"{meta['jobs']} parallel jobs on {meta['machine']}.", "",
           "| strategy | killed | kill rate | killed under every seed | median time to kill "
           "| median (killed only) | median reproducer (steps) | median examples |",
           "|---|---|---|---|---|---|---|---|"]
    for s in strategies:
        x = summary[s]
        every = x.get("killed_every_seed", x["killed"])
        out.append(f"| {s} | {x['killed']}/{x['killable']} | {100 * x['kill_rate']:.1f}% | "
                   f"{every}/{x.get('mutants', x['killable'])} | "
                   f"{_fmt(x['median_seconds'], ' s', 'not reached')} | "
                   f"{_fmt(x['median_seconds_killed'], ' s')} | {_fmt(x['median_length'])} | "
                   f"{_fmt(x['median_examples'])} |")
    out += ["", "Counts, rates and medians are over every hunt: one per killable mutant and "
            "seed. Time to kill counts mutants a strategy did not kill as never killed. "
            "Reproducer: Hypothesis's shrunk trace after step deletion and simpler arguments "
            "(what `nvmefuzz fuzz` stores) for nvmefuzz and unguided; the walk up to the "
            "failing step for random-walk; the whole workload for functional.", "",
            "## Acceptance", ""]
    out += [f"- [{'x' if ok else ' '}] {name}" for name, ok in report["acceptance"].items()]
    out += ["", "\"Better\" means better beyond chance: nvmefuzz minus the baseline, with the "
            f"95% interval of a paired bootstrap over the killable mutants ({RESAMPLES} "
            "resamples; a mutant drawn brings all its seeds). An interval holding zero is a "
            "tie, whatever the medians above say.",
            "", "| baseline | kill rate | median time to kill | median reproducer |",
            "|---|---|---|---|"]
    for rival, diff in report.get("comparisons", {}).items():
        wins = better(diff)
        cells = [_interval(diff["kill_rate"], wins["kill_rate"], 100, " pt"),
                 _interval(diff["median_seconds"], wins["median_seconds"], 1, " s"),
                 _interval(diff["median_length"], wins["median_length"], 1, " steps")]
        out.append(f"| {rival} | " + " | ".join(cells) + " |")
    out += _over_time_md(report)
    out += ["", "## Head to head", "",
            "Over the hunts of killable mutants (one per mutant and seed), which of the two "
            "killed first; the last column counts hunts where both killed after the same "
            "number of examples. Before Hypothesis' "
            "first target phase (the third round of batches) that means the same examples up "
            "to the kill, so the times differ by the clock alone.", "",
            "| baseline | nvmefuzz first | baseline first | neither | same examples |",
            "|---|---|---|---|---|"]
    h2h = report.get("head_to_head", {})
    out += [f"| {rival} | {t['nvmefuzz_first']} | {t['rival_first']} | {t['neither']} | "
            f"{t['same_examples']} |" for rival, t in h2h.items()]
    counted = {rival: t for rival, t in h2h.items() if "sign_p" in t}
    if counted:
        out += ["", "Examples to the kill, against the baselines whose examples are examples "
                "too: which of the two needed fewer (a mutant not killed needed more than were "
                "run), and the two-sided sign test over the hunts where they differ. No "
                "clock is involved.", "",
                "| baseline | nvmefuzz fewer | baseline fewer | sign test p |", "|---|---|---|---|"]
        out += [f"| {rival} | {t['nvmefuzz_fewer']} | {t['rival_fewer']} | {t['sign_p']:.2g} |"
                for rival, t in counted.items()]
    control = report["control"]
    out += ["", "Control (`full`, must survive): "
            + ", ".join(f"{s} {'KILLED' if control[s]['killed'] else 'survived'}"
                        for s in strategies), "", "## Per mutant", "",
            "| mutant | kind | " + " | ".join(strategies) + " | nvmefuzz signature |",
            "|---|---|" + "---|" * len(strategies) + "---|"]
    for name, rows in by_mutant(report["mutants"]).items():
        cells = " | ".join(_cell([r["results"][s] for r in rows]) for s in strategies)
        sig = next((r["results"]["nvmefuzz"]["signature"] for r in rows
                    if r["results"].get("nvmefuzz", {}).get("killed")), "")
        out.append(f"| `{name}` | {rows[0]['kind']} | {cells} | `{sig}` |")
    out += ["", "## Not killable", ""]
    out += [f"- `{n}`: {why}" for n, why in M.NOT_KILLABLE.items()]
    return "\n".join(out) + "\n"


def _over_time_md(report: dict) -> list[str]:
    """The kill rate of each strategy at each checkpoint and at the budget, and nvmefuzz
    minus each baseline there with its interval (``over_time``)."""
    budget, over = report["meta"]["budget"], report.get("over_time", {})
    marks = [t for t in CHECKPOINTS if t < budget]
    if not over or not marks:
        return []
    head = "| " + " | ".join(f"{t:g} s" for t in [*marks, budget]) + " |"
    rule = "|---|" + "---|" * (len(marks) + 1)
    out = ["", "## Kill rate over time", "",
           "The plot's curves in figures: the share of hunts of killable mutants killed within "
           "each time, then nvmefuzz minus each baseline with the interval of the same paired "
           "bootstrap. Where the curves have met, at the budget, a difference earlier on is "
           "how much sooner nvmefuzz kills, not how much more.", "",
           "| strategy " + head, rule]
    for s in report["meta"]["strategies"]:
        res = [r["results"][s] for r in report["mutants"] if r["killable"]]
        rates = rates_by([*marks, budget])(res)
        out.append(f"| {s} | " + " | ".join(f"{100 * v:.1f}%" for v in rates.values()) + " |")
    out += ["", "| baseline " + head, rule]
    for rival, diff in over.items():
        cells = [_interval(diff[f"{t:g}"], diff[f"{t:g}"]["low"] > 0, 100, " pt")
                 for t in marks]
        at_budget = report["comparisons"][rival]["kill_rate"]
        cells.append(_interval(at_budget, at_budget["low"] > 0, 100, " pt"))
        out.append(f"| {rival} | " + " | ".join(cells) + " |")
    return out


def _interval(d: dict[str, float], win: bool, scale: float, unit: str) -> str:
    """``-0.05 s (-0.1 .. -0.01) better``: a difference, its interval and the verdict (-inf:
    nvmefuzz reached the median and the baseline never did)."""
    def num(x: float) -> str:
        return "+inf" if x == INF else "-inf" if x == -INF else f"{scale * x:+.3g}"
    verdict = "better" if win else "tie" if d["low"] <= 0 <= d["high"] else "worse"
    return f"{num(d['difference'])}{unit} ({num(d['low'])} .. {num(d['high'])}) {verdict}"


def _fmt(x: float | None, unit: str = "", none: str = "-") -> str:
    return none if x is None else f"{x:g}{unit}"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budget = report["meta"]["budget"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for s in report["meta"]["strategies"]:
        x = report["summary"][s]
        times, n = x["times"], max(x["killable"], 1)
        xs = [0.01] + [t for t in times for _ in (0, 1)] + [budget]
        ys = [0.0] + [v for i in range(len(times)) for v in (i / n, (i + 1) / n)] + [
            len(times) / n]
        ax.step([max(t, 0.01) for t in xs], [100 * y for y in ys], where="post", label=s)
    ax.set_xscale("log")
    ax.set_xlim(0.01, budget)
    ax.set_ylim(0, 100)
    ax.axhline(100 * GOALS["kill_rate"], color="grey", lw=0.6, ls="--")
    ax.set_xlabel("seconds per mutant (log scale)")
    ax.set_ylabel("hunts of killable mutants that killed (%)")
    ax.set_title(f"Mutant kill rate over time ({seeds_text(report['meta'])})")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------- main
def full_run(only: str | None, strategies: list[str], campaigns: tuple[str, ...]) -> bool:
    """Does a run stand for the bench (its results go to ``bench/results/``): every mutant,
    every strategy, the bench's campaigns?"""
    return not only and strategies == list(STRATEGIES) and campaigns == CAMPAIGNS


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=15.0, help="seconds per mutant per strategy")
    ap.add_argument("--only", help="glob or substring of mutant names to run")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1, help="the first seed")
    ap.add_argument("--seeds", type=int, default=1,
                    help="hunt each mutant once per seed, from --seed on")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--campaigns", default=",".join(CAMPAIGNS))
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "bench")
    ap.add_argument("--render", type=Path, metavar="JSON",
                    help="write the markdown table of an earlier run's mutants.json beside it")
    args = ap.parse_args(argv)
    if args.render:
        report = json.loads(args.render.read_text())
        judge(report)
        args.render.write_text(json.dumps(report, indent=1) + "\n")
        args.render.with_suffix(".md").write_text(markdown(report))
        return 0

    strategies = args.strategies.split(",")
    campaigns = tuple(args.campaigns.split(","))
    names = [n for n in M.MUTANTS if not args.only or args.only in n
             or fnmatch.fnmatch(n, args.only)]
    seeds = list(range(args.seed, args.seed + args.seeds))
    jobs = [(n, s, campaigns, seed, args.budget) for seed in seeds for n in [CONTROL, *names]
            for s in strategies]
    results: dict[tuple[str, int], dict] = {}
    traces = args.out / "traces"
    commit = checkout()
    start = time.monotonic()
    # a fresh process per hunt, warmed before its clock starts
    with multiprocessing.Pool(args.jobs, initializer=warm_up, maxtasksperchild=1) as pool:
        for i, (name, s, seed, kill, trace) in enumerate(pool.imap_unordered(hunt, jobs), 1):
            results.setdefault((name, seed), {})[s] = kill
            if trace:
                path = traces / s / f"{slug(name)}{'' if len(seeds) == 1 else f'-{seed}'}.cbor"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(trace)
            print(f"[{i}/{len(jobs)} {time.monotonic() - start:6.0f}s] {name:40s} {seed:3d} "
                  f"{s:12s} " + (f"killed {kill['seconds']:.2f}s {kill['length']} steps "
                                 f"{kill['signature']}" if kill["killed"] else "survived"),
                  file=sys.stderr, flush=True)

    rows = [{"name": n, "seed": seed, "kind": M.KIND[n],
             "description": M.MUTANTS[n].description, "source": M.MUTANTS[n].source,
             "killable": n not in M.NOT_KILLABLE, "not_killable": M.NOT_KILLABLE.get(n),
             "results": results[n, seed]} for n in names for seed in seeds]
    # the control survives only if it survived every seed: show a kill if there was one
    control = {s: next((results[CONTROL, seed][s] for seed in seeds
                        if results[CONTROL, seed][s]["killed"]), results[CONTROL, seeds[0]][s])
               for s in strategies}
    summary = {s: summarise(rows, s) for s in strategies}
    report = {
        "meta": {"date": time.strftime("%Y-%m-%d %H:%M"), "budget": args.budget,
                 "seed": args.seed, "seeds": seeds, "jobs": args.jobs,
                 "campaigns": list(campaigns),
                 "strategies": strategies, "mutants": len(rows),
                 "killable": sum(r["killable"] for r in rows), "only": args.only,
                 "hypothesis": hypothesis.__version__, "commit": commit,
                 "machine": f"{platform.machine()} x{multiprocessing.cpu_count()}",
                 "wall_seconds": round(time.monotonic() - start, 1)},
        "summary": summary,
        "control": control, "mutants": rows,
    }
    judge(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mutants.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "mutants.md").write_text(markdown(report))
    plot(report, args.out / "mutants.png")
    if full_run(args.only, strategies, campaigns):
        dest = ROOT / "bench" / "results"
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("mutants.json", "mutants.md"):
            shutil.copyfile(args.out / name, dest / name)
    print(markdown(report).split("## Per mutant")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
