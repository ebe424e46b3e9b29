"""The night's report: summary.json, JUnit XML and one self-contained HTML page.

``collect`` reads the night's folder (state, corpus replay, each slice's summary and
timeline, coverage data) into one summary dict; ``junit`` and ``html`` render it.  The HTML
page carries its CSS and its plots (PNG, base64) inline so it can be mailed or archived as
one file.  Plots: findings and migrations over the night, and findings, coverage and
migrations over the nights recorded in ``reports/nightly/history.jsonl``.  Findings carry
their root cause (``fuzz.cause``) and the page groups them by it: one lost piece of state
that shows several ways is one line.
"""

from __future__ import annotations

import base64
import html as h
import io
import json
from collections import Counter
from pathlib import Path
from xml.etree import ElementTree as ET

from nvmefuzz.fuzz.cause import lost_lines
from nvmefuzz.fuzz.known import NOT_REPLAYABLE, root_cause
from nvmefuzz.trace import corpus as corpus_mod
from nvmefuzz.trace.render import listing


def _coverage(folder: Path) -> dict:
    files = list((folder / "coverage").glob(".coverage*"))
    if not files:
        return {"percent": None, "files": {}}
    import coverage

    cov = coverage.Coverage(data_file=str(folder / "coverage" / "combined"), branch=True)
    cov.combine([str(f) for f in files], keep=True)
    cov.save()
    out = folder / "coverage" / "coverage.json"
    try:
        cov.json_report(outfile=str(out), include=["*/nvmefuzz/model/*",
                                                   "*/nvmefuzz/protocol/*"])
    except coverage.exceptions.NoDataError:
        return {"percent": None, "files": {}}
    data = json.loads(out.read_text())
    # keyed by the path under the package (model/__init__.py vs protocol/__init__.py)
    return {"percent": round(data["totals"]["percent_covered"], 1),
            "files": {Path(k).as_posix().rsplit("/nvmefuzz/", 1)[-1]:
                      round(v["summary"]["percent_covered"], 1)
                      for k, v in sorted(data["files"].items())}}


def collect(folder: Path, state: dict, corpus_rows: list[dict]) -> dict:
    totals: Counter = Counter()
    hard: Counter = Counter()
    at_reset: Counter = Counter()
    findings: dict[str, dict] = {}
    slices, timeline = [], []
    known = set(state["meta"].get("known", []))
    elapsed = 0.0
    for s in state["slices"]:
        d = folder / "slices" / f"{s['index']:02d}-{s['campaign']}"
        summary = {}
        if (d / "summary.json").exists():
            summary = json.loads((d / "summary.json").read_text())
            for k in ("examples", "steps", "migrations", "refusals", "crashed", "hung",
                      "resets"):
                totals[k] += summary.get(k, 0)
            elapsed += summary.get("elapsed_s", 0)
            hard.update(summary.get("hard_states_at_migration", {}))
            at_reset.update(summary.get("hard_states_at_reset", {}))
            for f in summary.get("findings", []):
                ident = f.get("identity", f["signature"])
                old = findings.get(ident)
                if old is None or f["steps"] < old["steps"]:
                    findings[ident] = {**f, "identity": ident, "campaign": s["campaign"],
                                       "slice": s["index"]}
        if (d / "timeline.jsonl").exists():
            for line in (d / "timeline.jsonl").read_text().splitlines():
                try:
                    timeline.append({**json.loads(line), "slice": s["index"]})
                except ValueError:
                    continue                      # a line cut short by a kill
        # ``nvmefuzz fuzz --out d`` writes raw traces to d/runs/<campaign>-<profile>-seed<N>/raw
        for raw in sorted(d.glob("runs/*/raw/*.cbor")):
            if raw.name.startswith(".tmp-"):      # a write cut short by a kill
                continue
            try:
                tr = corpus_mod.load(raw)
            except Exception:                     # noqa: BLE001 - a report never dies on one file
                continue
            sig = tr.verdict.signature
            # seen but not reported: the slice was killed, or Hypothesis passed over it
            # while shrinking another failure; the raw trace is its only record
            if not any(f["signature"] == sig for f in findings.values()):
                shrunk = corpus_mod.path_for(Path(state["meta"]["corpus"]), tr)
                try:                              # shrunk and stored before the kill?
                    steps, trace = len(corpus_mod.load(shrunk).steps), str(shrunk)
                except Exception:                 # noqa: BLE001
                    steps, trace = len(tr.steps), None
                cause = root_cause(tr)
                findings[sig] = {"class": tr.verdict.kind, "signature": sig, "identity": sig,
                                 "steps": steps,
                                 "trace": trace, "raw_trace": str(raw),
                                 "cause": cause.to_plain() if cause else None,
                                 "lost": lost_lines(tr, cause),
                                 "detail": tr.verdict.detail, "campaign": s["campaign"],
                                 "slice": s["index"]}
        slices.append({**s, "summary": summary})
    for f in findings.values():
        f["new"] = f["identity"] not in known
        path = f.get("trace") or f.get("raw_trace")
        f["repro"] = [f"nvmefuzz repro {path}",
                      f"nvmefuzz repro {path} --emit-pytest test_repro.py"] if path else []
        try:
            f["listing"] = listing(corpus_mod.load(Path(path))) if path else ""
        except Exception:                         # noqa: BLE001
            f["listing"] = ""
    workers = max(1, state["meta"]["workers"])
    wall = elapsed / workers if elapsed else 0.0
    totals_d = dict(totals)
    totals_d["steps_per_s"] = round(totals["steps"] / wall, 1) if wall else 0.0
    totals_d["migrations_per_s"] = round(totals["migrations"] / wall, 1) if wall else 0.0
    regress = [r for r in corpus_rows if r["status"] in ("changed", "fixed")]
    errors = [r for r in corpus_rows if r["status"] == "error"]
    failed = [s for s in state["slices"] if s["status"] != "done"]
    new = [f for f in findings.values() if f["new"]]
    exit_code = 2 if (failed or errors) else 1 if (new or regress) else 0
    return {
        "meta": state["meta"], "exit": exit_code, "totals": totals_d,
        "hard_states": dict(hard), "hard_states_at_reset": dict(at_reset), "slices": slices,
        "findings": sorted(findings.values(), key=lambda f: f["signature"]),
        "corpus": {"total": len(corpus_rows), "regressions": len(regress),
                   "errors": len(errors), "rows": corpus_rows},
        "coverage": _coverage(folder), "timeline": timeline,
    }


