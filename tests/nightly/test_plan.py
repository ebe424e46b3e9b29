"""The nightly job's plan, its saved state (resume) and the corpus replay, without fuzzing."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from nvmefuzz import nightly
from nvmefuzz.errors import NvmeFuzzError
from nvmefuzz.nightly import DONE, FAILED, PENDING, RUNNING, Night, plan, replay_corpus
from nvmefuzz.trace import corpus as corpus_mod
from nvmefuzz.trace.schema import Verdict

NAMES = ["aer-storm", "cq-pressure", "default", "doorbell-chaos", "inflight-migration",
         "reset-storm"]


# ---------------------------------------------------------------------------------- plan
@pytest.mark.parametrize("workers", [1, 2, 3, 4, 6, 8, 13])
def test_every_campaign_gets_a_slice(workers):
    """Whatever the worker count, every campaign runs in at least one slice."""
    slices = plan(NAMES, workers, 3600, 20260101)
    assert {s.campaign for s in slices} == set(NAMES)
    assert len(slices) == max(len(NAMES), workers)
    assert [s.index for s in slices] == list(range(len(slices)))
    assert all(s.status == PENDING and s.exit is None for s in slices)


@pytest.mark.parametrize("workers", [1, 2, 4, 5, 6, 9])
def test_workers_are_balanced_and_each_fills_the_night(workers):
    """Slice counts per worker differ by at most one, and each worker's slices fill the budget."""
    seconds = 3600.0
    slices = plan(NAMES, workers, seconds, 7)
    per_worker = Counter(s.worker for s in slices)
    assert set(per_worker) == set(range(workers))          # no idle worker
    assert max(per_worker.values()) - min(per_worker.values()) <= 1
    for w in range(workers):
        mine = [s for s in slices if s.worker == w]
        assert sum(s.seconds for s in mine) == pytest.approx(seconds, abs=0.1 * len(mine))
        assert len({s.seconds for s in mine}) == 1           # the time is split evenly


def test_more_workers_than_campaigns_repeat_campaigns_evenly():
    """With more workers than campaigns each worker gets one slice and campaigns repeat evenly."""
    slices = plan(["a", "b"], 5, 600, 3)
    assert [(s.campaign, s.worker, s.seconds) for s in slices] == [
        ("a", 0, 600), ("b", 1, 600), ("a", 2, 600), ("b", 3, 600), ("a", 4, 600)]


def test_seeds_are_distinct_and_derived_from_the_night_seed():
    """Every slice has its own seed, seed * 1000 + slice index, so nights are reproducible."""
    slices = plan(NAMES, 8, 3600, 42)
    seeds = [s.seed for s in slices]
    assert len(set(seeds)) == len(seeds)
    assert seeds == [42_000 + k for k in range(len(slices))]
    assert plan(NAMES, 8, 3600, 42) == slices                # deterministic
    assert not {s.seed for s in plan(NAMES, 8, 3600, 43)} & set(seeds)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 6])
def test_shards_partition_the_sorted_campaigns(n):
    """Shard i/N takes campaigns i, i+N, ... of the sorted list; the shards partition them."""
    shuffled = NAMES[::-1]
    seen: list[str] = []
    for i in range(n):
        mine = sorted({s.campaign for s in plan(shuffled, 1, 60, 1, (i, n))})
        assert mine == sorted(NAMES)[i::n]
        seen += mine
    assert sorted(seen) == sorted(NAMES)


def test_shard_selects_the_right_subset():
    """Shard 1/3 of six campaigns is the second and fifth of the sorted list."""
    slices = plan(NAMES, 2, 100, 1, (1, 3))
    assert [s.campaign for s in slices] == ["cq-pressure", "inflight-migration"]
    assert [s.worker for s in slices] == [0, 1]


def test_shard_with_no_campaigns_raises():
    """A shard that gets no campaign is a harness error naming the shard, not an empty night."""
    with pytest.raises(NvmeFuzzError, match=r"shard 3/4 has no campaigns \(there are 3\)"):
        plan(["a", "b", "c"], 2, 60, 1, (3, 4))
    with pytest.raises(NvmeFuzzError, match="no campaigns"):
        plan([], 1, 60, 1)


# ---------------------------------------------------------------------------------- state
@pytest.fixture
def night(tmp_path, monkeypatch, strategies) -> Night:
    """A freshly started night of the two test campaigns on two workers (nothing run)."""
    strategies(tmp_path)
    monkeypatch.chdir(tmp_path)
    return nightly.start(Path("reports"), Path("corpus"), 2, 60, 5, (0, 1),
                         None, None, coverage=False)


def test_start_writes_state_with_absolute_paths(night, tmp_path):
    """start() plans every campaign and saves state.json with paths usable from any cwd."""
    data = json.loads((night.folder / "state.json").read_text())
    assert [s["campaign"] for s in data["slices"]] == ["full", "v3"]
    assert all(s["status"] == PENDING for s in data["slices"])
    meta = data["meta"]
    assert meta["corpus"] == str(tmp_path / "corpus")
    assert meta["database"] == str(night.folder / "hypothesis-db")
    assert night.folder.is_absolute() and night.folder.parent == tmp_path / "reports" / "nightly"
    assert meta["workers"] == 2 and meta["seconds"] == 60 and meta["seed"] == 5
    assert meta["known"] == [] and meta["coverage"] is False


