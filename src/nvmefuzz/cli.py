"""The ``nvmefuzz`` command: fuzz, replay, repro, corpus, targets, campaigns.

Exit codes everywhere: 0 nothing found / everything as expected, 1 findings / regressions,
2 the harness itself failed (bad input, missing target, internal error), 128 + N stopped by
signal N (130 Ctrl-C, 143 SIGTERM).  This is the only module that prints.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from nvmefuzz import __version__
from nvmefuzz.errors import NvmeFuzzError, TraceFormatError
from nvmefuzz.fuzz import campaign as campaigns
from nvmefuzz.fuzz.runner import run_campaign
from nvmefuzz.fuzz.session import replay as replay_trace
from nvmefuzz.report.summary import findings_table, summary, table
from nvmefuzz.trace import corpus as corpus_mod
from nvmefuzz.trace.render import listing, pytest_file

console = Console(stderr=True)
out = Console()

EXIT_OK, EXIT_FOUND, EXIT_ERROR = 0, 1, 2


def parse_duration(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not m:
        raise click.BadParameter(f"{text!r} is not a duration like 90s, 10m or 1h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGINT (Ctrl-C).  A KeyboardInterrupt, because Hypothesis stops at once on
    one, whereas it takes a SystemExit raised inside an example for a failure and shrinks it,
    for minutes.  The exit status is 128 + the signal number (143, 130), never 1 (findings)."""


#: the signal received: a raise from a signal handler is lost when it lands in a finalizer,
#: so the fuzz loop also looks here after every batch
TERMINATED: list[int] = []


def _terminate(signum: int, frame: object) -> None:
    TERMINATED.append(signum)
    raise Terminated(signum)