def junit(summary: dict) -> str:
    root = ET.Element("testsuites", name="nvmefuzz nightly")
    corpus_suite = ET.SubElement(root, "testsuite", name="corpus",
                                 tests=str(summary["corpus"]["total"]))
    for r in summary["corpus"]["rows"]:
        case = ET.SubElement(corpus_suite, "testcase", classname="corpus", name=r["path"])
        if r["status"] == "error":
            ET.SubElement(case, "error", message=r["detail"][:500])
        elif r["status"] != "as expected":
            ET.SubElement(case, "failure", message=f"expected {r['expected']}, now {r['now']}")
    camp_suite = ET.SubElement(root, "testsuite", name="campaigns",
                               tests=str(len(summary["slices"])))
    by_slice: dict[int, list] = {}
    for f in summary["findings"]:
        if f["new"]:
            by_slice.setdefault(f["slice"], []).append(f)
    for s in summary["slices"]:
        case = ET.SubElement(camp_suite, "testcase", classname="campaign",
                             name=f"{s['campaign']}[{s['index']}]",
                             time=str(s["summary"].get("elapsed_s", 0)))
        if s["status"] != "done":
            ET.SubElement(case, "error", message=s["detail"][:500] or s["status"])
        for f in by_slice.pop(s["index"], []):
            fail = ET.SubElement(case, "failure", message=f.get("identity", f["signature"]),
                                 type=f["class"])
            fail.text = f"{f['detail']}\n" + "\n".join(f["repro"])
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def plots(summary: dict, history: list[dict]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    tl = sorted(summary["timeline"], key=lambda r: r.get("at", r["t"]))
    if tl:
        t0 = tl[0].get("at", tl[0]["t"])
        fig, ax = plt.subplots(1, 2, figsize=(9, 3))
        per: dict[int, dict] = {}
        xs, mig, fnd = [], [], []
        for r in tl:
            per[r["slice"]] = r
            xs.append(r.get("at", r["t"]) - t0)
            mig.append(sum(p["migrations"] for p in per.values()))
            fnd.append(sum(p["findings"] for p in per.values()))
        ax[0].plot(xs, mig)
        ax[0].set(title="migrations tonight", xlabel="s")
        ax[1].step(xs, fnd, where="post")
        ax[1].set(title="findings tonight", xlabel="s")
        out.append(("tonight", _png(fig)))
        plt.close(fig)
    if history:
        fig, ax = plt.subplots(1, 3, figsize=(11, 3))
        nights = list(range(len(history)))
        for a, key, title in zip(ax, ("findings", "coverage", "migrations"),
                                 ("findings", "model coverage %", "migrations")):
            a.plot(nights, [n.get(key) or 0 for n in history], marker="o")
            a.set(title=f"{title} per night", xlabel="night")
        out.append(("over nights", _png(fig)))
        plt.close(fig)
    return out


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{h.escape(str(x))}</th>" for x in headers)
    body = "".join("<tr>" + "".join(f"<td>{h.escape(str(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


CSS = """body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;
margin:.5em 0}td,th{border:1px solid #bbb;padding:.2em .5em;text-align:left}
.bad{color:#b00}.ok{color:#070}pre{background:#f4f4f4;padding:.5em;overflow-x:auto}
p{overflow-wrap:anywhere}"""


def causes(findings: list[dict]) -> dict[str, list[dict]]:
    """Findings grouped by root cause key (``fuzz.cause``), most findings first."""
    groups: dict[str, list[dict]] = {}
    for f in findings:
        cause = f.get("cause")
        groups.setdefault(cause["key"] if cause else NOT_REPLAYABLE,
                          []).append(f)
    return dict(sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])))


