"""Traces: canonical encoding, hostile input, the corpus on disk and the renderers."""

from __future__ import annotations

import os

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nvmefuzz.errors import TraceFormatError
from nvmefuzz.fuzz.session import replay
from nvmefuzz.protocol.spec import AdminOpcode as A
from nvmefuzz.targets import TargetConfig
from nvmefuzz.trace import corpus
from nvmefuzz.trace.render import listing, pytest_file
from nvmefuzz.trace.schema import FORMAT, VERSION, Step, Trace, Verdict

ENABLE = Step("enable", {"asqs": 7, "acqs": 7})
SET_TEMP = Step("admin", {"opc": int(A.SET_FEATURES), "cdw10": 0x04, "cdw11": 0x150})
GET_TEMP = Step("admin", {"opc": int(A.GET_FEATURES), "cdw10": 0x04})


def make(profile: str = "full", steps=(ENABLE,), verdict: Verdict = Verdict(), **kw) -> Trace:
    """A trace on the model target."""
    return Trace(target=TargetConfig(profile=profile).to_plain(), campaign="hand", seed=7,
                 steps=tuple(steps), verdict=verdict, **kw)


RICH = make(
    "qemu-v3-patch",
    steps=(ENABLE, Step("io", {"qid": 1, "opc": 1, "ranges": [(0, 1), (8, 2)], "ring": False,
                               "blob": b"\x00\xff", "nothing": None, "name": "x",
                               "nested": {"a": [1, {"b": True}]}}),
           Step("migrate"), GET_TEMP),
    verdict=Verdict("divergence", "divergence:cqe/admin/GET_FEATURES/fid=0x04/dw0",
                    "twin saw 336, migrated saw 343", 3, 1),
    waivers=("spurious-interrupt",), refusals="continue",
)
V3_FINDING = make("qemu-v3-patch", steps=(ENABLE, SET_TEMP, Step("migrate"), GET_TEMP),
                  verdict=Verdict("divergence",
                                  "divergence:cqe/admin/GET_FEATURES/fid=0x04/dw0",
                                  "lost", 3, 1))


# ---------------------------------------------------------------------- encoding
def test_round_trip_is_exact():
    """decode(encode(t)) == t and re-encoding gives the same bytes."""
    blob = RICH.encode()
    back = Trace.decode(blob)
    assert back == RICH
    assert back.encode() == blob
    assert back.steps[1].args["ranges"] == [[0, 1], [8, 2]]
    assert back.verdict.signature == RICH.verdict.signature
    assert back.migrations == 1 and back.profile == "qemu-v3-patch"


def test_encoding_is_canonical():
    """Equal traces built differently (key order, tuples vs lists) encode to the same bytes."""
    a = make(steps=(Step("io", {"qid": 1, "opc": 2, "ranges": ((0, 1),)}),))
    b = make(steps=(Step("io", {"ranges": [[0, 1]], "opc": 2, "qid": 1}),))
    assert a == b
    assert a.encode() == b.encode() == a.encode()
    c = Trace(target=dict(reversed(list(a.target.items()))), campaign="hand", seed=7,
              steps=a.steps)
    assert c.encode() == a.encode()


def test_step_rejects_values_a_trace_cannot_hold():
    """Step arguments are plain values only; a float is refused with TraceFormatError."""
    with pytest.raises(TraceFormatError, match="float"):
        Step("advance", {"ns": 1.5})
    with pytest.raises(TraceFormatError):
        Step("advance", {"ns": [object()]})


PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
STEPS = st.lists(st.builds(Step, st.text(min_size=1, max_size=10),
                           st.dictionaries(st.text(max_size=6), PLAIN, max_size=4)),
                 max_size=6)


@settings(max_examples=60, deadline=None)
@given(steps=STEPS, seed=st.integers(0, 1 << 64), kind=st.sampled_from(
    ["pass", "divergence", "refused", "crashed", "hung", "error"]), sig=st.text(max_size=20),
    also=st.lists(st.text(max_size=8), max_size=2))
def test_any_trace_round_trips(steps, seed, kind, sig, also):
    """Every trace of plain values survives encode/decode byte for byte."""
    t = Trace(target={"kind": "model", "profile": "full"}, campaign="c", seed=seed,
              steps=tuple(steps), verdict=Verdict(kind, sig, "d", 1, 0, also=also))
    blob = t.encode()
    assert Trace.decode(blob) == t
    assert Trace.decode(blob).encode() == blob


