"""What known findings explain: the state paths their migrations lose (``runner``).

A run gives its machine the lost state the corpus's findings already show, so a migration
that loses only that is not followed by reading back everything (it would meet a known
finding and end the example).  Only model traces are replayed: QEMU shows no insides.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from nvmefuzz.fuzz import runner
from nvmefuzz.fuzz.runner import explained_losses, known_findings
from nvmefuzz.model.snapshot import SCHEMA

CORPUS = Path(__file__).resolve().parents[2] / "corpus"


@pytest.mark.parametrize("profile, lost", [
    ("qemu-v3-patch", {"features.temp_thresh_hi", "features.err_rec", "host_writes", "dmrsl"}),
    ("qemu-11.1", {"host_reads", "host_writes", "changed_nsids", "dmrsl"}),
])
def test_corpus_findings_explain_the_state_their_migrations_lose(profile, lost):
    findings = known_findings(CORPUS, profile)
    assert findings and all(t.profile == profile and not t.verdict.ok for t in findings)
    explained = explained_losses(findings)
    assert lost <= explained
    assert {path.split(".")[0] for path in explained} <= {p.split(".")[0] for p in SCHEMA}


def test_an_absent_corpus_explains_nothing(tmp_path):
    assert known_findings(tmp_path / "none", "full") == []
    assert explained_losses([]) == set()


def test_qemu_traces_are_not_replayed(monkeypatch):
    model = known_findings(CORPUS, "qemu-11.1")[0]
    on_qemu = attrs.evolve(model, target={**model.target, "kind": "qemu"})

    def no_replay(trace):
        raise AssertionError(f"replayed {trace.target}")
    monkeypatch.setattr(runner, "replay", no_replay)
    assert explained_losses([on_qemu]) == set()