def html(summary: dict, images: list[tuple[str, str]]) -> str:
    m, t = summary["meta"], summary["totals"]
    verdict = {0: ("clean", "ok"), 1: ("new findings", "bad"), 2: ("harness error", "bad")}
    word, cls = verdict[summary["exit"]]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>nvmefuzz nightly "
             f"{h.escape(m['started'])}</title><style>{CSS}</style></head><body>",
             f"<h1>nvmefuzz nightly {h.escape(m['started'])}: "
             f"<span class='{cls}'>{word}</span></h1>",
             f"<p>{m['workers']} workers, {m['seconds']} s, target {m['target'] or 'model'}, "
             f"shard {m['shard'][0]}/{m['shard'][1]}</p>", "<h2>Throughput</h2>",
             _table(list(t), [list(t.values())]), "<h2>Findings</h2>"]
    groups = causes(summary["findings"])
    if groups:
        parts += [f"<p>{len(summary['findings'])} findings, {len(groups)} root causes:</p>",
                  _table(["root cause", "findings", "new", "signatures"],
                         [[key, len(fs), sum(f["new"] for f in fs),
                           ", ".join(f["signature"] for f in fs)]
                          for key, fs in groups.items()])]
    if not summary["findings"]:
        parts.append("<p class='ok'>none</p>")
    for f in summary["findings"]:
        tag = "new" if f["new"] else "known"
        cause = f.get("cause")
        parts += [f"<h3 class='{'bad' if f['new'] else ''}'>{h.escape(f['signature'])} "
                  f"({tag}, {f['class']}, {f['steps']} steps, campaign "
                  f"{h.escape(f['campaign'])})</h3>",
                  f"<p>First divergence: {h.escape(f['detail'])}</p>",
                  f"<p>Root cause (on {h.escape(cause['profile'])}): "
                  f"{h.escape(cause['describe'])}</p>" if cause else "",
                  "<ul class='lost'>" + "".join(f"<li>{h.escape(line)}</li>"
                                                for line in f.get("lost", ())) + "</ul>"
                  if f.get("lost") else "",
                  f"<pre>{h.escape(f['listing'])}</pre>",
                  "<p>Reproduce:</p><pre>" + h.escape("\n".join(f["repro"])) + "</pre>"]
    parts += ["<h2>Hard states reached at migration</h2>",
              _table(["state", "migrations"], sorted(summary["hard_states"].items())),
              f"<h2>Hard states met by resets</h2><p>{summary['totals'].get('resets', 0)} "
              "resets (disable or shutdown)</p>",
              _table(["state", "resets"],
                     sorted(summary.get("hard_states_at_reset", {}).items())),
              "<h2>Campaigns</h2>",
              _table(["#", "campaign", "seed", "status", "examples", "steps", "migrations",
                      "findings"],
                     [[s["index"], s["campaign"], s["seed"], s["status"],
                       s["summary"].get("examples", "-"), s["summary"].get("steps", "-"),
                       s["summary"].get("migrations", "-"),
                       len(s["summary"].get("findings", []))] for s in summary["slices"]]),
              "<h2>Corpus replay</h2>",
              f"<p>{summary['corpus']['total']} traces, {summary['corpus']['regressions']} "
              f"regressions, {summary['corpus']['errors']} errors</p>",
              _table(["trace", "expected", "now", "status"],
                     [[r["path"], r["expected"], r["now"], r["status"]]
                      for r in summary["corpus"]["rows"]]),
              "<h2>Coverage of the model (coverage.py, branch)</h2>",
              f"<p>{summary['coverage']['percent']}%</p>",
              _table(["file", "%"], sorted(summary["coverage"]["files"].items())),
              "<h2>Plots</h2>"]
    for title, png in images:
        parts.append(f"<h3>{h.escape(title)}</h3><img alt='{h.escape(title)}' "
                     f"src='data:image/png;base64,{png}'>")
    parts.append("</body></html>")
    return "\n".join(parts)
