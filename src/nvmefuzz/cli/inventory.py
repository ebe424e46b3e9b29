"""``nvmefuzz corpus``, ``targets`` and ``campaigns``: what is stored, what runs here, what
can be run."""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import click
from rich.table import Table

from nvmefuzz.cli import EXIT_ERROR, EXIT_OK, Terminated, main, out
from nvmefuzz.fuzz import campaign as campaigns
from nvmefuzz.trace import corpus as corpus_mod


@main.group()
def corpus() -> None:
    """Inspect and tidy the regression corpus."""


@corpus.command("list")
@click.argument("root", type=click.Path(path_type=Path), default=Path("corpus"))
def corpus_list(root: Path) -> None:
    """One line per stored trace: profile, verdict, steps, migrations, path."""
    t = Table(title=str(root))
    for col in ("profile", "verdict", "signature", "steps", "migrations", "path"):
        t.add_column(col)
    bad = 0
    for e in corpus_mod.load_all(root):
        if e.trace is None:
            bad += 1
            t.add_row("?", "[red]unreadable", e.error, "-", "-", str(e.path))
            continue
        tr = e.trace
        t.add_row(tr.profile, tr.verdict.kind, tr.verdict.signature, str(len(tr.steps)),
                  str(tr.migrations), str(e.path))
    out.print(t)
    sys.exit(EXIT_ERROR if bad else EXIT_OK)


@corpus.command("causes")
@click.argument("root", type=click.Path(path_type=Path), default=Path("corpus"))
def corpus_causes(root: Path) -> None:
    """The stored findings grouped by root cause (``fuzz.cause``): one row per cause, with
    every signature it shows as."""
    from nvmefuzz.fuzz.known import NOT_REPLAYABLE, root_cause

    groups: dict[tuple[str, str], list[str]] = {}
    bad = 0
    for e in corpus_mod.load_all(root):
        if e.trace is None:
            bad += 1
            continue
        cause = root_cause(e.trace)
        key = (e.trace.profile, cause.key if cause else NOT_REPLAYABLE)
        groups.setdefault(key, []).append(e.trace.verdict.signature)
    t = Table(title=f"{root}: root causes")
    for col in ("profile", "root cause", "findings", "signatures"):
        t.add_column(col)
    for (profile, key), sigs in sorted(groups.items()):
        t.add_row(profile, key, str(len(sigs)), "\n".join(sorted(sigs)))
    out.print(t)
    out.print(f"{sum(map(len, groups.values()))} findings, {len(groups)} root causes"
              + (f", {bad} unreadable files (nvmefuzz corpus list names them)" if bad else ""))
    sys.exit(EXIT_ERROR if bad else EXIT_OK)


@corpus.command("dedup")
@click.argument("root", type=click.Path(path_type=Path), default=Path("corpus"))
def corpus_dedup(root: Path) -> None:
    """Keep the shortest trace per (profile, signature and root cause); move files to their
    canonical names."""
    best: dict[tuple[str, str], corpus_mod.Entry] = {}
    removed = 0
    for e in corpus_mod.load_all(root):
        if e.trace is None:
            continue
        key = (e.trace.profile, e.trace.verdict.identity)
        if key in best and len(best[key].trace.steps) <= len(e.trace.steps):
            e.path.unlink()
            removed += 1
            continue
        if key in best:
            best[key].path.unlink()
            removed += 1
        best[key] = e
    for e in best.values():
        canonical = corpus_mod.path_for(root, e.trace)
        if canonical != e.path:
            corpus_mod.atomic_write(canonical, e.trace.encode())
            e.path.unlink()
    out.print(f"{len(best)} traces kept, {removed} duplicates removed")


@corpus.command("shrink")
@click.argument("root", type=click.Path(path_type=Path), default=Path("corpus"))
@click.option("--seconds", default=60.0, show_default=True,
              help="Shrinking budget per trace.")
