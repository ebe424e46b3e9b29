"""kill -9 of the nightly job (or of one worker) loses no finding, and --resume finishes the night.

Raw traces are written atomically the moment a finding is seen, before shrinking starts; the
test waits for the first one and then kills.  Coverage measurement is off to keep the runs
short: it does not change what is written when.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from xml.etree import ElementTree as ET

from nvmefuzz.fuzz.session import replay
from nvmefuzz.trace import corpus as corpus_mod

POLL_LIMIT_S = 90


def _raw_traces(reports: Path) -> list[Path]:
    found = glob.glob(str(reports / "nightly" / "*" / "slices" / "*" / "runs" / "*" / "raw"
                          / "*.cbor"))
    return sorted(Path(p) for p in found if not Path(p).name.startswith(".tmp-"))


def _start(cli: list[str], root: Path, time_budget: str, seed: int) -> subprocess.Popen:
    with (root / "nightly.log").open("wb") as log:        # the child keeps its own copy
        return subprocess.Popen(
            cli + ["nightly", "--time", time_budget, "--workers", "2", "--seed", str(seed),
                   "--no-coverage", "--corpus", str(root / "corpus"),
                   "--reports", str(root / "reports")],
            cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "COLUMNS": "200"})


def _wait_for_a_finding(proc: subprocess.Popen, root: Path) -> list[Path]:
    deadline = time.monotonic() + POLL_LIMIT_S
    while time.monotonic() < deadline:
        raws = _raw_traces(root / "reports")
        if raws or corpus_mod.files(root / "corpus"):
            return raws
        assert proc.poll() is None, (root / "nightly.log").read_text()[-3000:]
        time.sleep(0.05)
    raise AssertionError(f"no finding within {POLL_LIMIT_S}s: "
                         + (root / "nightly.log").read_text()[-3000:])


def _assert_replays(path: Path) -> str:
    trace = corpus_mod.load(path)
    verdict, _ = replay(trace)
    assert (verdict.kind, verdict.signature) == (trace.verdict.kind, trace.verdict.signature), path
    assert not verdict.ok
    return trace.verdict.signature


def _worker_pids(parent: int) -> list[int]:
    """Children of ``parent`` running `nvmefuzz fuzz` on the v3 campaign (its workers)."""
    pids = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            cmdline = Path(stat).with_name("cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(fields[1]) == parent and b"fuzz" in cmdline and b"v3" in cmdline:
            pids.append(int(Path(stat).parent.name))
    return pids


def test_sigkill_of_the_whole_job_loses_no_finding_and_resume_completes(
        tmp_path, cli, run_cli, strategies):
    """SIGKILL to the job's process group mid-run: raw findings survive, --resume finishes."""
    strategies(tmp_path)
    proc = _start(cli, tmp_path, "20s", 1)
    try:
        _wait_for_a_finding(proc, tmp_path)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)                  # the job and all its workers
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    (folder,) = (tmp_path / "reports" / "nightly").glob("20*")
    assert not (folder / "summary.json").exists()           # it really died mid-night
    state = json.loads((folder / "state.json").read_text())   # atomic: always valid JSON
    assert "running" in {s["status"] for s in state["slices"]}

    raws = _raw_traces(tmp_path / "reports")
    entries = corpus_mod.load_all(tmp_path / "corpus")
    assert raws or entries
    seen = {_assert_replays(p) for p in raws}
    for e in entries:                                        # no half-written corpus entry
        assert e.trace is not None, e.error
        assert not e.path.name.startswith(".tmp-")
        seen.add(_assert_replays(e.path))

    resumed = run_cli(["nightly", "--resume", "--reports", tmp_path / "reports"], cwd=tmp_path)
    assert resumed.returncode == 1, resumed.stderr[-3000:]
    assert f"resuming {folder}" in resumed.stderr
    for name in ("summary.json", "junit.xml", "index.html"):
        assert (folder / name).is_file()
    assert len(list((tmp_path / "reports" / "nightly").glob("20*"))) == 1   # same night
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["exit"] == 1
    assert [s["status"] for s in summary["slices"]] == ["done", "done"]
    reported = {f["signature"]: f for f in summary["findings"]}
    assert seen <= set(reported)                             # every finding survived the kill
    for sig in seen:
        f = reported[sig]
        assert f["new"] and f["repro"] and Path(f["trace"] or f["raw_trace"]).is_file()
    html = (folder / "index.html").read_text()
    assert all(sig in html for sig in seen)