class Main(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except Terminated as exc:        # through Python, so atexit handlers stop QEMU
            sys.exit(128 + exc.args[0])
        except NvmeFuzzError as exc:
            console.print(f"[red]error:[/red] {exc}")
            sys.exit(EXIT_ERROR)
        except (click.exceptions.Exit, click.ClickException, SystemExit, KeyboardInterrupt):
            raise
        except Exception:                 # a harness bug is exit 2, never "findings" (1)
            if TERMINATED:                # unless a stop signal broke it
                sys.exit(128 + TERMINATED[0])
            console.print_exception()
            sys.exit(EXIT_ERROR)


@click.group(cls=Main)
@click.version_option(__version__)
def main() -> None:
    """Stateful property-based fuzzer for NVMe save/restore (live migration) correctness."""
    import signal

    # both exit through Python so atexit handlers stop the QEMU processes we started (they run
    # in their own session: a Ctrl-C reaches only us, never a target in the middle of a step)
    signal.signal(signal.SIGTERM, _terminate)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:   # nohup and `&` keep ignoring
        signal.signal(signal.SIGINT, _terminate)


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
    run_dir = out_dir / "runs" / f"{camp.name}-{camp.profile}-seed{seed}"
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
    hard = {k: v for k, v in result.stats.items() if not k.startswith(("action:", "waived:"))}
    if not quiet:
        out.print("event statistics: " + ", ".join(f"{k}={v}" for k, v in sorted(hard.items())))
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
        want = e.trace.verdict
        same = verdict.kind == want.kind and verdict.signature == want.signature
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
    if emit_pytest:
        emit_pytest.write_text(pytest_file(trace))
        out.print(f"wrote {emit_pytest}")
    if emit == "pytest":
        print(pytest_file(trace))
    same = verdict.kind == trace.verdict.kind and verdict.signature == trace.verdict.signature
    sys.exit(EXIT_OK if same else EXIT_FOUND)


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


@corpus.command("dedup")
@click.argument("root", type=click.Path(path_type=Path), default=Path("corpus"))
def corpus_dedup(root: Path) -> None:
    """Keep the shortest trace per (profile, signature); move files to their canonical names."""
    best: dict[tuple[str, str], corpus_mod.Entry] = {}
    removed = 0
    for e in corpus_mod.load_all(root):
        if e.trace is None:
            continue
        key = (e.trace.profile, e.trace.verdict.signature)
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



@main.command()
@click.option("--time", "budget", default="1h", show_default=True,
              help="wall time for the campaigns, e.g. 10m, 1h")
@click.option("--workers", type=int, default=2, show_default=True)
@click.option("--target", default=None, help="model or qemu (default: each campaign's)")
@click.option("--database", default=None,
              help="shared Hypothesis database: a directory or redis://host:port "
                   "(default: a directory in the night's folder)")
@click.option("--shard", default="0/1", show_default=True,
              help="run only campaigns i, i+N, ... of the sorted list (i/N)")
@click.option("--seed", type=int, default=None, help="default: the date (YYYYMMDD)")
@click.option("--corpus", "corpus_dir", type=click.Path(path_type=Path), default=Path("corpus"),
              show_default=True)
@click.option("--reports", type=click.Path(path_type=Path), default=Path("reports"),
              show_default=True)
@click.option("--resume", "resume", is_flag=False, flag_value="latest", default=None,
              help="continue an interrupted night (the latest, or the folder given)")
@click.option("--no-coverage", is_flag=True, help="do not measure coverage of the model")
def nightly(budget: str, workers: int, target: str | None, database: str | None, shard: str,
            seed: int | None, corpus_dir: Path, reports: Path, resume: str | None,
            no_coverage: bool) -> None:
    """Replay the corpus, fuzz every campaign on N workers, write the night's report."""
    import datetime as dt

    from nvmefuzz import nightly as night_mod
    from nvmefuzz.report import night as report

    m = re.fullmatch(r"(\d+)/(\d+)", shard)
    if not m or not int(m.group(1)) < int(m.group(2)):
        raise click.BadParameter("--shard must look like i/N with i < N")
    if workers < 1:
        raise click.BadParameter("--workers must be at least 1")
    if resume:
        folder = (night_mod.latest_folder(reports) if resume == "latest" else Path(resume))
        night = night_mod.Night.load(folder)
        console.print(f"resuming {folder}")
    else:
        if database:
            from nvmefuzz.fuzz.database import open_database

            open_database(database)            # fail now, not in every worker
        night = night_mod.start(
            reports, corpus_dir, workers, parse_duration(budget),
            seed if seed is not None else int(dt.date.today().strftime("%Y%m%d")),
            (int(m.group(1)), int(m.group(2))), database, target, not no_coverage)
        console.print(f"night folder {night.folder}")
    corpus_json = night.folder / "corpus.json"
    if not corpus_json.exists():
        rows = night_mod.replay_corpus(Path(night.meta["corpus"]))
        corpus_mod.atomic_write(corpus_json, json.dumps(rows, indent=1).encode())
    rows = json.loads(corpus_json.read_text())
    try:
        night.run(night.meta["workers"], progress=lambda s: console.print(
            f"slice {s.index} {s.campaign}: {s.status} (exit {s.exit})"))
    except Terminated:
        console.print(f"stopped: `nvmefuzz nightly --resume {night.folder}` finishes the night")
        raise
    state = json.loads((night.folder / "state.json").read_text())
    summary_data = report.collect(night.folder, state, rows)
    history_file = reports / "nightly" / "history.jsonl"
    history = []
    if history_file.exists():
        for line in history_file.read_text().splitlines():
            try:
                history.append(json.loads(line))
            except ValueError:
                continue                       # a blank or damaged line never stops a night
    history = [x for x in history if x.get("night") != night.meta["started"]]   # resumed
    history.append({"night": night.meta["started"], "findings": len(summary_data["findings"]),
                    "coverage": summary_data["coverage"]["percent"],
                    "migrations": summary_data["totals"].get("migrations", 0)})
    corpus_mod.atomic_write(history_file,
                            "".join(json.dumps(x) + "\n" for x in history).encode())
    corpus_mod.atomic_write(night.folder / "summary.json",
                            json.dumps(summary_data, indent=1, default=str).encode())
    corpus_mod.atomic_write(night.folder / "junit.xml", report.junit(summary_data).encode())
    page = report.html(summary_data, report.plots(summary_data, history))
    corpus_mod.atomic_write(night.folder / "index.html", page.encode())
    t = Table(title=f"nightly {night.meta['started']}")
    for col in ("what", "value"):
        t.add_column(col)
    for k, v in summary_data["totals"].items():
        t.add_row(k, str(v))
    t.add_row("findings", str(len(summary_data["findings"])))
    t.add_row("new findings", str(sum(f["new"] for f in summary_data["findings"])))
    t.add_row("corpus regressions", str(summary_data["corpus"]["regressions"]))
    t.add_row("model coverage %", str(summary_data["coverage"]["percent"]))
    out.print(t)
    out.print(f"report: {night.folder / 'index.html'}")
    sys.exit(summary_data["exit"])



@main.command("diff")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--campaign", "-c", "camps", multiple=True,
              help="draw examples from this campaign (repeatable; default: every campaign "
                   "when no trace is given)")
