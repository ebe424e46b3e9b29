"""Observational equivalence: compare what the twin and the migrated controller showed.

``first_difference`` walks two observation lists and returns the first place they differ as
a stable label (``cqe/io/READ/status``, ``irq``, ``posted/io/count``) plus both values;
``Comparator.differences`` goes on past it and returns every place, the first one first.

For targets whose concurrent completions arrive in nondeterministic order, both sides are
first put through ``canonical_order``, which forgets the order of completions the guest saw
in one look, and the comparator is given a ``reorder.Ledger``, which carries a completion
one side showed or consumed a step earlier than the other over to later steps, as long as the
other side may legally still hold it (see ``fuzz/reorder.py``).  Deterministic targets (the
model) are compared strictly, step by step.

Waivers suppress documented limitations.  A waiver names the label prefix it covers, its
reason and its source; ``Comparator`` counts every suppression so the summary shows them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

import attrs

from nvmefuzz.fuzz.actions import Observation
from nvmefuzz.fuzz.reorder import HostView, Ledger
from nvmefuzz.protocol.structures import ID_CTRL, ID_NS, SMART_LOG


@attrs.frozen
class Waiver:
    name: str
    reason: str
    source: str
    #: observation labels it may suppress (prefix match)
    labels: tuple[str, ...]
    #: further condition on (twin value, migrated value); None means any difference
    when: Callable[[Any, Any], bool] | None = None

    def covers(self, label: str, twin: Any, mig: Any) -> bool:
        return any(label.startswith(p) for p in self.labels) and (
            self.when is None or self.when(twin, mig))


def _extra_interrupts_only(twin: Any, mig: Any) -> bool:
    """The migrated side raised every interrupt the twin did, plus spurious ones."""
    t = Counter((twin or {}).get("events", ()))
    m = Counter((mig or {}).get("events", ()))
    return not (t - m)


#: SMART / Health log bytes holding the I/O counters (Data Units Read and Written, Host Read
#: and Write Commands)
SMART_COUNTERS = (32, 96)


def _smart_counters_only(twin: Any, mig: Any) -> bool:
    """Only SMART I/O counter bytes differ, and the rest of the completion agrees (the data
    starts at byte ``at`` of the log: the Get Log Page's offset)."""
    if not twin or not mig or "data" not in twin or "data" not in mig:
        return False
    a, b = twin["data"], mig["data"]
    rest = lambda f: {k: v for k, v in f.items() if k != "data"}  # noqa: E731
    if len(a) != len(b) or rest(twin) != rest(mig):
        return False
    at, (lo, hi) = twin.get("at", 0), SMART_COUNTERS
    return all(lo <= at + i < hi for i, (x, y) in enumerate(zip(a, b)) if x != y)


WAIVERS: dict[str, Waiver] = {w.name: w for w in (
    Waiver("spurious-interrupt", "a restored CQ that is non-empty is signalled again after "
           "load (QEMU's post_load schedules the CQ bottom half, which asserts the vector "
           "when tail != head); hosts must tolerate spurious interrupts",
           "QEMU hw/nvme nvme_ctrl_post_load + nvme_post_cqes; NVMe Base 3.1.1 interrupts",
           ("irq",), _extra_interrupts_only),
    Waiver("smart-io-counters", "QEMU does not migrate the SMART I/O counters (they come "
           "from the block layer's BlockAcctStats, which start at zero in the destination)",
           "cover letter of the series merged as QEMU commit 9d378cab ('[PATCH 0/4] [RFC] "
           "hw/nvme: add basic live migration support', qemu-devel 2026-02-17, limitations: "
           "'SMART counters are not preserved'); QEMU docs, nvme known issues: 'The accounting "
           "numbers in the SMART/Health are reset across power cycles'",
           ("cqe/admin/GET_LOG_PAGE/lid=0x02/data",), _smart_counters_only),
)}

#: waivers always in force on a target kind: its documented migration limitations
TARGET_WAIVERS: dict[str, tuple[str, ...]] = {"qemu": ("smart-io-counters",)}


#: structures returned as data, by label, so a data difference names its first field
DATA_LAYOUTS = {"lid=0x02": SMART_LOG, "cns=0x01": ID_CTRL, "cns=0x00": ID_NS}


def _data_field(label: str, a: bytes, b: bytes, base: int = 0) -> str:
    """The first differing field of data that starts at byte ``base`` of its structure, or
    that byte's offset in the structure.  Blocks an I/O command read have no structure:
    which of them differs first says nothing about what was lost, so their data is one
    field (one loss, one signature, wherever the blocks read start)."""
    if label.startswith("cqe/io/"):
        return "data"
    at = base + next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    layout = next((lay for key, lay in DATA_LAYOUTS.items() if f"/{key}" in label), ())
    for name, off, size in layout:
        if off <= at < off + size:
            return f"data.{name}"
    return f"data@{at:#x}"


def _diff_fields(label: str, a: dict, b: dict) -> str:
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            if key == "data" and isinstance(a.get(key), bytes) and isinstance(b.get(key), bytes):
                return _data_field(label, a[key], b[key], a.get("at", 0))
            return key
    return ""


@attrs.frozen
class Difference:
    """Where two observation lists first differ; ``drop`` says which entries to skip past."""

    label: str
    twin: Any
    mig: Any
    drop_twin: bool
    drop_mig: bool


def first_difference(twin: list[Observation], mig: list[Observation]) -> Difference | None:
    for i in range(max(len(twin), len(mig))):
        t = twin[i] if i < len(twin) else None
        m = mig[i] if i < len(mig) else None
        if t == m:
            continue
        if t is not None and m is not None and t[0] == m[0]:
            return Difference(f"{t[0]}/{_diff_fields(t[0], t[1], m[1])}", t[1], m[1], True, True)
        if m is not None and all(o[0] != m[0] for o in twin[i:]):
            return Difference(f"{m[0]}/extra", None, m[1], False, True)
        if t is not None and all(o[0] != t[0] for o in mig[i:]):
            return Difference(f"{t[0]}/missing", t[1], None, True, False)
        return Difference(f"{(t or m)[0]}/order", t and t[1], m and m[1], True, True)
    return None


#: completion fields that depend on the slot a completion landed in, not on the completion
POSITIONAL = frozenset({"sqhd", "phase"})


def canonical_order(obs: list[Observation]) -> list[Observation]:
    """Observations with completion order inside one step made irrelevant.

    For a target whose concurrent completions may arrive in any order, the guest can only
    tell the order of completions it saw in different looks (steps).  Within one step every
    completion it sees came from commands outstanding at the same time, so any order is
    legal: completions of a step are sorted by (SQID, CID), and the fields that belong to the
    slot rather than to the completion are dropped: SQHD (the SQ head when it was posted) and
    the phase tag (the host only reads entries whose phase is the one it expects at that
    slot, so a phase tells nothing the count of entries does not).  Completions seen in
    different steps keep their order; ``reorder.Ledger`` deals with those.
    """
    out: list[Observation] = []
    run: list[Observation] = []

    def flush() -> None:
        run.sort(key=lambda o: (o[1]["sqid"], o[1]["cid"], o[0]))
        out.extend((label, {k: v for k, v in f.items() if k not in POSITIONAL})
                   for label, f in run)
        run.clear()

    for label, fields in obs:
        if label.startswith("cqe/"):
            run.append((label, fields))
            continue
        flush()
        if label.startswith("posted/"):
            cqes = sorted(fields["cqes"], key=lambda c: (c.sqid, c.cid))
            fields = {**fields, "cqes": tuple((c.sqid, c.cid, c.status, c.dw0, c.dw1)
                                              for c in cqes)}
        out.append((label, fields))
    flush()
    return out


@attrs.define
class Comparator:
    waivers: tuple[Waiver, ...] = ()
    suppressed: Counter = attrs.Factory(Counter)
    #: carries completions across steps (targets without a deterministic order); None: strict
    ledger: Ledger | None = None

    def check(self, twin: list[Observation], mig: list[Observation],
              views: tuple[HostView, HostView] | None = None) -> Difference | None:
        """The first unwaived difference, or None (``differences``)."""
        found = self.differences(twin, mig, views)
        return found[0] if found else None

    def differences(self, twin: list[Observation], mig: list[Observation],
                    views: tuple[HostView, HostView] | None = None) -> list[Difference]:
        """Every unwaived difference, in order (empty: the two agree); waived differences are
        counted.  After a difference the entries it names are skipped and the walk goes on,
        so a step that lost a completion shows both its missing interrupt and its CQE.

        With a ledger, ``views`` (what the twin's and the migrated host know after the step)
        are required and both lists must be in ``canonical_order``."""
        if self.ledger is not None:
            if views is None:
                raise TypeError("a comparator with a ledger needs both hosts' views")
            twin, mig = self.ledger.reconcile(twin, mig, *views)
        found: list[Difference] = []
        while (diff := first_difference(twin, mig)) is not None:
            waiver = next((w for w in self.waivers
                           if w.covers(diff.label, diff.twin, diff.mig)), None)
            if waiver is None:
                found.append(diff)
            else:
                self.suppressed[waiver.name] += 1
            i = next(k for k in range(max(len(twin), len(mig)))
                     if k >= len(twin) or k >= len(mig) or twin[k] != mig[k])
            twin = twin[:i] + twin[i + 1:] if diff.drop_twin else twin
            mig = mig[:i] + mig[i + 1:] if diff.drop_mig else mig
        return found
