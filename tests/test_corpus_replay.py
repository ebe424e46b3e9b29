"""Every trace in the regression corpus still reaches the verdict it was stored with."""

from __future__ import annotations

from pathlib import Path

import pytest

from nvmefuzz.fuzz.session import replay
from nvmefuzz.trace import corpus

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
FILES = corpus.files(CORPUS) if CORPUS.is_dir() else []


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(CORPUS)))
def test_corpus_trace_reaches_its_recorded_verdict(path):
    """Replaying the stored trace gives the recorded verdict class and signature."""
    trace = corpus.load(path)
    verdict, _ = replay(trace)
    assert (verdict.kind, verdict.signature) == (trace.verdict.kind, trace.verdict.signature), (
        f"{path}: recorded {trace.verdict.kind} {trace.verdict.signature!r}, now "
        f"{verdict.kind} {verdict.signature!r}: {verdict.detail}")
    assert corpus.path_for(CORPUS, trace) == path, "stored under its canonical name"


def test_corpus_files_are_readable_and_canonically_named():
    """Every file in corpus/ decodes and sits at the path its profile and signature give."""
    entries = corpus.load_all(CORPUS) if CORPUS.is_dir() else []
    assert [str(e.path) for e in entries if e.trace is None] == []
    assert sorted(e.path for e in entries) == sorted(FILES)
    for e in entries:
        assert corpus.path_for(CORPUS, e.trace) == e.path
        assert not e.trace.verdict.ok or e.trace.verdict.signature == ""
