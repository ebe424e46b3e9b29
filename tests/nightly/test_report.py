"""A short nightly job end to end: exit code, summary.json, JUnit XML, the HTML page in Chromium.

The first night runs a ``qemu-v3-patch`` campaign (findings within seconds) and a ``full``
campaign (clean) on two workers against an empty corpus; the second night runs on the corpus
the first one filled.  The HTML page is opened in headless Chromium; its screenshot is kept in
``reports/screenshots/nightly-report.png`` of the checkout.
"""

from __future__ import annotations

import html as html_mod
import json
import shutil
import struct
import subprocess
from pathlib import Path
from types import SimpleNamespace
from xml.etree import ElementTree as ET

import pytest

from nvmefuzz.fuzz.session import replay
from nvmefuzz.report import night as report
from nvmefuzz.trace import corpus as corpus_mod

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "reports" / "screenshots" / "nightly-report.png"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _night(root: Path, run_cli, time: str, seed: int, *extra: str) -> SimpleNamespace:
    before = set((root / "reports" / "nightly").glob("20*"))
    corpus_before = corpus_mod.files(root / "corpus")
    proc = run_cli(["nightly", "--time", time, "--workers", "2", "--seed", seed,
                    "--corpus", root / "corpus", "--reports", root / "reports", *extra],
                   cwd=root)
    (folder,) = set((root / "reports" / "nightly").glob("20*")) - before
    summary = json.loads((folder / "summary.json").read_text())
    return SimpleNamespace(proc=proc, folder=folder, summary=summary, corpus=corpus_before,
                           junit=ET.parse(folder / "junit.xml").getroot())


@pytest.fixture(scope="module")
def root(tmp_path_factory, strategies) -> Path:
    """A working directory with its own strategies/: a qemu-v3-patch and a full campaign."""
    root = tmp_path_factory.mktemp("nightly")
    strategies(root)
    return root


@pytest.fixture(scope="module")
def first(root, run_cli) -> SimpleNamespace:
    """`nvmefuzz nightly --time 20s --workers 2` on an empty corpus."""
    return _night(root, run_cli, "20s", 1)


@pytest.fixture(scope="module")
def second(root, run_cli, first) -> SimpleNamespace:
    """A second, shorter night (no coverage measurement) on the corpus the first one filled."""
    return _night(root, run_cli, "6s", 3, "--no-coverage")


def _suites(junit: ET.Element) -> dict[str, ET.Element]:
    assert junit.tag == "testsuites"
    suites = {s.get("name"): s for s in junit.findall("testsuite")}
    assert set(suites) == {"corpus", "campaigns"}
    return suites


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed: the nightly report test opens the HTML page in "
                    "headless Chromium (Debian package chromium; .ci/run installs it)")
    return path


def _chromium_run(html: Path, profile: Path, *mode: str) -> subprocess.CompletedProcess:
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={profile}", *mode, html.resolve().as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------------------------- night 1
def test_first_night_reports_new_findings_with_exit_1(first):
    """New findings make the night exit 1, and summary.json says why, with every total filled."""
    assert first.proc.returncode == 1, first.proc.stderr[-3000:]
    s = first.summary
    assert s["exit"] == 1
    assert s["findings"], "the qemu-v3-patch campaign found nothing"
    assert all(f["new"] for f in s["findings"])
    assert [x["status"] for x in s["slices"]] == ["done", "done"]
    assert [(x["campaign"], x["exit"]) for x in s["slices"]] == [("full", 0), ("v3", 1)]
    assert s["totals"]["examples"] > 0 and s["totals"]["migrations"] > 0
    assert s["totals"]["steps_per_s"] > 0
    assert s["timeline"] and s["coverage"]["percent"] > 20
    assert {"model/controller.py", "model/__init__.py", "protocol/__init__.py",
            "model/profiles/qemu_v3_patch.py"} <= set(s["coverage"]["files"])
    assert s["corpus"] == {"total": 0, "regressions": 0, "errors": 0, "rows": []}
    assert str(first.folder / "index.html") in first.proc.stdout


