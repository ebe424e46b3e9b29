"""The README's per-profile loss tables: each verdict class explained, and the committed
tables the ones the corpus gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from nvmefuzz.report.losses import explain, section

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("signature, sentence", [
    ("refused:no free space in CQ (not supported)",
     'the design refuses to migrate: "no free space in CQ (not supported)"'),
    ("crashed:load failed: cq[].size", "the destination cannot load the state (load failed: "
                                       "cq[].size)"),
    ("hung:save: pre_save spins on cq[].req_list",
     "the migration never ends: save: pre_save spins on cq[].req_list"),
    ("divergence:cqe/admin/GET_FEATURES/fid=0x04/dw0",
     "Get Features for feature Temperature Threshold (04h) differs in its result (DW0) after "
     "migration"),
    ("divergence:posted/io/missing", "completions posted to io CQs differ (one missing) after "
                                     "migration"),
])
def test_each_verdict_class_gets_its_sentence(signature, sentence):
    assert explain(signature) == sentence


def test_the_readme_tables_are_the_ones_the_corpus_gives(monkeypatch):
    """``scripts/profile-losses`` was run after the corpus last changed."""
    monkeypatch.chdir(ROOT)
    _, marker, tables = (ROOT / "README.md").read_text().partition("<!-- losses -->")
    assert marker and tables == "\n\n" + section(Path("corpus"))