def test_load_marks_running_slices_pending(night, tmp_path, monkeypatch):
    """Resume: slices that were running when the job died run again; finished ones do not."""
    extra = [nightly.Slice(2, "v3", 5002, 30.0, 0), nightly.Slice(3, "full", 5003, 30.0, 1)]
    night.slices += extra
    for s, status, code in zip(night.slices, (RUNNING, DONE, FAILED, RUNNING), (None, 1, -9, None)):
        s.status, s.exit = status, code
    night.save()
    monkeypatch.chdir(tmp_path.parent)                       # resume from somewhere else
    again = Night.load(night.folder)
    assert [s.status for s in again.slices] == [PENDING, DONE, FAILED, PENDING]
    assert [s.exit for s in again.slices] == [None, 1, -9, None]
    assert again.meta == night.meta
    assert again.corpus_dir == tmp_path / "corpus" and again.database == night.database
    assert again.coverage is False and again.target is None


def test_load_of_a_broken_folder_is_a_clear_error(tmp_path):
    """Resuming a folder without a readable state.json raises NvmeFuzzError naming it."""
    with pytest.raises(NvmeFuzzError, match="cannot resume"):
        Night.load(tmp_path)
    (tmp_path / "state.json").write_text('{"meta": {"corp')
    with pytest.raises(NvmeFuzzError, match="cannot resume"):
        Night.load(tmp_path)


def test_latest_folder_is_the_newest_night(tmp_path):
    """--resume without a folder picks the most recent night; with none it is an error."""
    with pytest.raises(NvmeFuzzError, match="nothing to resume"):
        nightly.latest_folder(tmp_path)
    for stamp in ("2026-01-02T00-00-00", "2026-11-25T09-00-00", "2026-03-01T23-59-59"):
        (tmp_path / "nightly" / stamp).mkdir(parents=True)
    (tmp_path / "nightly" / "history.jsonl").write_text("")
    assert nightly.latest_folder(tmp_path).name == "2026-11-25T09-00-00"


def test_worker_command_carries_the_night_settings(night):
    """Each slice is an `nvmefuzz fuzz` run with its campaign, seed, time, corpus and database."""
    night.database, night.target = "redis://127.0.0.1:1/0", "qemu"
    s = night.slices[1]
    cmd = night.command(s)
    assert "coverage" not in cmd
    joined = " ".join(cmd)
    assert " -m nvmefuzz.cli fuzz " in joined
    for flag, value in (("--campaign", "v3"), ("--seed", str(s.seed)), ("--time", "60.0s"),
                        ("--corpus", str(night.corpus_dir)), ("--database", night.database),
                        ("--target", "qemu")):
        assert cmd[cmd.index(flag) + 1] == value
    night.coverage = True
    covered = night.command(s)
    assert covered[1:4] == ["-m", "coverage", "run"]
    assert f"--data-file={night.folder / 'coverage' / '.coverage'}" in covered


# ---------------------------------------------------------------------------------- corpus
def test_replay_corpus_statuses(tmp_path, make_trace, signature_of_v3_finding):
    """Corpus replay tells as-expected, fixed, changed and unreadable traces apart."""
    root = tmp_path / "corpus"
    cases = {
        "still-fails": make_trace(),
        "fixed": make_trace(profile="full"),                  # the full profile saves features
        "changed": make_trace(signature="divergence:cqe/admin/GET_FEATURES/fid=0x0b/dw0"),
        "passes": make_trace(profile="full", kind="pass", signature=""),
    }
    for name, trace in cases.items():
        corpus_mod.atomic_write(root / f"{name}.cbor", trace.encode())
    (root / "junk.cbor").write_bytes(b"\x00 not a trace")
    (root / ".tmp-abc123.cbor").write_bytes(b"half a trace")   # a write cut short: ignored
    rows = {Path(r["path"]).stem: r for r in replay_corpus(root)}
    assert set(rows) == {*cases, "junk"}
    assert rows["still-fails"] | {"detail": None} == {
        "path": str(root / "still-fails.cbor"), "expected": signature_of_v3_finding,
        "now": signature_of_v3_finding, "status": "as expected", "detail": None}
    assert "dw0': 343" in rows["still-fails"]["detail"]
    assert (rows["fixed"]["status"], rows["fixed"]["now"]) == ("fixed", "pass")
    assert (rows["changed"]["status"], rows["changed"]["now"]) == (
        "changed", signature_of_v3_finding)
    assert (rows["passes"]["status"], rows["passes"]["expected"]) == ("as expected", "pass")
    assert rows["junk"]["status"] == "error" and rows["junk"]["expected"] is None
    assert "junk.cbor" in rows["junk"]["detail"]


def test_replay_corpus_of_a_missing_folder_is_empty(tmp_path):
    """A night on a machine without a corpus yet replays nothing and does not fail."""
    assert replay_corpus(tmp_path / "nowhere") == []


def test_a_qemu_trace_replayed_in_another_timing_form_is_as_expected(tmp_path, monkeypatch):
    """QEMU's timing decides whether two Reads in flight lose one completion or both: the
    stored form and the other one at the same step are the same finding, not a regression."""
    from tests.fuzz.test_cause import TWO_READS, as_qemu

    stored = as_qemu(TWO_READS, Verdict("divergence", "divergence:irq/missing", step=6,
                                        also=("divergence:posted/io/missing",)))
    root = tmp_path / "corpus"
    corpus_mod.atomic_write(root / "two-reads.cbor", stored.encode())
    for step, status in ((6, "as expected"), (5, "changed")):
        now = Verdict("divergence", "divergence:posted/io/cqes", step=step)
        monkeypatch.setattr(nightly, "replay", lambda t, _now=now: (_now, None))
        [row] = replay_corpus(root)
        assert (row["status"], row["now"]) == (status, "divergence:posted/io/cqes")
