"""Same seed, same findings; same trace, same verdict."""

from __future__ import annotations

import pytest

from nvmefuzz.fuzz.campaign import load
from nvmefuzz.fuzz.runner import run_campaign
from nvmefuzz.fuzz.session import replay
from nvmefuzz.trace import corpus

#: a seed for which 30 examples of `default` on qemu-v3-patch find something quickly
SEED = 3


@pytest.fixture(scope="module")
def two_runs():
    """The same campaign, seed and example budget run twice."""
    camp = load("default").with_profile("qemu-v3-patch")
    return [run_campaign(camp, seed=SEED, examples=30) for _ in range(2)]


def test_same_seed_gives_the_same_findings(two_runs):
    """Two runs with one seed find the same signatures with byte-identical traces."""
    first, second = two_runs
    assert first.findings, "the seed is chosen so that the v3 patch gives a finding"
    assert [f.signature for f in first.findings] == [f.signature for f in second.findings]
    assert [f.trace.encode() for f in first.findings] == \
        [f.trace.encode() for f in second.findings]
    assert first.stats["examples"] == second.stats["examples"]
    assert first.stats["steps"] == second.stats["steps"]
    for f in first.findings:
        assert f.trace.seed == SEED and f.trace.profile == "qemu-v3-patch"
        assert f.kind == f.trace.verdict.kind != "pass"
        assert f.signature == f.trace.verdict.signature


def test_findings_replay_to_their_verdict_every_time(two_runs):
    """Replaying a found trace reaches its recorded verdict on every run."""
    for finding in two_runs[0].findings:
        verdicts = [replay(finding.trace)[0] for _ in range(5)]
        assert all(v == verdicts[0] for v in verdicts)
        assert verdicts[0].kind == finding.trace.verdict.kind
        assert verdicts[0].signature == finding.trace.verdict.signature
        assert verdicts[0].step == finding.trace.verdict.step == len(finding.trace.steps) - 1


def test_saved_finding_replays_after_a_round_trip(two_runs, tmp_path):
    """A finding saved to a corpus and loaded back replays to the same verdict."""
    finding = two_runs[0].findings[0]
    path, new = corpus.save(tmp_path, finding.trace)
    assert new
    loaded = corpus.load(path)
    assert loaded == finding.trace
    assert {replay(loaded)[0] for _ in range(3)} == {replay(finding.trace)[0]}


def test_different_seeds_explore_differently():
    """Another seed generates other examples (the seed is really used)."""
    camp = load("default")
    a = run_campaign(camp, seed=11, examples=5)
    b = run_campaign(camp, seed=12, examples=5)
    c = run_campaign(camp, seed=11, examples=5)
    assert a.stats == c.stats
    assert a.stats != b.stats


def test_a_seed_draws_the_same_examples_whatever_else_is_imported(tmp_path, monkeypatch):
    """Hypothesis may draw literals of any local module in ``sys.modules``; a batch pins that
    pool, so importing a module full of literals does not change what a seed draws."""
    import importlib
    import sys

    from nvmefuzz.fuzz.diff import generate

    camp = load("default")
    before = [[s.render() for s in steps] for steps in generate(camp, 12, seed=1)]
    (tmp_path / "nvmefuzz_literals.py").write_text(   # integers a step may draw
        "LITERALS = [" + ", ".join(str(n) for n in range(101, 16384, 331)) + "]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)                     # a module of the working tree: "local"
    importlib.import_module("nvmefuzz_literals")
    try:
        after = [[s.render() for s in steps] for steps in generate(camp, 12, seed=1)]
    finally:
        sys.modules.pop("nvmefuzz_literals", None)
    assert after == before