def _stored(night: SimpleNamespace, key: str = "identity") -> set[str]:
    """Identities (signature and root cause) of the night's findings that were shrunk into the
    corpus; or their signatures."""
    return {f[key] for f in night.summary["findings"] if f["trace"]}


def test_each_finding_has_class_signature_repro_and_a_trace_that_replays(first, root):
    """Every finding names its class and signature, its trace exists and reproduces it."""
    identities = [f["identity"] for f in first.summary["findings"]]
    assert len(identities) == len(set(identities))              # deduplicated
    assert _stored(first), "no finding was shrunk into the corpus"
    in_corpus = {e.trace.verdict.identity: e.path for e in corpus_mod.load_all(root / "corpus")}
    for f in first.summary["findings"]:
        assert f["class"] == "divergence" and f["signature"].startswith("divergence:")
        assert f["campaign"] == "v3" and f["slice"] == 1
        assert Path(f["raw_trace"]).is_file()                  # written before shrinking
        # shrunk findings point at the corpus; signatures only seen on the way, at the raw trace
        trace_path = Path(f["trace"] or f["raw_trace"])
        assert trace_path.is_file()
        if f["trace"]:
            assert trace_path == in_corpus[f["identity"]]
            assert f["cause"] and f["identity"] == f"{f['signature']} [{f['cause']['key']}]"
        # a cause of lost state names the values lost, at a migration of the trace
        trace = corpus_mod.load(trace_path)
        assert bool(f["lost"]) == (f["cause"]["kind"] == "state" and any(
            p != "guest memory written while saving" for p in f["cause"]["paths"]))
        migrations = {i for i, s in enumerate(trace.steps) if s.action == "migrate"}
        for line in f["lost"]:
            step, where = line.removeprefix("migrate at step ").split(": ")[:2]
            assert int(step) in migrations and where.split("[")[0].split(".")[0] in {
                p.split(".")[0] for p in f["cause"]["paths"]}
        assert f["repro"] == [f"nvmefuzz repro {trace_path}",
                              f"nvmefuzz repro {trace_path} --emit-pytest test_repro.py"]
        assert len(trace.steps) == f["steps"] and "migrate()" in f["listing"]
        verdict, _ = replay(trace)
        assert (verdict.kind, verdict.signature) == (f["class"], f["signature"])
    assert set(in_corpus) == _stored(first)
    assert any(f["lost"] for f in first.summary["findings"])   # v3 loses feature values


def test_first_night_junit_has_a_testcase_per_slice_and_a_failure_per_finding(first):
    """junit.xml: a corpus suite and a campaigns suite; each new finding fails its slice."""
    suites = _suites(first.junit)
    assert suites["corpus"].findall("testcase") == [] and suites["corpus"].get("tests") == "0"
    cases = suites["campaigns"].findall("testcase")
    assert [c.get("name") for c in cases] == ["full[0]", "v3[1]"]
    assert suites["campaigns"].get("tests") == "2"
    assert all(float(c.get("time")) > 0 for c in cases)
    assert cases[0].findall("failure") == [] and cases[0].findall("error") == []
    failures = cases[1].findall("failure")
    assert sorted(f.get("message") for f in failures) == sorted(
        f["identity"] for f in first.summary["findings"] if f["new"])
    for fail in failures:
        assert fail.get("type") == "divergence"
        assert "nvmefuzz repro " in fail.text and "--emit-pytest" in fail.text


