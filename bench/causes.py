"""How well are root causes found?  Every mutant of ``full`` killed, its reproducer explained.

Each killable mutant of ``nvmefuzz.model.profiles.mutants`` is hunted by the nvmefuzz state
machine (``bench/mutants.py``'s campaigns, seed and strategy) until its first finding, and
``fuzz.cause.attribute`` explains the shrunk reproducer.  A field mutant
(``full-without-X``: X is not saved) has a known answer: X.  Its cause is *right* when it
names X (and nothing else); *broader* when it names X and more; *wrong* when it does not
name X.  A mutant whose load fails has no completed migration and nothing lost to name; it
is counted apart.  Behavioural and shipped-bug mutants have no single field to name; their
causes are listed for reading.

Prints one line per mutant, the tally, attribution time and replays, and one JSON object on
the last line.  Usage: ``python bench/causes.py [--budget 20] [--jobs 2] [--only PATTERN]``.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mutants import CAMPAIGNS, hunt  # noqa: E402  (the bench next door)

from nvmefuzz.fuzz.cause import STATE, attribute  # noqa: E402
from nvmefuzz.model.profiles import mutants as M  # noqa: E402
from nvmefuzz.trace.schema import Trace  # noqa: E402

PREFIX = "full-without-"


def explain(job: tuple[str, float, int]) -> dict:
    mutant, budget, seed = job
    _, _, kill, blob = hunt((mutant, "nvmefuzz", CAMPAIGNS, seed, budget))
    row = {"mutant": mutant, "kind": M.KIND[mutant], "killed": kill["killed"],
           "signature": kill["signature"]}
    if not kill["killed"]:
        return row
    start = time.perf_counter()
    cause = attribute(Trace.decode(blob))
    row.update(seconds=time.perf_counter() - start, replays=cause.replays, cause=cause.key,
               cause_kind=cause.kind, paths=list(cause.paths))
    if mutant.startswith(PREFIX):
        field = mutant[len(PREFIX):]
        row["verdict"] = ("load failed" if kill["signature"].startswith("crashed:load") else
                          "right" if cause.paths == (field,) else
                          "broader" if field in cause.paths else "wrong")
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", default="*")
    a = ap.parse_args()
    names = [n for n in M.killable() if fnmatch.fnmatch(n, a.only)]
    jobs = [(n, a.budget, a.seed) for n in names]
    with multiprocessing.get_context("spawn").Pool(a.jobs) as pool:
        rows = pool.map(explain, jobs, chunksize=1)
    for r in rows:
        what = r.get("verdict", r["kind"])
        print(f"{r['mutant']:42} {what:11} {r.get('cause', 'not killed')}")
    fields = [r for r in rows if "verdict" in r]
    tally = {v: sum(r["verdict"] == v for r in fields)
             for v in ("right", "broader", "wrong", "load failed")}
    explained = [r for r in rows if r.get("cause_kind") == STATE]
    seconds = [r["seconds"] for r in rows if "seconds" in r]
    replays = [r["replays"] for r in rows if "replays" in r]
    figures = {
        "mutants": len(rows), "killed": sum(r["killed"] for r in rows),
        "field_mutants": len(fields), **{f"field_{k.replace(' ', '_')}": v
                                         for k, v in tally.items()},
        "explained_by_lost_state": len(explained),
        "median_attribution_ms": round(1000 * statistics.median(seconds), 2) if seconds else None,
        "max_attribution_ms": round(1000 * max(seconds), 2) if seconds else None,
        "median_replays": statistics.median(replays) if replays else None,
    }
    print(f"field mutants: {tally['right']} right, {tally['broader']} broader, "
          f"{tally['wrong']} wrong, {tally['load failed']} load failed (of {len(fields)}); "
          f"{len(explained)} of {figures['killed']} kills explained by lost state; "
          f"attribution median {figures['median_attribution_ms']} ms, "
          f"{figures['median_replays']} replays")
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
