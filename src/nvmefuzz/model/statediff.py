"""Where two captured controller states differ, and a state with some paths taken from another.

How it works
------------
States are what ``model.snapshot.capture`` gives: plain values keyed by schema path.  Paths at
the top level compare as a whole (``inflight``, ``features.err_rec``).  The queue lists
compare field by field when both sides hold the same queues, so a difference is named
``cq.waiting`` or ``sq.head``; when a queue is missing or extra on one side it is the whole
list (``cq``).  ``differences`` gives the values behind those names, per queue
(``cq[0].tail``: 3 on one side, 0 on the other).

``merge`` goes the other way: a state as a snapshot decodes it (queue records hold their id
and the fields the profile saved) with each of ``paths`` set to its value in ``truth`` (a
captured state); queues only ``truth`` holds come whole (with the CQ such an SQ needs, and
the SQ a repaired request is on), queues only ``state`` holds go.  Loading that is what a
design which also saved those paths would have loaded; ``fuzz.cause`` uses it to ask which
lost paths a finding needs.
"""

from __future__ import annotations

from typing import Any, Iterable

import cbor2

from nvmefuzz.model.snapshot import CQ_FIELDS, SQ_FIELDS

#: queue list path -> (its records' id key, its fields in schema order)
QUEUES: dict[str, tuple[str, tuple[str, ...]]] = {
    "sq": ("sqid", tuple(SQ_FIELDS)), "cq": ("cqid", tuple(CQ_FIELDS)),
}


def _by_id(records: Any, id_key: str) -> dict[int, dict]:
    if not isinstance(records, list):
        return {}
    return {r.get(id_key): r for r in records if isinstance(r, dict)}


def differing(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The schema paths on which captured state ``b`` differs from ``a``, in ``a``'s order."""
    out: list[str] = []
    for path, value in a.items():
        other = b.get(path)
        if other == value:
            continue
        queue = QUEUES.get(path)
        if queue is None or other is None:
            out.append(path)
            continue
        id_key, fields = queue
        qa, qb = _by_id(value, id_key), _by_id(other, id_key)
        if qa.keys() != qb.keys():
            out.append(path)
            continue
        out.extend(f"{path}.{f}" for f in fields
                   if any(qa[q].get(f) != qb[q].get(f) for q in qa))
    return out


def differences(a: dict[str, Any], b: dict[str, Any],
                paths: Iterable[str]) -> list[tuple[str, Any, Any]]:
    """Where exactly ``b`` differs from ``a`` on ``paths`` (``differing``'s names): (where,
    value in ``a``, value in ``b``), a queue field per queue (``cq[0].tail``), a queue only
    one side holds as the whole record (None on the other side)."""
    out: list[tuple[str, Any, Any]] = []
    for path in paths:
        queue_field = _queue_field(path)
        head = queue_field[0] if queue_field else path
        if head not in a and head not in b:
            continue                          # not a state path (the final RAM pass)
        if head not in QUEUES:
            if a.get(path) != b.get(path):
                out.append((path, a.get(path), b.get(path)))
            continue
        id_key = QUEUES[head][0]
        qa, qb = _by_id(a.get(head), id_key), _by_id(b.get(head), id_key)
        for q in sorted(qa.keys() | qb.keys()):
            ra, rb = qa.get(q), qb.get(q)
            if queue_field and ra is not None and rb is not None:
                field = queue_field[1]
                if ra.get(field) != rb.get(field):
                    out.append((f"{head}[{q}].{field}", ra.get(field), rb.get(field)))
            elif ra != rb and (ra is None or rb is None or not queue_field):
                out.append((f"{head}[{q}]", ra, rb))
    return out


def _queue_field(path: str) -> tuple[str, str] | None:
    head, _, field = path.partition(".")
    if head in QUEUES and field in QUEUES[head][1]:
        return head, field
    return None


def _plain(value: Any) -> Any:
    """``value`` as a snapshot carries it (a captured status is an IntEnum; a blob's an int)."""
    return cbor2.loads(cbor2.dumps(value))


def merge(state: dict[str, Any], truth: dict[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    """``state`` with ``paths`` (``differing``'s names) taken from ``truth``; ``state`` is not
    changed.  A queue field is set on every queue of ``truth``: a queue ``state`` does not
    hold at all (a design that saves no admin queues) comes whole from ``truth``, and so does
    the CQ of an SQ that comes whole."""
    out = dict(state)
    for path in paths:
        queue_field = _queue_field(path)
        if queue_field is None:
            if path in truth:
                out[path] = _plain(truth[path])
            continue
        head, field = queue_field
        id_key = QUEUES[head][0]
        right = _by_id(_plain(truth.get(head)), id_key)
        have = _by_id(out.get(head), id_key)
        out[head] = [{**have[q], field: rec[field]} if q in have else rec
                     for q, rec in right.items()]
    _complete(out, truth)
    return out


def _complete(out: dict[str, Any], truth: dict[str, Any]) -> None:
    """Bring whole from ``truth`` the SQs the requests in ``out`` are on, the admin SQ when
    ``out`` holds either admin queue, and the CQs its SQs post to, where ``out`` lacks them
    (a design that saves no admin queues)."""
    reqs = [r for path in ("inflight", "aer_reqs") if isinstance(out.get(path), list)
            for r in out[path]]
    reqs += [r for q in out.get("cq") or () if isinstance(q, dict)
             for r in q.get("waiting") or ()]
    admin = any(0 in _by_id(out.get(k) or [], QUEUES[k][0]) for k in QUEUES)
    for kind, id_key, need in (     # the admin queues are a pair: enabling creates both
            ("sq", "sqid", lambda: {r.get("sqid") for r in reqs if isinstance(r, dict)}
             | ({0} if admin else set())),
            ("cq", "cqid", lambda: {q.get("cqid") for q in out.get("sq") or ()
                                    if isinstance(q, dict)})):
        if not isinstance(truth.get(kind), list):
            continue
        have = _by_id(out.get(kind) or [], id_key)
        want = need() - have.keys()
        if want:
            out[kind] = [*have.values(),
                         *(_plain(q) for q in truth[kind] if q[id_key] in want)]


__all__ = ["QUEUES", "differences", "differing", "merge"]
