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
JSON`` rewrites the table of an earlier run from its JSON.  The figures and their judging
are ``mutant_stats.py``, the table and the plot ``mutant_report.py``, beside this file.

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
import multiprocessing
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import hypothesis

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mutant_report as report_md  # noqa: E402  (the report and the figures, next door)
import mutant_stats as stats  # noqa: E402

from nvmefuzz.fuzz.baselines import STRATEGIES, Kill  # noqa: E402
from nvmefuzz.fuzz.batch import warm_up  # noqa: E402
from nvmefuzz.fuzz.campaign import load  # noqa: E402
from nvmefuzz.model.profiles import mutants as M  # noqa: E402
from nvmefuzz.trace.corpus import slug  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CAMPAIGNS = ("mutant-hunt-admin", "mutant-hunt-io", "mutant-hunt-intx")
CONTROL = "full"


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
        stats.judge(report)
        args.render.write_text(json.dumps(report, indent=1) + "\n")
        args.render.with_suffix(".md").write_text(report_md.markdown(report))
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
    summary = {s: stats.summarise(rows, s) for s in strategies}
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
    stats.judge(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mutants.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "mutants.md").write_text(report_md.markdown(report))
    report_md.plot(report, args.out / "mutants.png")
    if full_run(args.only, strategies, campaigns):
        dest = ROOT / "bench" / "results"
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("mutants.json", "mutants.md"):
            shutil.copyfile(args.out / name, dest / name)
    print(report_md.markdown(report).split("## Per mutant")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
