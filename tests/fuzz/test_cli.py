"""The nvmefuzz command, run as a subprocess the way a user or CI runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

from nvmefuzz.trace import corpus
from nvmefuzz.trace.schema import Step, Trace

OK, FOUND, ERROR = 0, 1, 2


def nvmefuzz(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python -m nvmefuzz.cli ARGS`` in ``cwd``."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "nvmefuzz.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def one_line(text: str) -> str:
    """Whitespace collapsed, so wrapped terminal output can be searched."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def v3_run(tmp_path_factory):
    """One `fuzz` run of the v3 patch: its folder, process result and JSON summary."""
    work = tmp_path_factory.mktemp("v3")
    proc = nvmefuzz(work, "fuzz", "--profile", "qemu-v3-patch", "--examples", "60",
                    "--corpus", "corpus", "--out", "reports", "--json", "out/v3.json", "-q")
    data = json.loads((work / "out" / "v3.json").read_text())
    return work, proc, data


def copy_corpus(v3_run, dest: Path) -> Path:
    """A private copy of the v3 run's corpus."""
    work, _, _ = v3_run
    shutil.copytree(work / "corpus", dest)
    return dest


def test_fuzz_full_profile_finds_nothing(tmp_path):
    """`fuzz --profile full` exits 0 and writes a summary with the counters."""
    proc = nvmefuzz(tmp_path, "fuzz", "--examples", "20", "--profile", "full", "--json",
                    "s.json", "--corpus", "corpus", "--out", "reports", "-q")
    assert proc.returncode == OK, proc.stderr
    data = json.loads((tmp_path / "s.json").read_text())
    for key in ("examples", "steps", "migrations", "findings"):
        assert key in data
    assert data["examples"] >= 20 and data["steps"] > data["examples"]
    assert 0 < data["migrations_steered"] < data["migrations"]
    assert data["findings"] == []
    assert data["migrations_that_lost_state"] == 0 and data["lost_at_migration"] == {}
    assert data["profile"] == "full" and data["campaign"] == "default"
    assert not (tmp_path / "corpus").exists() or not corpus.files(tmp_path / "corpus")


def test_fuzz_v3_patch_reports_findings(v3_run):
    """`fuzz --profile qemu-v3-patch` exits 1 and every finding's trace file exists."""
    work, proc, data = v3_run
    assert proc.returncode == FOUND, proc.stderr
    assert data["findings"]
    # what the design lost inside, seen or not: the summary counts it per state path
    assert 0 < data["migrations_that_lost_state"] <= data["migrations"]
    assert set(data["lost_at_migration"]) & {"features.temp_thresh_hi", "host_writes",
                                             "data_units_written", "changed_nsids"}
    for f in data["findings"]:
        trace_path = work / f["trace"]
        assert trace_path.is_file()
        trace = corpus.load(trace_path)
        assert trace.verdict.signature == f["signature"] and trace.verdict.kind == f["class"]
        assert trace.profile == "qemu-v3-patch" and len(trace.steps) == f["steps"]
        assert f["raw_trace"] and (work / f["raw_trace"]).is_file()
        assert f["new"] is True
        # the root cause, found on the model, is in the summary and in the stored verdict
        assert f["cause"]["profile"] == "qemu-v3-patch"
        assert trace.verdict.cause == f["cause"]["key"] and f["identity"] == (
            f"{f['signature']} [{f['cause']['key']}]")
    assert len({f["identity"] for f in data["findings"]}) == len(data["findings"])
    # the findings table gives each cause with the values it lost
    lost = [line for f in data["findings"] for line in f["lost"]]
    assert lost and all(line in one_line(proc.stdout) for line in lost)


def test_a_second_run_reports_no_stored_finding_again(v3_run, tmp_path):
    """The same run on the corpus the first one filled: what the corpus holds, by root cause
    or by signature, ends examples quietly."""
    _, _, first = v3_run
    copy_corpus(v3_run, tmp_path / "corpus")
    proc = nvmefuzz(tmp_path, "fuzz", "--profile", "qemu-v3-patch", "--examples", "60",
                    "--corpus", "corpus", "--out", "reports", "--json", "s.json", "-q")
    assert proc.returncode in (OK, FOUND), proc.stderr
    again = json.loads((tmp_path / "s.json").read_text())
    assert again["examples"] >= 60
    assert not {f["identity"] for f in first["findings"]} & {
        f["identity"] for f in again["findings"]}
    assert not {f["cause"]["key"] for f in first["findings"] if f["cause"]["kind"] == "state"} & {
        f["cause"]["key"] for f in again["findings"]}


