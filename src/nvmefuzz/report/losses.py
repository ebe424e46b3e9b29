"""What each profile was found to lose: the corpus rendered as a markdown section.

Every stored finding becomes a row: its signature, what that means in NVMe terms (derived
from the observation label: ``GET_FEATURES/fid=0x04`` is the Temperature Threshold feature),
its root cause (``fuzz.cause``, found now on the model), the length of the shrunk trace and
its file.  ``scripts/profile-losses`` writes the result into the README between the
``<!-- losses -->`` markers.
"""

from __future__ import annotations

import re
from pathlib import Path

from nvmefuzz.fuzz.known import root_cause
from nvmefuzz.protocol.spec import FeatureId, LogId
from nvmefuzz.trace import corpus

CNS = {0: "Identify Namespace", 1: "Identify Controller", 2: "Active Namespace ID list"}
FIELDS = {"dw0": "its result (DW0)", "data": "the data it returned", "status": "its status",
          "sqhd": "its SQ head pointer", "cqes": "the completions posted",
          "presence": "whether it appeared", "extra": "an extra one", "missing": "one missing",
          "value": "its value", "events": "which interrupts fired", "phase": "its phase tag"}


def _selector(kind: str, value: int) -> str:
    try:
        if kind == "fid":
            return f"feature {FeatureId(value).name.replace('_', ' ').title()} ({value:02X}h)"
        if kind == "lid":
            return f"log page {LogId(value).name.replace('_', ' ').title()} ({value:02X}h)"
    except ValueError:
        pass
    if kind == "cns":
        return CNS.get(value, f"Identify CNS {value:02X}h")
    return f"{kind} {value:#x}"


def explain(signature: str) -> str:
    """A sentence for a signature, e.g. 'after migration, Get Features for ...'."""
    kind, _, label = signature.partition(":")
    if kind == "refused":
        return f"the design refuses to migrate: \"{label}\""
    if kind == "crashed":
        return f"the destination cannot load the state ({label})"
    if kind == "hung":
        return f"the migration never ends: {label}"
    parts = label.split("/")
    last = parts[-1]
    field = (f"the {last[5:].replace('_', ' ')} field of the data it returned"
             if last.startswith("data.") else FIELDS.get(last, last))
    if parts[0] == "cqe" and len(parts) >= 3:
        what = parts[2].replace("_", " ").title()
        m = re.fullmatch(r"(fid|lid|cns)=0x([0-9a-f]+)", parts[3]) if len(parts) > 4 else None
        if m:
            what += " for " + _selector(m.group(1), int(m.group(2), 16))
        if last == "missing":
            return f"after migration the {what} completion never arrives"
        if last == "extra":
            return f"after migration an extra {what} completion arrives"
        return f"{what} differs in {field} after migration"
    if parts[0] == "posted":
        return f"completions posted to {parts[1]} CQs differ ({field}) after migration"
    if parts[0] == "irq":
        return {"extra": "an interrupt fires after migration that the twin does not raise",
                "missing": "an interrupt the twin raises never fires after migration",
                }.get(last, f"interrupts differ after migration ({field})")
    if parts[0] == "reg":
        return f"register {parts[1]} reads differently after migration"
    return label


def section(root: Path) -> str:
    by_profile: dict[str, list] = {}
    for e in corpus.load_all(root):
        if e.trace is not None and not e.trace.verdict.ok:
            by_profile.setdefault(e.trace.profile, []).append(e)
    lines = []
    for profile in sorted(by_profile):
        lines += [f"### `{profile}`", "", "| finding | meaning | root cause | steps | trace |",
                  "|---|---|---|---|---|"]
        for e in sorted(by_profile[profile], key=lambda e: e.trace.verdict.identity):
            sig = e.trace.verdict.signature
            cause = root_cause(e.trace)
            lines.append(f"| `{sig}` | {explain(sig)} | {cause.key if cause else '-'} | "
                         f"{len(e.trace.steps)} | [{e.path.name}]({e.path.as_posix()}) |")
        lines.append("")
    return "\n".join(lines) if lines else "_(the corpus holds no findings yet)_\n"


def rewrite_readme(readme: Path, root: Path) -> None:
    text = readme.read_text()
    marker = "<!-- losses -->"
    head, sep, _ = text.partition(marker)
    if not sep:
        raise ValueError(f"{readme} has no {marker} marker")
    readme.write_text(head + marker + "\n\n" + section(root))