def test_a_verdict_keeps_every_way_its_step_differed():
    """The other observations the failing step differed in are kept; a verdict without any
    encodes as before (stored traces keep their bytes)."""
    v = Verdict("divergence", "divergence:irq/missing", "d", 4, 0,
                also=["divergence:posted/io/missing"])
    back = Trace.decode(make(verdict=v).encode())
    assert back.verdict == v
    assert back.verdict.signatures == ("divergence:irq/missing", "divergence:posted/io/missing")
    alone = make(verdict=Verdict("divergence", "divergence:irq/missing", "d", 4, 0))
    assert "also" not in alone.to_plain()["verdict"]
    assert alone.verdict.signatures == ("divergence:irq/missing",)


# ---------------------------------------------------------------------- hostile input
def decodes_or_format_error(blob: bytes) -> Trace | None:
    """Decode ``blob``; the only exception allowed is TraceFormatError."""
    try:
        return Trace.decode(blob)
    except TraceFormatError:
        return None


def test_every_truncation_is_a_format_error():
    """Every proper prefix of a trace fails with TraceFormatError."""
    blob = RICH.encode()
    for n in range(len(blob)):
        with pytest.raises(TraceFormatError):
            Trace.decode(blob[:n])


def test_trailing_junk_is_a_format_error():
    """Bytes after the trace make the file corrupt."""
    with pytest.raises(TraceFormatError, match="junk"):
        Trace.decode(RICH.encode() + b"\x00")
    with pytest.raises(TraceFormatError):
        Trace.decode(RICH.encode() * 2)


def test_wrong_version_and_format_are_refused():
    """Another format version or a missing format tag is a clear TraceFormatError."""
    plain = RICH.to_plain()
    with pytest.raises(TraceFormatError, match="version 2"):
        Trace.decode(cbor2.dumps({**plain, "version": VERSION + 1}))
    with pytest.raises(TraceFormatError, match="version"):
        Trace.decode(cbor2.dumps({k: v for k, v in plain.items() if k != "version"}))
    with pytest.raises(TraceFormatError, match="format"):
        Trace.decode(cbor2.dumps({**plain, "format": "something-else"}))
    with pytest.raises(TraceFormatError, match="format"):
        Trace.decode(cbor2.dumps([FORMAT, VERSION]))
    with pytest.raises(TraceFormatError, match="verdict kind"):
        Trace.decode(cbor2.dumps({**plain, "verdict": {**plain["verdict"], "kind": "meh"}}))


@pytest.mark.parametrize("field,value", [
    ("seed", float("inf")), ("seed", float("nan")), ("seed", 1.5), ("seed", "7"),
    ("seed", True), ("campaign", b"x"), ("campaign", 3), ("refusals", None),
    ("waivers", "ab"), ("waivers", [1]), ("target", [["kind", "model"]]), ("target", {1: 2}),
    ("target", {"kind": cbor2.CBORTag(6, "model")}), ("target", {"io_latency_ns": 2.5}),
    ("steps", [["enable"]]), ("steps", [["enable", [1]]]), ("steps", [[1, {}]]),
    ("steps", [["a", {"x": 1.5}]]), ("steps", "ab"), ("verdict", {"kind": "pass", "x": 1}),
    ("verdict", {"kind": "pass", "step": "1"}), ("verdict", []),
    ("verdict", {"kind": "pass", "also": "ab"}), ("verdict", {"kind": "pass", "also": [1]}),
])
def test_malformed_fields_are_format_errors(field, value):
    """A field of the wrong type is a TraceFormatError, never a builtin exception."""
    plain = {**RICH.to_plain(), field: value}
    with pytest.raises(TraceFormatError):
        Trace.decode(cbor2.dumps(plain))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_bytes_decode_or_raise_format_error(data):
    """Flipped, replaced, inserted or deleted bytes never raise anything but TraceFormatError."""
    blob = bytearray(RICH.encode())
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        at = data.draw(st.integers(0, len(blob) - 1), label="at")
        how = data.draw(st.sampled_from(["flip", "set", "insert", "delete"]), label="how")
        byte = data.draw(st.integers(0, 255), label="byte")
        if how == "flip":
            blob[at] ^= 1 << (byte % 8)
        elif how == "set":
            blob[at] = byte
        elif how == "insert":
            blob.insert(at, byte)
        elif len(blob) > 1:
            del blob[at]
    out = decodes_or_format_error(bytes(blob))
    if out is not None:                          # a still-valid trace re-encodes canonically
        assert isinstance(out, Trace)
        Trace.decode(out.encode())