@click.option("--dry-run", is_flag=True, help="Only report what would change.")
def corpus_shrink(root: Path, seconds: float, dry_run: bool) -> None:
    """Shrink the stored traces again: steps deleted and arguments simplified while each keeps
    its verdict, signature and root cause (so its file name); rewritten in place.  QEMU traces
    are shrunk on the model and confirmed on QEMU."""
    t = Table(title=f"{root}: shrunk again" + (" (dry run)" if dry_run else ""))
    for col in ("path", "steps", "arguments", "seconds"):
        t.add_column(col)
    n: Counter = Counter()
    try:
        no_qemu = _shrink_all(corpus_mod.load_all(root), root, seconds, dry_run, t, n)
    except Terminated:                    # each file is written whole (atomic), or not at all
        out.print(t)
        out.print("stopped: the traces above were shrunk, the others are as they were")
        raise
    out.print(t)
    out.print(f"{n['changed']} traces {'would be ' if dry_run else ''}shrunk, {n['kept']} "
              "already as small as today's shrinking makes them"
              + (f", {n['no qemu']} QEMU traces left as they are ({no_qemu})"
                 if n["no qemu"] else "")
              + (f", {n['bad']} unreadable files left as they are" if n["bad"] else ""))
    sys.exit(EXIT_ERROR if n["bad"] else EXIT_OK)


def _shrink_all(entries: list[corpus_mod.Entry], root: Path, seconds: float, dry_run: bool,
                t: Table, n: Counter) -> str | None:
    """``corpus shrink``'s loop: each trace shrunk again and, unless a dry run, written back,
    with a row in ``t``; ``n`` counts them as it goes.  Returns why QEMU traces were left
    (no QEMU here), if they were."""
    from nvmefuzz.errors import TargetUnavailable
    from nvmefuzz.fuzz.minimize import reshrink
    from nvmefuzz.targets.discovery import find_qemu

    no_qemu = None
    for e in entries:
        if e.trace is None:
            n["bad"] += 1
            t.add_row(_shown(e.path, root), "[red]unreadable", e.error, "-")
            continue
        if e.trace.target.get("kind", "model") == "qemu":
            try:
                find_qemu()                    # looked for once (discovery caches it)
            except TargetUnavailable as exc:   # QEMU confirms what the model shrinks
                no_qemu, n["no qemu"] = str(exc), n["no qemu"] + 1
                continue
        start = time.monotonic()
        small = reshrink(e.trace, seconds)
        if small == e.trace:
            n["kept"] += 1
            continue
        n["changed"] += 1
        if not dry_run:
            corpus_mod.atomic_write(e.path, small.encode())
        t.add_row(_shown(e.path, root), f"{len(e.trace.steps)} -> {len(small.steps)}",
                  f"{_args(e.trace)} -> {_args(small)}", f"{time.monotonic() - start:.1f}")
    return no_qemu


def _shown(path: Path, root: Path) -> str:
    """``path`` as the table shows it: below ``root`` where it is (a corpus folder)."""
    return str(path.relative_to(root)) if path != root and path.is_relative_to(root) else str(path)


def _args(trace) -> int:
    """Arguments given in the trace's steps (the rest are the actions' defaults)."""
    return sum(len(s.args) for s in trace.steps)


@main.command()
def targets() -> None:
    """What targets are available here, and why not when they are not."""
    from nvmefuzz.targets.discovery import describe

    t = Table(title="targets")
    for col in ("target", "available", "detail"):
        t.add_column(col)
    for name, ok, detail in describe():
        t.add_row(name, "yes" if ok else "[red]no", detail)
    out.print(t)


@main.command("campaigns")
def list_campaigns() -> None:
    """The campaigns in strategies/."""
    t = Table(title="campaigns")
    for col in ("name", "target", "profile", "steps", "description"):
        t.add_column(col)
    for name in campaigns.available():
        c = campaigns.load(name)
        t.add_row(c.name, c.target, c.profile, str(c.steps), c.description)
    out.print(t)
