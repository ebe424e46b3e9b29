"""The nightly job: replay the corpus, fuzz every campaign on N workers, write a report.

How it works
------------
``plan`` spreads the campaigns of ``strategies/`` (this machine's shard of them) over
``workers`` worker processes: slice ``k`` runs campaign ``k mod C`` on worker ``k mod N``
with seed ``seed * 1000 + k``, and each worker divides the night's time evenly between its
slices.  Every slice is a separate ``nvmefuzz fuzz`` process (under coverage.py, measuring the
model and protocol), so a worker that dies takes nothing else with it.  All workers share the
corpus (findings are written there atomically the moment they are shrunk; raw traces are
written to the night's folder before shrinking starts) and one Hypothesis example database
(a directory in the night's folder, or ``redis://`` for several machines), so an interrupted
shrink resumes from the database.

The night's folder ``reports/nightly/<date>/`` holds ``state.json`` (rewritten atomically
after every change, which is what ``--resume`` reads), each slice's summary and timeline,
then ``summary.json``, ``junit.xml`` and ``index.html``.  Exit status: 0 clean, 1 new
findings or corpus regressions, 2 harness error (a slice that failed or was killed).

SIGTERM or Ctrl-C stops the night: the running slices get SIGTERM (a slice stops within
seconds, its raw findings already on disk), go back to pending, and no new slice starts;
``--resume`` runs them again.  Only a slice that dies otherwise is a failed one.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

import attrs

from nvmefuzz.errors import NvmeFuzzError
from nvmefuzz.fuzz import campaign as campaigns
from nvmefuzz.fuzz.cause import shows
from nvmefuzz.fuzz.session import replay
from nvmefuzz.trace import corpus as corpus_mod

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
#: exit statuses of a slice stopped by SIGINT or SIGTERM (``nvmefuzz fuzz`` exits 128 + N)
STOPPED = (128 + signal.SIGINT, 128 + signal.SIGTERM, -signal.SIGINT, -signal.SIGTERM)


@attrs.define
class Slice:
    index: int
    campaign: str
    seed: int
    seconds: float
    worker: int
    status: str = PENDING
    exit: int | None = None
    detail: str = ""


def plan(names: list[str], workers: int, seconds: float, seed: int,
         shard: tuple[int, int] = (0, 1)) -> list[Slice]:
    i, n = shard
    mine = [c for k, c in enumerate(sorted(names)) if k % n == i]
    if not mine:
        raise NvmeFuzzError(f"shard {i}/{n} has no campaigns (there are {len(names)})")
    count = max(len(mine), workers)
    per_worker = [sum(1 for k in range(count) if k % workers == w) for w in range(workers)]
    return [Slice(k, mine[k % len(mine)], seed * 1000 + k,
                  round(seconds / per_worker[k % workers], 1), k % workers)
            for k in range(count)]


def replay_corpus(root: Path) -> list[dict]:
    """Every corpus trace replayed: its expected and current verdicts."""
    rows = []
    for e in corpus_mod.load_all(root):
        row = {"path": str(e.path), "expected": None, "now": None, "status": "error",
               "detail": e.error}
        if e.trace is not None:
            row["expected"] = e.trace.verdict.signature or "pass"
            try:
                verdict, _ = replay(e.trace)
                row["now"] = verdict.signature or "pass"
                row["status"] = "as expected" if shows(verdict, e.trace) else (
                    "fixed" if verdict.ok else "changed")
                row["detail"] = verdict.detail
            except NvmeFuzzError as exc:
                row["detail"] = str(exc)
        rows.append(row)
    return rows


class Night:
    def __init__(self, folder: Path, corpus_dir: Path, database: str, target: str | None,
                 coverage: bool = True) -> None:
        self.folder = folder
        self.corpus_dir = corpus_dir
        self.database = database
        self.target = target
        self.coverage = coverage
        self.lock = threading.Lock()
        self.slices: list[Slice] = []
        self.meta: dict = {}
        self.stopping = threading.Event()
        self.running: dict[int, subprocess.Popen] = {}

    # ------------------------------------------------------------------ state
    def save(self) -> None:
        with self.lock:
            data = {"meta": self.meta, "slices": [attrs.asdict(s) for s in self.slices]}
            corpus_mod.atomic_write(self.folder / "state.json",
                                    json.dumps(data, indent=1).encode())

    @classmethod
    def load(cls, folder: Path) -> Night:
        try:
            data = json.loads((folder / "state.json").read_text())
        except (OSError, ValueError) as exc:
            raise NvmeFuzzError(f"cannot resume {folder}: {exc}") from None
        m = data["meta"]
        night = cls(folder, Path(m["corpus"]), m["database"], m["target"], m["coverage"])
        night.meta = m
        night.slices = [Slice(**s) for s in data["slices"]]
        for s in night.slices:
            if s.status == RUNNING:            # interrupted: run it again
                s.status = PENDING
        return night

    # ------------------------------------------------------------------ running
    def command(self, s: Slice) -> list[str]:
        out = self.folder / "slices" / f"{s.index:02d}-{s.campaign}"
        cmd = [sys.executable]
        if self.coverage:
            cmd += ["-m", "coverage", "run", "--parallel-mode", "--branch",
                    "--source=nvmefuzz.model,nvmefuzz.protocol",
                    f"--data-file={self.folder / 'coverage' / '.coverage'}"]
        cmd += ["-m", "nvmefuzz.cli", "fuzz", "-q", "--campaign", s.campaign,
                "--seed", str(s.seed), "--time", f"{s.seconds}s",
                "--corpus", str(self.corpus_dir), "--out", str(out),
                "--json", str(out / "summary.json"), "--timeline", str(out / "timeline.jsonl"),
                "--database", self.database]
        if self.target:
            cmd += ["--target", self.target]
        return cmd

    def run_slice(self, s: Slice) -> None:
        (self.folder / "slices").mkdir(parents=True, exist_ok=True)
        (self.folder / "coverage").mkdir(exist_ok=True)
        s.status = RUNNING
        self.save()
        log = self.folder / "slices" / f"{s.index:02d}-{s.campaign}.log"
        with log.open("ab") as fh:
            with self.lock:                    # stop() sees every process started
                if not self.stopping.is_set():
                    self.running[s.index] = subprocess.Popen(
                        self.command(s), stdout=fh, stderr=subprocess.STDOUT,
                        env={**os.environ, "COLUMNS": "120"})
                proc = self.running.get(s.index)
            if proc is None:
                s.status = PENDING
                self.save()
                return
            proc.wait()
            with self.lock:
                del self.running[s.index]
        s.exit = proc.returncode
        s.status = DONE if proc.returncode in (0, 1) else FAILED
        if proc.returncode in STOPPED:
            s.status, s.detail = PENDING, f"stopped by signal {abs(proc.returncode) % 128}"
        elif proc.returncode < 0:
            s.detail = f"killed by signal {-proc.returncode}"
        elif proc.returncode == 2:
            s.detail = log.read_text(errors="replace")[-2000:]
        self.save()

    def stop(self) -> None:
        """No new slice starts; the running ones get SIGTERM."""
        with self.lock:
            self.stopping.set()
            for proc in self.running.values():
                proc.send_signal(signal.SIGTERM)

    def run(self, workers: int, progress: Callable[[Slice], None] | None = None) -> None:
        left = [workers]
        finished = threading.Event()

        def worker(w: int) -> None:
            try:
                for s in self.slices:
                    if self.stopping.is_set():
                        return
                    if s.worker == w and s.status == PENDING:
                        self.run_slice(s)
                        if progress:
                            progress(s)
            finally:
                with self.lock:
                    left[0] -= 1
                    if not left[0]:
                        finished.set()

        for w in range(workers):
            threading.Thread(target=worker, args=(w,)).start()
        # wait on an Event, not Thread.join: a KeyboardInterrupt landing in join() can mark a
        # live thread stopped (CPython 3.11), and the job would exit before its slices are saved
        try:
            while not finished.wait(1.0):
                pass
        except KeyboardInterrupt:              # SIGINT or SIGTERM (the CLI's Terminated)
            self.stop()
            while not finished.wait(1.0):
                pass
            raise


def new_folder(root: Path) -> Path:
    stamp = dt.datetime.now().strftime("%Y-%m-%dT%H-%M-%S")
    folder = root / "nightly" / stamp
    folder.mkdir(parents=True, exist_ok=False)
    return folder


def latest_folder(root: Path) -> Path:
    folders = sorted((root / "nightly").glob("20*"))
    if not folders:
        raise NvmeFuzzError(f"nothing to resume under {root / 'nightly'}")
    return folders[-1]


def start(reports: Path, corpus_dir: Path, workers: int, seconds: float, seed: int,
          shard: tuple[int, int], database: str | None, target: str | None,
          coverage: bool = True) -> Night:
    # absolute paths in state.json: --resume (or a report link) may run from another cwd
    reports, corpus_dir = Path(reports).resolve(), Path(corpus_dir).resolve()
    if database and "://" not in database:
        database = str(Path(database).resolve())
    folder = new_folder(reports)
    night = Night(folder, corpus_dir, database or str(folder / "hypothesis-db"), target,
                  coverage)
    names = campaigns.available()
    night.slices = plan(names, workers, seconds, seed, shard)
    known = sorted({e.trace.verdict.identity for e in corpus_mod.load_all(corpus_dir)
                    if e.trace is not None and not e.trace.verdict.ok})
    night.meta = {"started": dt.datetime.now().isoformat(timespec="seconds"),
                  "workers": workers, "seconds": seconds, "seed": seed,
                  "shard": list(shard), "corpus": str(corpus_dir), "database": night.database,
                  "target": target, "coverage": coverage, "known": known}
    night.save()
    return night