@settings(max_examples=200, deadline=None)
@given(blob=st.binary(max_size=200))
def test_garbage_is_a_format_error(blob):
    """Random bytes are refused with TraceFormatError."""
    with pytest.raises(TraceFormatError):
        Trace.decode(blob)


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(["format", "version", "target", "campaign", "seed", "steps",
                              "verdict", "waivers", "refusals"]),
       value=PLAIN | st.floats() | st.dictionaries(st.text(max_size=8), PLAIN, max_size=5))
def test_replaced_fields_decode_or_raise_format_error(field, value):
    """Any plain value in any field decodes to a trace of the right types or is refused."""
    out = decodes_or_format_error(cbor2.dumps({**RICH.to_plain(), field: value}))
    if out is not None:
        assert isinstance(out.seed, int) and isinstance(out.campaign, str)
        assert Trace.decode(out.encode()) == out


# ---------------------------------------------------------------------- the corpus
def test_save_collapses_by_signature_and_keeps_the_shorter(tmp_path):
    """One file per (profile, signature); a shorter trace replaces a longer one, not vice versa."""
    v = V3_FINDING.verdict
    long = make("qemu-v3-patch", steps=(ENABLE,) * 6 + V3_FINDING.steps, verdict=v)
    path, new = corpus.save(tmp_path, long)
    assert new and path.exists()
    assert path.parent == tmp_path / "qemu-v3-patch" and path.suffix == ".cbor"
    path2, new = corpus.save(tmp_path, V3_FINDING)
    assert path2 == path and new
    assert corpus.load(path) == V3_FINDING
    path3, new = corpus.save(tmp_path, long)
    assert path3 == path and not new
    assert corpus.load(path) == V3_FINDING
    path4, new = corpus.save(tmp_path, V3_FINDING)          # same length: kept, not new
    assert path4 == path and not new
    other = make("qemu-v3-patch", steps=V3_FINDING.steps,
                 verdict=Verdict("refused", "refused:no free space in CQ (not supported)"))
    path5, new = corpus.save(tmp_path, other)
    assert new and path5 != path
    elsewhere, new = corpus.save(tmp_path, make("nvmecs-v0", steps=V3_FINDING.steps, verdict=v))
    assert new and elsewhere.parent.name == "nvmecs-v0"
    assert len(corpus.files(tmp_path)) == 3


def test_save_replaces_an_unreadable_file(tmp_path):
    """A corrupt file at a finding's path is overwritten by the new trace."""
    path = corpus.path_for(tmp_path, V3_FINDING)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\xff\x00 not a trace")
    assert corpus.save(tmp_path, V3_FINDING) == (path, True)
    assert corpus.load(path) == V3_FINDING


def test_writes_leave_no_temporary_files(tmp_path):
    """Saving many traces leaves only the final files."""
    for n in range(5):
        corpus.save(tmp_path, make("full", steps=(ENABLE,) * (5 - n),
                                   verdict=Verdict("divergence", f"divergence:x{n % 2}")))
    names = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert len(names) == 2
    assert not any(n.startswith(".tmp-") for n in names)