def test_sigkill_of_one_worker_is_a_harness_error_that_keeps_its_finding(
        tmp_path, cli, strategies):
    """A worker killed by SIGKILL fails only its slice (exit 2); its raw finding is reported."""
    strategies(tmp_path)
    proc = _start(cli, tmp_path, "15s", 1)
    try:
        _wait_for_a_finding(proc, tmp_path)
        workers = _worker_pids(proc.pid)
        assert len(workers) == 1, workers
        os.kill(workers[0], signal.SIGKILL)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    log = (tmp_path / "nightly.log").read_text()
    assert proc.returncode == 2, log[-3000:]
    (folder,) = (tmp_path / "reports" / "nightly").glob("20*")
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["exit"] == 2
    slices = {s["campaign"]: s for s in summary["slices"]}
    assert (slices["v3"]["status"], slices["v3"]["exit"]) == ("failed", -signal.SIGKILL)
    assert slices["v3"]["detail"] == "killed by signal 9"
    assert (slices["full"]["status"], slices["full"]["exit"]) == ("done", 0)  # unaffected
    raws = _raw_traces(tmp_path / "reports")
    assert raws
    reported = {f["signature"] for f in summary["findings"]}
    assert {_assert_replays(p) for p in raws} <= reported
    junit = ET.parse(folder / "junit.xml").getroot()
    cases = {c.get("name"): c for c in junit.find("testsuite[@name='campaigns']")}
    assert cases["v3[1]"].find("error").get("message") == "killed by signal 9"
    assert {f.get("message") for f in cases["v3[1]"].findall("failure")} == reported
    assert list(cases["full[0]"]) == []


def test_sigterm_to_the_job_stops_the_night_and_resume_runs_the_slices_again(
        tmp_path, cli, run_cli, strategies):
    """SIGTERM to the job alone (not its group): it stops its running slices within seconds,
    starts no other, exits 143 naming the folder to resume; no slice counts as failed, and
    --resume runs them all to the end."""
    strategies(tmp_path)
    proc = _start(cli, tmp_path, "20s", 1)
    try:
        _wait_for_a_finding(proc, tmp_path)
        workers = _worker_pids(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert workers and not any(Path(f"/proc/{pid}").exists() for pid in workers)
    log = (tmp_path / "nightly.log").read_text()
    (folder,) = (tmp_path / "reports" / "nightly").glob("20*")
    assert f"nightly --resume {folder}" in " ".join(log.split())
    state = json.loads((folder / "state.json").read_text())
    assert {s["status"] for s in state["slices"]} == {"pending"}, (state, log)
    for s in state["slices"]:      # both were running; one still starting dies by the signal
        assert s["exit"] in (128 + signal.SIGTERM, -signal.SIGTERM), s
        assert s["detail"] == "stopped by signal 15"
    raws = _raw_traces(tmp_path / "reports")
    assert raws or corpus_mod.files(tmp_path / "corpus")

    resumed = run_cli(["nightly", "--resume", "--reports", tmp_path / "reports"], cwd=tmp_path)
    assert resumed.returncode == 1, resumed.stderr[-3000:]
    summary = json.loads((folder / "summary.json").read_text())
    assert [s["status"] for s in summary["slices"]] == ["done", "done"]
    assert {_assert_replays(p) for p in raws} <= {f["signature"] for f in summary["findings"]}
