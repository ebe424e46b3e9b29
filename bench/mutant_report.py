"""The mutant bench's report: the markdown table and the kill-rate plot of a judged run.

How it works
------------
``markdown`` writes a report that ``mutant_stats.judge`` has filled in: the summary per
strategy, the acceptance check with each baseline's intervals, the kill rate over time,
the head to head, the control and a row per mutant, then the mutants no trace can kill
with the argument why.  ``plot`` draws the share of hunts killed over time, per strategy.
"""

from __future__ import annotations

from pathlib import Path

from mutant_stats import (CHECKPOINTS, GOALS, INF, RESAMPLES, better, by_mutant, higher,
                          median, rates_by)

from nvmefuzz.model.profiles import mutants as M


def _cell(hunts: list[dict]) -> str:
    """One strategy on one mutant: time and reproducer length of a kill; under several
    seeds, how many killed it and the medians of those that did."""
    killed = [r for r in hunts if r["killed"]]
    if len(hunts) == 1:
        return f"{killed[0]['seconds']:.2f} s / {killed[0]['length']} st" if killed else "-"
    if not killed:
        return f"0/{len(hunts)}"
    return (f"{len(killed)}/{len(hunts)}: {median([r['seconds'] for r in killed]):.2f} s / "
            f"{median([r['length'] for r in killed]):g} st")


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
        cells = [_interval(diff[f"{t:g}"], higher(diff[f"{t:g}"]), 100, " pt")
                 for t in marks]
        at_budget = report["comparisons"][rival]["kill_rate"]
        cells.append(_interval(at_budget, higher(at_budget), 100, " pt"))
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