def test_replay_of_the_corpus_matches(v3_run):
    """`replay CORPUS` exits 0 when every trace reaches its recorded verdict."""
    work, _, data = v3_run
    proc = nvmefuzz(work, "replay", "corpus")
    assert proc.returncode == OK, proc.stdout + proc.stderr
    assert f"{len(data['findings'])} traces: {len(data['findings'])} as expected" in \
        one_line(proc.stdout)


def test_replay_of_a_corrupted_file_is_a_harness_error(v3_run, tmp_path):
    """`replay` of a corrupt trace exits 2 and names the file."""
    root = copy_corpus(v3_run, tmp_path / "c")
    victim = corpus.files(root)[0]
    blob = bytearray(victim.read_bytes())
    victim.write_bytes(bytes(blob[: len(blob) // 2]))
    proc = nvmefuzz(tmp_path, "replay", str(victim))
    assert proc.returncode == ERROR
    assert "ERROR" in proc.stdout and "1 errors" in one_line(proc.stdout)
    garbage = tmp_path / "garbage.cbor"
    garbage.write_bytes(b"\x00not a trace at all")
    assert nvmefuzz(tmp_path, "replay", str(garbage)).returncode == ERROR


def test_replay_of_a_changed_verdict_is_a_regression(v3_run, tmp_path):
    """A trace whose recorded verdict no longer happens makes `replay` exit 1."""
    work, _, _ = v3_run
    trace = corpus.load(corpus.files(work / "corpus")[0])
    wrong = attrs.evolve(trace, verdict=attrs.evolve(trace.verdict, signature="divergence:x"))
    path = tmp_path / "wrong.cbor"
    corpus.atomic_write(path, wrong.encode())
    proc = nvmefuzz(tmp_path, "replay", str(path))
    assert proc.returncode == FOUND, proc.stdout
    assert "CHANGED" in proc.stdout


def test_replay_with_no_traces_is_an_error(tmp_path):
    """`replay` of an empty folder exits 2."""
    (tmp_path / "empty").mkdir()
    proc = nvmefuzz(tmp_path, "replay", "empty")
    assert proc.returncode == ERROR
    assert "no traces" in proc.stderr


def test_repro_emits_a_pytest_file(v3_run, tmp_path):
    """`repro TRACE --emit-pytest F` replays the trace and writes a reproducer to F."""
    work, _, _ = v3_run
    trace_path = corpus.files(work / "corpus")[0]
    out = tmp_path / "test_repro.py"
    proc = nvmefuzz(tmp_path, "repro", str(trace_path), "--emit-pytest", str(out))
    assert proc.returncode == OK, proc.stdout + proc.stderr
    trace = corpus.load(trace_path)
    assert f"verdict now: {trace.verdict.kind} {trace.verdict.signature}" in one_line(proc.stdout)
    assert "root cause on qemu-v3-patch: " in one_line(proc.stdout)
    text = out.read_text()
    compile(text, str(out), "exec")
    assert "def test_" in text and trace.verdict.signature in text
    assert "root cause on qemu-v3-patch: " in text            # the cause, for the bug report


def test_repro_names_the_values_the_root_cause_lost(tmp_path):
    """Beside the cause, the values it lost at each migration: here the changed namespace
    list the destination no longer has, so its AER reports another event."""
    trace = (Path(__file__).resolve().parents[2] / "corpus" / "qemu-11-1" /
             "divergence-cqe-admin-async-event-request-dw0-2d2357bef0.cbor")
    proc = nvmefuzz(tmp_path, "repro", str(trace))
    assert proc.returncode == OK, proc.stdout + proc.stderr
    text = one_line(proc.stdout)
    assert "root cause on qemu-11.1: the migration lost changed_nsids" in text
    assert "migrate at step 4: changed_nsids: twin [1], migrated []" in text


def test_corpus_list(v3_run):
    """`corpus list` shows one row per trace and exits 0."""
    work, _, data = v3_run
    proc = nvmefuzz(work, "corpus", "list", "corpus")
    assert proc.returncode == OK, proc.stderr
    for f in data["findings"]:
        assert Path(f["trace"]).name[:20] in proc.stdout
    assert "qemu-v3-patch" in proc.stdout


def test_corpus_causes_groups_the_findings_by_root_cause(v3_run):
    """`corpus causes` gives every stored finding one root cause row."""
    work, _, data = v3_run
    proc = nvmefuzz(work, "corpus", "causes", "corpus")
    assert proc.returncode == OK, proc.stderr
    keys = {f["cause"]["key"] for f in data["findings"]}
    assert f"{len(data['findings'])} findings, {len(keys)} root causes" in one_line(proc.stdout)
    for key in keys:
        assert key[:30] in one_line(proc.stdout)


def test_corpus_list_flags_unreadable_files(v3_run, tmp_path):
    """`corpus list` exits 2 when a file cannot be read, and still lists the others."""
    root = copy_corpus(v3_run, tmp_path / "c")
    (root / "qemu-v3-patch" / "broken.cbor").write_bytes(b"\xff")
    proc = nvmefuzz(tmp_path, "corpus", "list", "c")
    assert proc.returncode == ERROR
    assert "unreadable" in proc.stdout and "qemu-v3-patch" in proc.stdout


def test_corpus_dedup(v3_run, tmp_path):
    """`corpus dedup` keeps the shortest trace per signature under its canonical name."""
    root = copy_corpus(v3_run, tmp_path / "c")
    original = corpus.files(root)
    keep = original[0]
    trace = corpus.load(keep)
    longer = Trace(target=trace.target, campaign=trace.campaign, seed=trace.seed,
                   steps=(trace.steps[0],) + trace.steps, verdict=trace.verdict,
                   waivers=trace.waivers, refusals=trace.refusals)
    corpus.atomic_write(root / "qemu-v3-patch" / "aaa-longer.cbor", longer.encode())
    shutil.copy(keep, root / "qemu-v3-patch" / "zzz-copy.cbor")
    moved = root / "stray" / "renamed.cbor"
    moved.parent.mkdir()
    keep.rename(moved)
    proc = nvmefuzz(tmp_path, "corpus", "dedup", "c")
    assert proc.returncode == OK, proc.stderr
    assert "2 duplicates removed" in one_line(proc.stdout)
    after = corpus.files(root)
    assert sorted(after) == sorted(original)
    assert corpus.load(keep) == trace
    assert not any(p.name.startswith(".tmp-") for p in root.rglob("*"))


def test_corpus_shrink_rewrites_traces_in_place_with_their_identity(tmp_path):
    """`corpus shrink` gives a stored trace today's shrinking: an hour of virtual time and a
    needless step go, the file keeps its name and verdict; `--dry-run` writes nothing; an
    unreadable file is named, left alone, and the exit is 2."""
    repo = Path(__file__).resolve().parents[2] / "corpus" / "nvmecs-v0"
    stored = corpus.load(next(p for p in corpus.files(repo) if "fid-0x0e" in p.name))
    hour = 3_600_000_000_000
    padded = attrs.evolve(stored, steps=(
        stored.steps[0], Step("migrate"), *(attrs.evolve(s, args={**s.args, "ns": hour})
                                            if s.action == "advance" else s
                                            for s in stored.steps[1:])),
        verdict=attrs.evolve(stored.verdict, step=stored.verdict.step + 1))
    path = corpus.path_for(tmp_path / "c", padded)
    corpus.atomic_write(path, padded.encode())
    proc = nvmefuzz(tmp_path, "corpus", "shrink", "c", "--dry-run")
    assert proc.returncode == OK, proc.stderr
    assert "1 traces would be shrunk" in one_line(proc.stdout)
    assert corpus.load(path) == padded
    (path.parent / "broken.cbor").write_bytes(b"\xa1not cbor")
    proc = nvmefuzz(tmp_path, "corpus", "shrink", "c")
    assert proc.returncode == ERROR
    assert "1 traces shrunk" in one_line(proc.stdout) and "unreadable" in proc.stdout
    assert (path.parent / "broken.cbor").read_bytes() == b"\xa1not cbor"
    small = corpus.load(path)
    assert len(small.steps) < len(padded.steps)
    assert small.verdict.signature == stored.verdict.signature
    assert all(s.args.get("ns", 0) < hour for s in small.steps)
    assert sorted(corpus.files(tmp_path / "c")) == sorted([path, path.parent / "broken.cbor"])
    proc = nvmefuzz(tmp_path, "replay", str(path))
    assert proc.returncode == OK, proc.stdout


def test_corpus_shrink_without_qemu_leaves_qemu_traces_and_says_why(tmp_path, monkeypatch):
    """QEMU confirms what the model shrinks: with no QEMU a QEMU trace is left as it is, and
    the summary says so and why."""
    repo = Path(__file__).resolve().parents[2] / "corpus"
    qemu = next(p for p in corpus.files(repo / "qemu-target") if "irq-extra" in p.name)
    (tmp_path / "c" / "qemu-target").mkdir(parents=True)
    shutil.copy(qemu, tmp_path / "c" / "qemu-target" / qemu.name)
    monkeypatch.setenv("NVMEFUZZ_QEMU", f"chroot:{tmp_path / 'no-such-root'}")
    proc = nvmefuzz(tmp_path, "corpus", "shrink", "c")
    assert proc.returncode == OK, proc.stderr
    text = one_line(proc.stdout)
    assert "1 QEMU traces left as they are (no usable QEMU >= 11.1" in text
    assert (tmp_path / "c" / "qemu-target" / qemu.name).read_bytes() == qemu.read_bytes()


def test_a_signal_stops_corpus_shrink_with_every_file_whole(tmp_path):
    """SIGTERM in the middle of `corpus shrink`: exit 143, the traces shrunk so far listed,
    every file readable, those not reached as they were."""
    import signal
    import time

    repo = Path(__file__).resolve().parents[2] / "corpus" / "nvmecs-v0"
    stored = corpus.load(next(p for p in corpus.files(repo) if "fid-0x0e" in p.name))
    padded = attrs.evolve(stored, steps=(stored.steps[0], *[Step("migrate")] * 150,
                                         *stored.steps[1:]),
                          verdict=attrs.evolve(stored.verdict, step=stored.verdict.step + 150))
    names = [f"t{i:02d}.cbor" for i in range(24)]          # 0.2 s each: time to stop
    for name in names:
        corpus.atomic_write(tmp_path / "c" / "nvmecs-v0" / name, padded.encode())
    proc = subprocess.Popen([sys.executable, "-m", "nvmefuzz.cli", "corpus", "shrink", "c"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "COLUMNS": "200"})
    first = tmp_path / "c" / "nvmecs-v0" / names[0]
    deadline = time.monotonic() + 60
    while corpus.load(first) == padded and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    try:
        stdout, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert "stopped: the traces above were shrunk" in stdout and names[0] in stdout
    after = [corpus.load(tmp_path / "c" / "nvmecs-v0" / name) for name in names]  # all whole
    assert len(after[0].steps) < len(padded.steps) and after[-1] == padded


def test_campaigns_and_targets(tmp_path):
    """`campaigns` lists the shipped campaigns; `targets` lists the model target."""
    proc = nvmefuzz(tmp_path, "campaigns")
    assert proc.returncode == OK, proc.stderr
    for name in ("default", "cq-pressure", "aer-storm", "doorbell-chaos", "reset-storm",
                 "inflight-migration"):
        assert name in proc.stdout
    proc = nvmefuzz(tmp_path, "targets")
    assert proc.returncode == OK, proc.stderr
    assert "model" in proc.stdout


def test_unknown_campaign_is_a_clear_error(tmp_path):
    """An unknown campaign exits 2 with a message naming it and no traceback."""
    proc = nvmefuzz(tmp_path, "fuzz", "--campaign", "no-such-campaign", "--examples", "1",
                    "--corpus", "corpus", "--out", "reports")
    assert proc.returncode == ERROR
    err = one_line(proc.stderr)
    assert "no campaign 'no-such-campaign'" in err and "default" in err
    assert "Traceback" not in proc.stderr


def test_unknown_profile_is_a_clear_error(tmp_path):
    """An unknown profile exits 2 naming it."""
    proc = nvmefuzz(tmp_path, "fuzz", "--profile", "qemu-9000", "--examples", "1",
                    "--corpus", "corpus", "--out", "reports")
    assert proc.returncode == ERROR
    assert "qemu-9000" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_a_signal_stops_a_fuzz_run_at_once_with_its_findings_on_disk(tmp_path, signame):
    """SIGTERM or Ctrl-C while Hypothesis runs an example: exit 128 + the signal within
    seconds (not after Hypothesis shrank the interruption as a failure, not 1 as if it were a
    finding), the raw findings met so far already stored."""
    import signal
    import time

    signum = getattr(signal, signame)

    cmd = [sys.executable, "-m", "nvmefuzz.cli", "fuzz", "-q", "--profile", "qemu-v3-patch",
           "--time", "120s", "--corpus", str(tmp_path / "corpus"), "--out", str(tmp_path / "out")]
    # a shell's background job starts with SIGINT ignored, and so would the run
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    raw = tmp_path / "out"
    deadline = time.monotonic() + 60
    while not list(raw.glob("runs/*/raw/*.cbor")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list(raw.glob("runs/*/raw/*.cbor")), "no finding within 60 s"
    proc.send_signal(signum)
    try:
        assert proc.wait(timeout=30) == 128 + signum
    finally:
        proc.kill()