def test_report_opens_in_headless_chromium(first, tmp_path):
    """Chromium renders index.html with each finding and its repro command; screenshot kept."""
    html = first.folder / "index.html"
    dom = _chromium_run(html, tmp_path / "profile-dom", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "new findings" in dom.stdout and "Hard states reached at migration" in dom.stdout
    assert "Hard states met by resets" in dom.stdout
    causes = {f["cause"]["key"] for f in first.summary["findings"]}
    assert f"{len(first.summary['findings'])} findings, {len(causes)} root causes" in dom.stdout
    for f in first.summary["findings"]:
        assert f["signature"] in dom.stdout
        assert f"nvmefuzz repro {f['trace'] or f['raw_trace']}" in dom.stdout
        assert html_mod.escape(f["cause"]["describe"], quote=False) in dom.stdout
        for line in f["lost"]:
            assert html_mod.escape(line, quote=False) in dom.stdout
    assert dom.stdout.count("data:image/png;base64,") >= 2      # tonight + over nights

    png = tmp_path / "nightly-report.png"
    shot = _chromium_run(html, tmp_path / "profile-shot", f"--screenshot={png}",
                         "--window-size=1200,2400")
    assert shot.returncode == 0, shot.stderr[-2000:]
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(png, SCREENSHOT)
    blob = SCREENSHOT.read_bytes()
    assert blob[:8] == PNG_MAGIC and blob[12:16] == b"IHDR"
    assert struct.unpack(">II", blob[16:24]) == (1200, 2400)
    assert len(blob) > 50_000

    from PIL import Image

    with Image.open(SCREENSHOT) as img:
        rgb = img.convert("RGB")
    colors = rgb.resize((120, 240)).getcolors(120 * 240)        # [(count, (r, g, b))]
    assert len(colors) > 50                                     # text, tables, plots: not blank
    assert sum(n for n, c in colors if c != (255, 255, 255)) > 120 * 240 // 10
    title = rgb.crop((0, 0, 1200, 120)).getcolors(1200 * 120)
    assert any(r > 150 and g < 80 and b < 80 for _, (r, g, b) in title)  # red "new findings"


# ---------------------------------------------------------------------------------- night 2
def test_second_night_marks_corpus_findings_as_known(first, second):
    """On the filled corpus the first night's findings are known, not new, and replay as such."""
    assert second.proc.returncode in (0, 1), second.proc.stderr[-3000:]
    s = second.summary
    old = _stored(first)
    assert old and old == set(s["meta"]["known"])
    assert not [f for f in s["findings"] if f["identity"] in old and f["new"]]
    new = [f for f in s["findings"] if f["new"]]
    assert second.proc.returncode == s["exit"] == (1 if new else 0)
    rows = s["corpus"]["rows"]
    assert {r["expected"] for r in rows} >= _stored(first, "signature")
    assert all(r["status"] == "as expected" and r["now"] == r["expected"] for r in rows)
    assert s["corpus"]["regressions"] == s["corpus"]["errors"] == 0


def test_second_night_junit_has_a_testcase_per_corpus_trace(first, second):
    """The corpus suite has one passing testcase per corpus trace; known findings fail nothing."""
    traces = second.corpus                                   # the corpus the night started on
    assert len(traces) == len(_stored(first))
    suites = _suites(second.junit)
    cases = suites["corpus"].findall("testcase")
    assert sorted(c.get("name") for c in cases) == sorted(str(p) for p in traces)
    assert suites["corpus"].get("tests") == str(len(traces))
    assert all(not list(c) for c in cases)                       # no failure, no error
    failures = [f.get("message") for f in suites["campaigns"].iter("failure")]
    assert sorted(failures) == sorted(f["identity"] for f in second.summary["findings"]
                                      if f["new"])
    assert not _stored(first) & set(failures)


def test_history_records_both_nights(root, first, second):
    """reports/nightly/history.jsonl gets one line per night, feeding the over-nights plot."""
    lines = (root / "reports" / "nightly" / "history.jsonl").read_text().splitlines()
    history = [json.loads(x) for x in lines]
    assert [h["night"] for h in history] == [first.summary["meta"]["started"],
                                              second.summary["meta"]["started"]]
    assert history[0]["findings"] == len(first.summary["findings"])
    assert history[1]["migrations"] == second.summary["totals"]["migrations"]


# ---------------------------------------------------------------------------------- collect
def _slice_dir(folder: Path, index: int, campaign: str) -> Path:
    d = folder / "slices" / f"{index:02d}-{campaign}"
    d.mkdir(parents=True)
    return d


def test_collect_reports_raw_findings_of_killed_slices_and_harness_errors(
        tmp_path, make_trace, signature_of_v3_finding):
    """A slice killed before its summary still contributes its raw finding; it is exit 2."""
    corpus = tmp_path / "corpus"
    raw_trace = make_trace()
    state = {"meta": {"workers": 2, "known": [], "corpus": str(corpus), "started": "x",
                      "seconds": 1, "target": None, "shard": [0, 1]},
             "slices": [{"index": 0, "campaign": "v3", "seed": 0, "seconds": 1.0, "worker": 0,
                         "status": "failed", "exit": -9, "detail": "killed by signal 9"},
                        {"index": 1, "campaign": "v3", "seed": 1, "seconds": 1.0, "worker": 1,
                         "status": "done", "exit": 0, "detail": ""}]}
    d0 = _slice_dir(tmp_path, 0, "v3")
    _slice_dir(tmp_path, 1, "v3")
    (d0 / "timeline.jsonl").write_text('{"t": 1, "at": 5.0, "examples": 3, "steps": 9, '
                                       '"migrations": 2, "findings": 0}\n{"t": 2, "at"')
    raw_dir = d0 / "runs" / "v3-qemu-v3-patch-seed0" / "raw"
    corpus_mod.atomic_write(raw_dir / "finding.cbor", raw_trace.encode())
    (raw_dir / ".tmp-x.cbor").write_bytes(b"cut short")
    s = report.collect(tmp_path, state, [])
    assert s["exit"] == 2
    (f,) = s["findings"]
    assert (f["signature"], f["slice"], f["new"], f["trace"]) == (
        signature_of_v3_finding, 0, True, None)
    assert f["raw_trace"] == str(raw_dir / "finding.cbor")
    assert f["repro"][0] == f"nvmefuzz repro {raw_dir / 'finding.cbor'}"
    assert len(s["timeline"]) == 1                                 # the cut line is skipped

    # once the shrunk trace is in the corpus, the report points at it
    corpus_mod.save(corpus, raw_trace)
    f = report.collect(tmp_path, state, [])["findings"][0]
    assert f["trace"] == str(corpus_mod.path_for(corpus, raw_trace))
    assert f["repro"][0] == f"nvmefuzz repro {f['trace']}"

    junit = ET.fromstring(report.junit(report.collect(tmp_path, state, [])).encode())
    cases = junit.find("testsuite[@name='campaigns']").findall("testcase")
    assert cases[0].find("error").get("message") == "killed by signal 9"
    assert cases[0].find("failure").get("message") == signature_of_v3_finding
    assert cases[1].findall("failure") == [] and cases[1].findall("error") == []


def test_collect_keeps_the_shortest_trace_per_signature(tmp_path):
    """Two slices reporting one signature make one finding: the shorter trace, its slice."""
    state = {"meta": {"workers": 1, "known": ["divergence:b"], "corpus": str(tmp_path / "c")},
             "slices": [{"index": k, "campaign": c, "status": "done", "detail": ""}
                        for k, c in enumerate(["one", "two"])]}
    for k, (c, steps) in enumerate([("one", 9), ("two", 4)]):
        d = _slice_dir(tmp_path, k, c)
        findings = [{"class": "divergence", "signature": "divergence:a", "steps": steps,
                     "trace": None, "raw_trace": None, "detail": "d", "new": True},
                    {"class": "divergence", "signature": "divergence:b", "steps": 1,
                     "trace": None, "raw_trace": None, "detail": "d", "new": True}]
        (d / "summary.json").write_text(json.dumps({
            "examples": 10, "steps": 100, "migrations": 5, "elapsed_s": 2.0,
            "hard_states_at_migration": {"events queued": k + 1}, "resets": 2 * k,
            "hard_states_at_reset": {"I/O in flight": k}, "findings": findings}))
    s = report.collect(tmp_path, state, [])
    assert [(f["signature"], f["slice"], f["steps"], f["new"]) for f in s["findings"]] == [
        ("divergence:a", 1, 4, True), ("divergence:b", 0, 1, False)]
    assert s["exit"] == 1
    assert s["totals"]["examples"] == 20 and s["totals"]["steps_per_s"] == 50.0
    assert s["hard_states"] == {"events queued": 3}
    assert s["totals"]["resets"] == 2 and s["hard_states_at_reset"] == {"I/O in flight": 1}
    failures = ET.fromstring(report.junit(s).encode()).iter("failure")
    assert [f.get("message") for f in failures] == ["divergence:a"]
