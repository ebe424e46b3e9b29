"""``nvmefuzz fuzz``, ``replay`` and ``repro``: run a campaign, check the corpus, show one
trace step by step.  Findings are on disk before anything is printed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import attrs
import click
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from nvmefuzz.cli import (EXIT_ERROR, EXIT_FOUND, EXIT_OK, TERMINATED, Terminated, console,
                          main, out, parse_duration)
from nvmefuzz.errors import NvmeFuzzError
from nvmefuzz.fuzz import campaign as campaigns
from nvmefuzz.fuzz.cause import lost_lines, shows
from nvmefuzz.fuzz.known import root_cause
from nvmefuzz.fuzz.runner import run_campaign
from nvmefuzz.fuzz.session import replay as replay_trace
from nvmefuzz.report.summary import findings_table, summary, table
from nvmefuzz.targets import TargetConfig
from nvmefuzz.trace import corpus as corpus_mod
from nvmefuzz.trace.render import listing, pytest_file


@main.command()
@click.option("--campaign", "-c", default="default", show_default=True,
              help="campaign name in strategies/ or a path to a .toml file")
@click.option("--target", "-t", default=None, help="model or qemu (default: the campaign's)")
@click.option("--profile", "-p", default=None, help="migration profile (default: campaign's)")
@click.option("--time", "budget", default=None, help="time budget, e.g. 90s, 10m, 1h")
@click.option("--examples", type=int, default=None, help="example budget")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--refusals", type=click.Choice(["finding", "continue"]), default=None)
@click.option("--corpus", "corpus_dir", type=click.Path(path_type=Path), default=Path("corpus"),
              show_default=True, help="where shrunk findings are stored")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("reports"),
              show_default=True, help="run folder root (raw findings land here first)")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None,
              help="write the summary as JSON here")
@click.option("--database", default=None,
              help="Hypothesis example database: a directory or redis://host:port "
                   "(a cache shared between runs and machines, never the corpus)")
@click.option("--timeline", type=click.Path(path_type=Path), default=None,
              help="append a JSON line of progress here after every batch")
@click.option("--quiet", "-q", is_flag=True, help="no progress display")
def fuzz(campaign: str, target: str | None, profile: str | None, budget: str | None,
         examples: int | None, seed: int, refusals: str | None, corpus_dir: Path,
         out_dir: Path, json_path: Path | None, database: str | None, timeline: Path | None,
         quiet: bool) -> None:
    """Fuzz a target with a campaign; shrunk findings go to the corpus."""
    import time

    import attrs

    from nvmefuzz.fuzz.database import open_database

    camp = campaigns.load(campaign).with_profile(profile)
    if target:
        camp = attrs.evolve(camp, target=target)
    if refusals:
        camp = attrs.evolve(camp, refusals=refusals)
    campaigns.validate(camp)
    seconds = parse_duration(budget) if budget else None
    if seconds is None and examples is None:
        seconds = 60.0
    design = TargetConfig(kind=camp.target, profile=camp.profile).design_name
    run_dir = out_dir / "runs" / f"{camp.name}-{design}-seed{seed}"
    db = open_database(database)
    started = time.time()
    if timeline is not None:
        timeline.parent.mkdir(parents=True, exist_ok=True)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console,
                  disable=quiet) as bar:
        total = seconds if seconds is not None else examples
        task = bar.add_task(f"{camp.name}/{camp.profile}", total=total, info="")

        def progress(r):
            if TERMINATED:
                raise Terminated(TERMINATED[0])
            if timeline is not None:
                with timeline.open("a") as fh:
                    fh.write(json.dumps({
                        "t": round(time.time() - started, 2), "at": round(time.time(), 2),
                        "campaign": camp.name,
                        "examples": r.stats["examples"], "steps": r.stats["steps"],
                        "migrations": r.stats["migrations"], "findings": len(r.findings),
                    }) + "\n")
            done = r.elapsed if seconds is not None else r.stats["examples"]
            bar.update(task, completed=done, info=(
                f"{r.stats['examples']} examples, {r.stats['steps']} steps, "
                f"{r.stats['migrations']} migrations, {len(r.findings)} findings"))

        try:
            result = run_campaign(camp, seed=seed, seconds=seconds, examples=examples,
                                  corpus_dir=corpus_dir, out_dir=run_dir, database=db,
                                  progress=progress)
        except BaseException as exc:        # whatever a stop signal breaks is the stop
            if not TERMINATED:
                raise
            raw = sorted((run_dir / "raw").glob("*.cbor"))
            console.print(f"stopped: {len(raw)} raw finding(s) not shrunk, in {run_dir / 'raw'}"
                          if raw else "stopped: no findings so far")
            raise Terminated(TERMINATED[0]) from exc
    data = summary(result)
    out.print(table(data))
    if data["findings"]:
        out.print(findings_table(data))
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(data, indent=2, sort_keys=True))
    sys.exit(EXIT_FOUND if data["findings"] else EXIT_OK)


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--verbose", "-v", is_flag=True)
def replay(paths: tuple[Path, ...], verbose: bool) -> None:
    """Replay traces (default: the whole corpus) and check each reaches its recorded verdict."""
    entries = [e for p in (paths or (Path("corpus"),)) for e in corpus_mod.load_all(p)]
    if not entries:
        console.print("[red]error:[/red] no traces found")
        sys.exit(EXIT_ERROR)
    t = Table(title="replay")
    for col in ("status", "trace", "expected", "now"):
        t.add_column(col)
    regressions = errors = 0
    for e in entries:
        if e.trace is None:
            errors += 1
            t.add_row("[red]ERROR", str(e.path), "-", e.error)
            continue
        try:
            verdict, _ = replay_trace(e.trace)
        except NvmeFuzzError as exc:
            errors += 1
            t.add_row("[red]ERROR", str(e.path), e.trace.verdict.signature or "pass", str(exc))
            continue
        same = shows(verdict, e.trace)
        if not same:
            regressions += 1
        status = "as expected" if same else ("[yellow]FIXED" if verdict.ok else "[red]CHANGED")
        if verbose or not same:
            t.add_row(status, str(e.path), e.trace.verdict.signature or "pass",
                      verdict.signature or "pass")
    out.print(t)
    out.print(f"{len(entries)} traces: {len(entries) - regressions - errors} as expected, "
              f"{regressions} regressions, {errors} errors")
    sys.exit(EXIT_ERROR if errors else EXIT_FOUND if regressions else EXIT_OK)


@main.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.argument("emit_dir", required=False, type=click.Path(path_type=Path))
@click.option("--emit-pytest", type=click.Path(path_type=Path), default=None,
              help="also write a standalone pytest file reproducing the trace")
@click.option("--emit", type=click.Choice(["pytest", "qtest"]), default=None,
              help="pytest: print a pytest reproducer; qtest (with a folder EMIT_DIR, qemu "
                   "traces): write cmdline.sh and qtest scripts that replay it without Python")
def repro(path: Path, emit_dir: Path | None, emit_pytest: Path | None,
          emit: str | None) -> None:
    """Replay one trace step by step, showing what the twin and the migrated side saw."""
    trace = corpus_mod.load(path)
    if (emit == "qtest") != (emit_dir is not None):
        raise click.UsageError("--emit qtest takes a folder: repro TRACE --emit qtest DIR")
    if emit == "qtest" and trace.target.get("kind") != "qemu":
        raise click.UsageError("--emit qtest needs a trace of the qemu target")
    out.print(listing(trace))

    def show(i, step, twin, mig):
        out.print(f"[bold]{i:4d} {step.render()}")
        for a, b in _pairs(twin, mig):
            mark = "  " if a == b else "[red]!="
            out.print(f"     {mark} twin {_fmt(a)}")
            if a != b:
                out.print(f"        mig  {_fmt(b)}")

    if emit == "qtest":
        from nvmefuzz.targets import qtest_script

        def mark(i, step, session):
            for side in (session.twin, session.mig):
                rec.of(side).mark(f"step {i}: {step.render()}")

        with qtest_script.recording() as rec:
            verdict, _ = replay_trace(trace, on_step=show, before_step=mark)
        twin, mig = rec.recorders[0], rec.recorders[1]    # the session makes the twin first
        files = qtest_script.render(
            twin.entries, mig.entries, binary_argv=list(mig.target.binary.argv),
            root=mig.target.binary.root, image_bytes=mig.target.cfg.nsze * 512,
            device_props=mig.target.device_props,
            title=f"{trace.verdict.kind} {trace.verdict.signature} ({path.name})",
            kind=trace.verdict.kind)
        emit_dir.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (emit_dir / name).write_text(text)
        (emit_dir / "cmdline.sh").chmod(0o755)
        out.print(f"wrote {', '.join(sorted(files))} to {emit_dir}; run: bash "
                  f"{emit_dir / 'cmdline.sh'}")
    else:
        verdict, _ = replay_trace(trace, on_step=show)
    out.print(f"verdict now: {verdict.kind} {verdict.signature}")
    out.print(verdict.detail)
    notes: list[str] = []               # the root cause, and what it lost
    if not verdict.ok:                  # what this replay saw (QEMU's timing varies)
        cause = root_cause(attrs.evolve(trace, verdict=verdict))
        if cause is not None:
            seen = (f" (the model saw {cause.signature})"
                    if cause.signature and cause.signature != verdict.signature else "")
            notes = [f"root cause on {cause.profile}{seen}: {cause.describe()}",
                     *(f"  {line}" for line in lost_lines(trace, cause))]
    for line in notes:
        out.print(line)
    if emit_pytest:
        emit_pytest.write_text(pytest_file(trace, notes))
        out.print(f"wrote {emit_pytest}")
    if emit == "pytest":
        print(pytest_file(trace, notes))
    sys.exit(EXIT_OK if shows(verdict, trace) else EXIT_FOUND)


def _pairs(a: list, b: list):
    for i in range(max(len(a), len(b))):
        yield (a[i] if i < len(a) else None), (b[i] if i < len(b) else None)


def _fmt(o) -> str:
    if o is None:
        return "-"
    label, fields = o
    short = {k: (v.hex()[:32] + "..." if isinstance(v, bytes) and len(v) > 16 else v)
             for k, v in fields.items()}
    return f"{label} {short}"