def test_failed_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    """A write that fails before the rename leaves the old file whole and no temp file."""
    target = tmp_path / "x" / "t.cbor"
    corpus.atomic_write(target, b"old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(corpus.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        corpus.atomic_write(target, b"new contents")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert os.listdir(target.parent) == ["t.cbor"]


def test_load_all_reports_unreadable_files(tmp_path):
    """Corrupt, truncated and other-version files are reported as entries, never raised."""
    good, _ = corpus.save(tmp_path, V3_FINDING)
    bad = tmp_path / "qemu-v3-patch" / "garbage.cbor"
    bad.write_bytes(b"\x00\x01garbage")
    short = tmp_path / "full" / "short.cbor"
    short.parent.mkdir()
    short.write_bytes(V3_FINDING.encode()[:-5])
    newer = tmp_path / "full" / "newer.cbor"
    newer.write_bytes(cbor2.dumps({**V3_FINDING.to_plain(), "version": VERSION + 1}))
    (tmp_path / "full" / ".tmp-halfwritten.cbor").write_bytes(b"\x00")
    (tmp_path / "full" / "notes.txt").write_text("not a trace")
    entries = corpus.load_all(tmp_path)
    assert sorted(e.path for e in entries) == sorted([good, bad, short, newer])
    by_path = {e.path: e for e in entries}
    assert by_path[good].trace == V3_FINDING and by_path[good].error == ""
    for p in (bad, short, newer):
        assert by_path[p].trace is None
        assert str(p) in by_path[p].error
    assert "version" in by_path[newer].error
    with pytest.raises(TraceFormatError, match="cannot read"):
        corpus.load(tmp_path / "missing.cbor")


def test_load_all_of_a_single_file(tmp_path):
    """load_all accepts one file as well as a folder."""
    path, _ = corpus.save(tmp_path, V3_FINDING)
    assert [e.trace for e in corpus.load_all(path)] == [V3_FINDING]


# ---------------------------------------------------------------------- rendering
def test_listing_marks_the_failing_step():
    """The listing shows every step and marks the one that produced the verdict."""
    text = listing(V3_FINDING)
    lines = text.splitlines()
    assert "qemu-v3-patch" in lines[0] and V3_FINDING.verdict.signature in lines[1]
    assert len(lines) == 2 + len(V3_FINDING.steps)
    assert lines[-1].rstrip().endswith("<-- divergence")
    assert "migrate()" in lines[-2] and "<--" not in lines[-2]


def load_rendered(trace: Trace, tmp_path, name: str):
    """Write the rendered reproducer to ``tmp_path`` and return (path, its namespace)."""
    path = tmp_path / f"{name}.py"
    path.write_text(pytest_file(trace))
    namespace: dict = {"__name__": name}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    tests = [v for k, v in namespace.items() if k.startswith("test_") and callable(v)]
    assert len(tests) == 1
    return path, namespace, tests[0]


def run_pytest(path, tmp_path) -> int:
    """Run pytest in-process on one generated file."""
    return pytest.main([str(path), "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                        "--import-mode=importlib", "-o", "addopts="])


def test_rendered_pass_trace_passes(tmp_path):
    """The reproducer of a `full` trace that passes runs green, under exec and under pytest."""
    steps = (ENABLE, SET_TEMP, Step("migrate"), GET_TEMP)
    trace = make("full", steps=steps)
    assert replay(trace)[0].ok
    path, ns, test = load_rendered(trace, tmp_path, "test_repro_pass")
    assert ns["TRACE"].steps == trace.steps and ns["TRACE"].target == trace.target
    test()
    assert run_pytest(path, tmp_path) == pytest.ExitCode.OK


def test_rendered_divergence_fails(tmp_path):
    """The reproducer of a v3 divergence fails with AssertionError naming the signature."""
    path, ns, test = load_rendered(V3_FINDING, tmp_path, "test_repro_v3")
    assert ns["TRACE"].waivers == V3_FINDING.waivers
    with pytest.raises(AssertionError, match="GET_FEATURES/fid=0x04/dw0"):
        test()
    assert run_pytest(path, tmp_path) == pytest.ExitCode.TESTS_FAILED


@pytest.mark.parametrize("detail", [
    "x" * 298 + "\\x1b and more",                 # the length limit cuts an escape in half
    "twin saw b'\"\"\"' end",                     # a docstring terminator in the data
    "ends in a backslash \\",
    "quote at the end\"",
])
def test_rendered_file_is_valid_python_whatever_the_detail(detail, tmp_path):
    """Details holding backslashes and quotes still render to a module that compiles."""
    trace = make("full", verdict=Verdict("divergence", "divergence:irq/extra", detail, 0, -1))
    path, ns, test = load_rendered(trace, tmp_path, "test_repro_detail")
    assert detail[:300] in ns["__doc__"]
    test()
