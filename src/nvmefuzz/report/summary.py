"""Run summaries as plain data (for ``--json``) and as rich tables (for the terminal).

``summary(result)`` is the single description of a fuzz run: budget used, examples, steps,
migrations and refusals, findings with class, signature, root cause and trace path, waived
differences, hard states reached at migrations and at resets, the state paths migrations lost
(model targets: whether or not the guest saw it), and the other ``event()`` statistics.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from nvmefuzz.fuzz.runner import RunResult
from nvmefuzz.fuzz.session import HARD_PREFIX, LOST_PREFIX, RESET_PREFIX


def _under(stats: dict, prefix: str) -> dict[str, int]:
    """The statistics whose key starts with ``prefix``, keyed by the rest, sorted."""
    return {k[len(prefix):]: v for k, v in sorted(stats.items()) if k.startswith(prefix)}


def summary(result: RunResult) -> dict[str, Any]:
    s = result.stats
    steps = s["steps"]
    return {
        "campaign": result.campaign.name,
        "target": result.campaign.target,
        "profile": result.campaign.profile,
        "seed": result.seed,
        "elapsed_s": round(result.elapsed, 3),
        "batches": result.batches,
        "examples": s["examples"],
        "steps": steps,
        "steps_per_s": round(steps / result.elapsed, 1) if result.elapsed else 0.0,
        "migrations": s["migrations"],
        "migrations_per_s": round(s["migrations"] / result.elapsed, 1) if result.elapsed else 0,
        "migrations_steered": s["migrations steered"],
        "refusals": s["refusals"],
        "crashed": s["crashed"],
        "hung": s["hung"],
        "state_bytes_per_migration": (s["state bytes"] // s["migrations"]
                                      if s["migrations"] else 0),
        "hard_states_at_migration": _under(s, HARD_PREFIX),
        "resets": s["resets"],
        "hard_states_at_reset": _under(s, RESET_PREFIX),
        "migrations_that_lost_state": s["migrations that lost state"],
        "known_by_root_cause": s["known by root cause"],
        "known_by_signature": s["known by signature"],
        "root_cause_replays": s["root cause replays"],
        "findings_shrunk_on_the_model": s["findings shrunk on the model"],
        "batches_ended_by_timing": s["batches ended by timing"],
        "lost_at_migration": _under(s, LOST_PREFIX),
        "actions": _under(s, "action:"),
        "waived": _under(s, "waived:"),
        "findings": [
            {"class": f.kind, "signature": f.signature, "identity": f.trace.verdict.identity,
             "steps": len(f.trace.steps),
             "trace": str(f.path) if f.path else None,
             "raw_trace": str(f.raw_path) if f.raw_path else None, "new": f.new,
             "detail": f.trace.verdict.detail,
             "cause": f.cause.to_plain() if f.cause is not None else None,
             "lost": f.lost}
            for f in result.findings
        ],
    }


def table(data: dict[str, Any]) -> Table:
    t = Table(title=f"nvmefuzz {data['campaign']} on {data['target']} / {data['profile']}",
              show_header=False)
    t.add_column("what")
    t.add_column("value", justify="right")
    for key in ("elapsed_s", "examples", "steps", "steps_per_s", "migrations",
                "migrations_per_s", "migrations_steered", "refusals", "crashed", "hung",
                "state_bytes_per_migration"):
        t.add_row(key.replace("_", " "), str(data[key]))
    for name, n in data["hard_states_at_migration"].items():
        t.add_row(f"{HARD_PREFIX}{name}", str(n))
    if data["resets"]:
        t.add_row("resets", str(data["resets"]))
    for name, n in data["hard_states_at_reset"].items():
        t.add_row(f"{RESET_PREFIX}{name}", str(n))
    if data["migrations_that_lost_state"]:
        t.add_row("migrations that lost state", str(data["migrations_that_lost_state"]))
    for path, n in data["lost_at_migration"].items():
        t.add_row(f"{LOST_PREFIX}{path}", str(n))
    for key in ("known_by_root_cause", "known_by_signature", "root_cause_replays",
                "findings_shrunk_on_the_model", "batches_ended_by_timing"):
        if data.get(key):
            t.add_row(key.replace("_", " "), str(data[key]))
    for name, n in data["waived"].items():
        t.add_row(f"waived: {name}", str(n))
    t.add_row("findings", str(len(data["findings"])))
    return t


def findings_table(data: dict[str, Any]) -> Table:
    t = Table(title="findings")
    for col in ("class", "signature", "steps", "root cause", "trace"):
        t.add_column(col)
    for f in data["findings"]:
        cause = f.get("cause")
        why = "\n".join([cause["key"], *f.get("lost", ())]) if cause else "-"
        t.add_row(f["class"], f["signature"], str(f["steps"]), why, f["trace"] or "-")
    return t
