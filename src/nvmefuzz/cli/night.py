"""``nvmefuzz nightly``: replay the corpus, fuzz every campaign on N workers, write the
night's report (``nvmefuzz.nightly`` does the work; this is its command line)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click
from rich.table import Table

from nvmefuzz.cli import Terminated, console, main, out, parse_duration
from nvmefuzz.trace import corpus as corpus_mod


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