@click.option("--examples", "-n", type=int, default=20, show_default=True,
              help="examples per campaign")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--ignore", multiple=True,
              help="label prefix of a known disagreement to count and look past (repeatable)")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None,
              help="write every disagreement as JSON here")
@click.option("--save", "save_dir", type=click.Path(path_type=Path), default=None,
              help="write each disagreement as a trace here (replay with `nvmefuzz diff DIR`)")
@click.option("--minimize", "minimize_s", type=float, default=0.0, show_default=True,
              help="seconds to shrink each saved trace for, QEMU in the loop (needs --save)")
def diff(paths: tuple[Path, ...], camps: tuple[str, ...], examples: int, seed: int,
         ignore: tuple[str, ...], json_path: Path | None, save_dir: Path | None,
         minimize_s: float) -> None:
    """Run the same steps on the model and on QEMU (no migrations) and list where they
    disagree: the first differing observation per trace, grouped by label."""
    from collections import Counter

    from nvmefuzz.fuzz import diff as diff_mod

    if minimize_s and save_dir is None:
        raise click.BadParameter("--minimize shrinks the traces --save writes: give both")
    jobs = []                                   # (source, steps, model cfg, qemu cfg)
    for e in (e for p in paths for e in corpus_mod.load_all(p)):
        if e.trace is None:
            raise TraceFormatError(f"{e.path}: {e.error}")    # exit 2, never 1
        t = e.trace.target
        cfgs = diff_mod.configs(msix=t.get("msix", True), profile=t.get("profile", "full"),
                                nsze=t.get("nsze"))
        jobs.append((str(e.path), e.trace.steps, *cfgs))
    for name in camps or (() if paths else tuple(campaigns.available())):
        camp = campaigns.load(name)
        cfgs = diff_mod.configs(msix=camp.msix, profile=camp.profile)
        for i, steps in enumerate(diff_mod.generate(camp, examples, seed)):
            jobs.append((f"{camp.name}#{i}", steps, *cfgs))
    found, ignored, ran = [], Counter(), 0
    for source, steps, model_cfg, qemu_cfg in jobs:
        d, n = diff_mod.diff_steps(source, steps, model_cfg, qemu_cfg, ignore=ignore,
                                   ignored=ignored)
        ran += n
        if d is not None:
            found.append(d)
            if save_dir is not None:             # on disk before anything else happens
                camp_name = source.split("#")[0] if "#" in source else "diff"
                trace = diff_mod.as_trace(d, steps, model_cfg, camp_name, seed)
                path = save_dir / f"{corpus_mod.slug(d.label)}-{corpus_mod.slug(source)}.cbor"
                path.parent.mkdir(parents=True, exist_ok=True)
                corpus_mod.atomic_write(path, trace.encode())
                if minimize_s:
                    small = diff_mod.shrink(trace, model_cfg, qemu_cfg, minimize_s, ignore)
                    corpus_mod.atomic_write(path, small.encode())
                    console.print(f"{path}: {len(trace.steps)} -> {len(small.steps)} steps")
    groups = diff_mod.group(found)
    out.print(f"[bold]model vs QEMU: {len(jobs)} traces, {ran} steps, {len(found)} "
              f"disagreeing, {len(groups)} distinct[/bold]")
    for label, ds in groups.items():
        p = ds[0].to_plain()
        out.print(f"[bold]{label}[/bold]  ({len(ds)} traces)\n"
                  f"    first: {p['source']} step {p['step']}: {p['action']}\n"
                  f"    model: {p['model']}\n    qemu:  {p['qemu']}", highlight=False)
    if ignored:
        out.print("looked past: " + ", ".join(f"{k}={v}" for k, v in sorted(ignored.items())))
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({
            "traces": len(jobs), "steps": ran, "ignored": dict(ignored),
            "groups": {label: [d.to_plain() for d in ds] for label, ds in groups.items()},
        }, indent=1))
    sys.exit(EXIT_FOUND if found else EXIT_OK)


if __name__ == "__main__":
    main()
