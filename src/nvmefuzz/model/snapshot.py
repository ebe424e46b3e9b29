"""Snapshot and restore: the controller's state as a schema, filtered by a migration profile.

How it works
------------
``SCHEMA`` names every piece of controller state once, as a dotted path with its type:
top-level scalars (``cc``, ``features.temp_thresh_hi``), lists (``aer_queue``), and the
per-queue records ``sq`` and ``cq`` whose fields are ``sq.head``, ``cq.waiting`` and so on.
``capture`` reads the full state into plain values (ints, bools, bytes, lists, str-keyed maps).
A profile saves a subset of the paths; ``snapshot`` keeps exactly that subset and encodes it as
canonical CBOR inside a versioned envelope.

``restore`` starts from a freshly powered-on controller (every field at its power-on value)
and applies what the blob carries, validating every value on the way: a truncated, corrupted
or hostile blob raises ``SnapshotError`` and nothing else, and never yields a controller the
model's code could trip over (a queue pointing at a missing CQ, a head past the end, ...).
Derived state (an SQ's request objects in use) is recomputed, never trusted from the blob.
"""

from __future__ import annotations

import operator
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable

import attrs
import cbor2

from nvmefuzz.errors import FormatError, SnapshotError
from nvmefuzz.model.controller import Controller
from nvmefuzz.model.state import AsyncEvent, CompletionQueue, Config, Request, SubmissionQueue
from nvmefuzz.protocol import queues
from nvmefuzz.protocol.queues import SQE, SQE_SIZE
from nvmefuzz.protocol.spec import AdminOpcode

if TYPE_CHECKING:
    from nvmefuzz.model.memory import GuestMemory, NamespaceStore
    from nvmefuzz.model.profiles.base import Profile

FORMAT = "nvmefuzz-snapshot"
VERSION = 1

U8, U16, U32, U64 = (1 << 8) - 1, (1 << 16) - 1, (1 << 32) - 1, (1 << 64) - 1
BOOL, REQUESTS, EVENTS, NSIDS, BYTES512 = "bool", "requests", "events", "nsids", "bytes512"
INT32 = "int32"

#: controller scalars and lists: path -> kind (an int is the maximum of an unsigned field)
TOP: dict[str, Any] = {
    "cap": U64, "vs": U32, "intms": U32, "cc": U32, "csts": U32, "nssr": U32, "aqa": U32,
    "asq": U64, "acq": U64, "page_size": U32, "qs_created": BOOL,
    "inflight": REQUESTS, "aer_reqs": REQUESTS, "aer_queue": EVENTS, "aer_mask": U8,
    "features.temp_thresh_hi": U16, "features.temp_thresh_lo": U16,
    "features.async_config": U32, "features.err_rec": U32, "features.write_cache": BOOL,
    "features.write_atomicity_dn": U8, "features.host_behavior": BYTES512,
    "features.host_timestamp": U64, "features.timestamp_set_ms": U64,
    "temperature": U16, "smart_critical_warning": U8, "starttime_ms": U64,
    "data_units_read": U64, "data_units_written": U64, "host_reads": U64, "host_writes": U64,
    "changed_nsids": NSIDS, "dbbuf_enabled": BOOL, "dbbuf_dbs": U64, "dbbuf_eis": U64,
    "irq_status": U32, "cq_pending": INT32, "intx": BOOL, "dmrsl": U32,
}
SQ_FIELDS: dict[str, Any] = {"cqid": U16, "base": U64, "size": U32, "head": U16, "tail": U16}
CQ_FIELDS: dict[str, Any] = {"base": U64, "size": U32, "ien": BOOL, "vector": U16,
                             "head": U16, "tail": U16, "phase": BOOL, "waiting": REQUESTS}
#: what a queue field is on a freshly created queue (or zero when a queue has no such value)
QUEUE_DEFAULTS = {"head": 0, "tail": 0, "phase": True, "waiting": [], "ien": False}

SCHEMA: tuple[str, ...] = (
    *TOP, "sq", *(f"sq.{k}" for k in SQ_FIELDS), "cq", *(f"cq.{k}" for k in CQ_FIELDS),
)


# ---------------------------------------------------------------------- capture
# Speed: every map ``capture`` builds has its keys in canonical CBOR order (shorter first, then
# bytewise) and ``select`` keeps that order, so ``encode`` can skip cbor2's canonical sorting
# for ``select``'s output (about 1.7 us per map) and still write the same bytes.
def _canonical_order(keys: Any) -> tuple[str, ...]:
    """Text keys in the order canonical CBOR sorts map keys."""
    return tuple(sorted(keys, key=lambda k: (len(k.encode()), k.encode())))


class _Captured(dict):
    """``capture``'s output: every map inside is in canonical key order."""


class _Selected(dict):
    """``select`` of a ``_Captured`` state: still in canonical key order throughout."""


#: (path, kind, getter) for the state's keys in canonical order; sq/cq have no getter
_CAPTURE = tuple((p, TOP.get(p), operator.attrgetter(p) if p in TOP else None)
                 for p in _canonical_order((*TOP, "sq", "cq")))


def _req(r: Request) -> dict:
    # keys in canonical order
    return {"due": r.due, "dw0": r.dw0, "dw1": r.dw1, "sqe": r.sqe.encode(), "sqid": r.sqid,
            "status": r.status}


def capture(ctrl: Controller) -> dict[str, Any]:
    """The whole state of ``ctrl`` as plain values keyed by schema path."""
    out = _Captured()
    for path, kind, get in _CAPTURE:
        if get is None:
            if path == "sq":               # record keys in canonical order
                value = [{"base": q.base, "cqid": q.cqid, "head": q.head, "size": q.size,
                          "sqid": q.sqid, "tail": q.tail} for q in ctrl.sqs.values()]
            else:
                value = [{"ien": bool(q.ien), "base": q.base, "cqid": q.cqid, "head": q.head,
                          "size": q.size, "tail": q.tail, "phase": bool(q.phase),
                          "vector": q.vector, "waiting": [_req(r) for r in q.waiting]}
                         for q in ctrl.cqs.values()]
        else:
            value = get(ctrl)
            if kind == REQUESTS:
                value = [_req(r) for r in value]
            elif kind == EVENTS:
                value = [[e.type, e.info, e.log_page] for e in value]
            elif kind == NSIDS:
                value = list(value)
            elif kind == BOOL:
                value = bool(value)
        out[path] = value
    return out


def select(state: dict[str, Any], saves: frozenset[str]) -> dict[str, Any]:
    """Keep the paths a profile saves (queue records keep their id plus saved fields)."""
    out = _Selected() if type(state) is _Captured else {}
    for k, v in state.items():
        if k not in saves:
            continue
        if k in ("sq", "cq"):
            fields = SQ_FIELDS if k == "sq" else CQ_FIELDS
            keep = {f for f in fields if f"{k}.{f}" in saves}
            if len(keep) < len(fields) or type(state) is not _Captured:   # else: as they are
                keep.add(f"{k}id")
                v = [{f: x for f, x in rec.items() if f in keep} for rec in v]
        out[k] = v
    return out


@lru_cache(maxsize=16)
def _config_plain(config: Config) -> dict:
    plain = config.to_plain()
    return {k: plain[k] for k in _canonical_order(plain)}


def encode(profile_name: str, config: Config, state: dict[str, Any]) -> bytes:
    if type(state) is _Selected:           # already canonical: same bytes, no sorting
        return cbor2.dumps({"state": state, "config": _config_plain(config), "format": FORMAT,
                            "profile": profile_name, "version": VERSION})
    envelope = {"format": FORMAT, "version": VERSION, "profile": profile_name,
                "config": config.to_plain(), "state": state}
    return cbor2.dumps(envelope, canonical=True)


def snapshot(ctrl: Controller, profile: Profile) -> bytes:
    """Save ``ctrl`` as ``profile`` does; raises ``MigrationRefused`` if the profile refuses."""
    profile.pre_save(ctrl)
    return profile.encode(ctrl)


# ---------------------------------------------------------------------- restore
def decode(blob: bytes) -> dict[str, Any]:
    """The envelope of a snapshot blob, checked for format and version."""
    try:
        envelope = cbor2.loads(blob)
    except Exception as exc:  # cbor2 raises several unrelated types on junk input
        raise SnapshotError(f"snapshot is not valid CBOR: {exc}") from None
    if not isinstance(envelope, dict) or envelope.get("format") != FORMAT:
        raise SnapshotError("not an nvmefuzz snapshot (format tag missing)")
    if envelope.get("version") != VERSION:
        raise SnapshotError(f"snapshot version {envelope.get('version')!r}, "
                            f"this nvmefuzz reads {VERSION}")
    for key, kind in (("profile", str), ("config", dict), ("state", dict)):
        if not isinstance(envelope.get(key), kind):
            raise SnapshotError(f"snapshot field {key!r} missing or not a {kind.__name__}")
    return envelope


def _check(path: str, kind: Any, value: Any) -> Any:
    ok = (isinstance(value, bool) if kind == BOOL
          else isinstance(value, bytes) and len(value) == 512 if kind == BYTES512
          else type(value) is int and -(1 << 31) <= value < (1 << 31) if kind == INT32
          else type(value) is int and 0 <= value <= kind)
    if not ok:
        raise SnapshotError(f"{path}: {value!r} is not a valid value")
    return value


_SQE_UNPACK = queues._SQE.unpack
_SQE_FIELDS = tuple(a.name for a in attrs.fields(SQE))
_SQE_FAST = _SQE_FIELDS == ("opc", "cid", "nsid", "fuse", "psdt", "cdw2", "cdw3", "mptr",
                            "prp1", "prp2", "cdw10", "cdw11", "cdw12", "cdw13", "cdw14",
                            "cdw15")


def _sqe(raw: bytes) -> SQE:
    """``SQE.decode`` of a 64-byte entry, without re-running the width validators (speed:
    every field comes out of the fixed layout, so it fits its width by construction)."""
    if not _SQE_FAST:                      # the SQE class changed shape: the slow, sure way
        return SQE.decode(raw)
    opc, flags, cid, nsid, *rest = _SQE_UNPACK(raw)
    sqe = object.__new__(SQE)
    for name, value in zip(_SQE_FIELDS, (opc, cid, nsid, flags & 3, flags >> 6, *rest)):
        object.__setattr__(sqe, name, value)
    return sqe


_REQUEST_KEYS = frozenset(("sqid", "sqe", "status", "dw0", "dw1", "due"))
_STATUS_MAX = (1 << 15) - 1


def _requests(path: str, value: Any) -> list[Request]:
    if not isinstance(value, list):
        raise SnapshotError(f"{path}: not a list")
    out = []
    for i, r in enumerate(value):
        if type(r) is not dict or r.keys() != _REQUEST_KEYS:
            raise SnapshotError(f"{path}[{i}]: not a request record")
        sqe, due = r["sqe"], r["due"]
        if type(sqe) is not bytes or len(sqe) != SQE_SIZE:
            raise SnapshotError(f"{path}[{i}].sqe: not a {SQE_SIZE}-byte SQE")
        sqid, status, dw0, dw1 = r["sqid"], r["status"], r["dw0"], r["dw1"]
        if not (type(sqid) is int and 0 <= sqid <= U16 and type(status) is int
                and 0 <= status <= _STATUS_MAX and type(dw0) is int and 0 <= dw0 <= U32
                and type(dw1) is int and 0 <= dw1 <= U32
                and (due is None or type(due) is int and 0 <= due <= U64)):
            where = f"{path}[{i}]"          # the slow way, for the message
            if due is not None:
                _check(f"{where}.due", U64, due)
            _check(f"{where}.sqid", U16, sqid)
            _check(f"{where}.status", _STATUS_MAX, status)
            _check(f"{where}.dw0", U32, dw0)
            _check(f"{where}.dw1", U32, dw1)
        out.append(Request(sqid, _sqe(sqe), status, dw0, dw1, due))
    return out


#: path -> (parent attribute or None, leaf attribute) where ``_top`` stores a value
_TOP_TARGET = {p: (p.split(".")[0], p.split(".")[1]) if "." in p else (None, p) for p in TOP}


def _top(ctrl: Controller, path: str, value: Any) -> None:
    kind = TOP[path]
    if type(kind) is int:                   # the common case: an unsigned field
        if not (type(value) is int and 0 <= value <= kind):
            _check(path, kind, value)
    elif kind == BOOL:
        if not (value is True or value is False):
            _check(path, kind, value)
    elif kind == REQUESTS:
        value = _requests(path, value)
    elif kind == EVENTS:
        if not isinstance(value, list) or len(value) > ctrl.config.aer_max_queued:
            raise SnapshotError(f"{path}: not an event list within aer_max_queued")
        value = [AsyncEvent(*(_check(f"{path}[{i}]", U8, x) for x in e))
                 if isinstance(e, list) and len(e) == 3
                 else _fail(f"{path}[{i}]: not an event") for i, e in enumerate(value)]
        if any(e.type > 7 for e in value):            # AET is 3 bits; aer_mask is a u8
            raise SnapshotError(f"{path}: an event type above 7")
    elif kind == NSIDS:
        if (not isinstance(value, list) or value != sorted(set(value))
                or not all(type(n) is int and 1 <= n <= ctrl.config.nn for n in value)):
            raise SnapshotError(f"{path}: not a sorted list of namespace ids")
        value = list(value)
    else:
        _check(path, kind, value)
    parent, leaf = _TOP_TARGET[path]
    setattr(ctrl if parent is None else getattr(ctrl, parent), leaf, value)


def _fail(msg: str):
    raise SnapshotError(msg)


#: per queue kind: (id key, record keys allowed, (field, kind, default, maximum) to read);
#: maximum is the unsigned bound, -1 for a bool, None for the request list (checked later)
_QUEUE_SPEC = {
    kind: (id_key, frozenset((id_key, *fields)),
           tuple((k, v, QUEUE_DEFAULTS.get(k, 0),
                  v if type(v) is int else -1 if v == BOOL else None)
                 for k, v in fields.items()))
    for kind, id_key, fields in (("sq", "sqid", SQ_FIELDS), ("cq", "cqid", CQ_FIELDS))
}


def _queues(ctrl: Controller, kind: str, records: Any) -> None:
    id_key, allowed, spec = _QUEUE_SPEC[kind]
    if not isinstance(records, list):
        raise SnapshotError(f"{kind}: not a list of queues")
    table = ctrl.sqs if kind == "sq" else ctrl.cqs
    table.clear()
    for i, rec in enumerate(records):
        where = f"{kind}[{i}]"
        if not isinstance(rec, dict) or not rec.keys() <= allowed:
            raise SnapshotError(f"{where}: not a queue record")
        qid = rec.get(id_key, -1)
        if not (type(qid) is int and 0 <= qid <= ctrl.config.max_ioqpairs):
            _check(f"{where}.{id_key}", ctrl.config.max_ioqpairs, qid)
        if qid in table:
            raise SnapshotError(f"{where}: queue {qid} appears twice")
        vals = {}
        for k, field_kind, default, maximum in spec:
            v = vals[k] = rec.get(k, default)
            if maximum is None:
                continue
            if not (type(v) is int and 0 <= v <= maximum if maximum >= 0
                    else v is True or v is False):
                _check(f"{where}.{k}", field_kind, v)
        if not 2 <= vals["size"] <= (4096 if qid == 0 else ctrl.config.mqes + 1):
            raise SnapshotError(f"{where}.size: {vals['size']} entries is impossible")
        if vals["head"] >= vals["size"] or vals["tail"] >= vals["size"]:
            raise SnapshotError(f"{where}: head/tail outside a {vals['size']}-entry queue")
        if kind == "sq":
            table[qid] = SubmissionQueue(qid, vals["cqid"], vals["base"], vals["size"],
                                         vals["head"], vals["tail"])
        else:
            # as Create I/O CQ: INTx has one vector (irq_status is a u32 bitmap of vectors)
            if vals["vector"] >= ctrl.config.msix_qsize or (
                    vals["vector"] and not ctrl.config.msix):
                raise SnapshotError(f"{where}.vector: {vals['vector']} out of range")
            table[qid] = CompletionQueue(qid, vals["base"], vals["size"], vals["ien"],
                                         vals["vector"], vals["head"], vals["tail"],
                                         int(vals["phase"]),
                                         _requests(f"{where}.waiting", vals["waiting"]))


def _consistency(ctrl: Controller) -> None:
    """Cross-field rules; recomputes each SQ's request objects in use."""
    for sq in ctrl.sqs.values():
        if sq.cqid not in ctrl.cqs or (sq.sqid == 0) != (sq.cqid == 0):
            raise SnapshotError(f"sq[{sq.sqid}]: completion queue {sq.cqid} is not valid")
        sq.used = 0
    for where, cqid, reqs in (("inflight", None, ctrl.inflight),
                              ("aer_reqs", None, ctrl.aer_reqs),
                              *((f"cq[{q.cqid}].waiting", q.cqid, q.waiting)
                                for q in ctrl.cqs.values())):
        inflight, aer = where == "inflight", where == "aer_reqs"
        for r in reqs:
            sq = ctrl.sqs.get(r.sqid)
            if sq is None:
                raise SnapshotError(f"{where}: request on missing sq {r.sqid}")
            if cqid is not None and sq.cqid != cqid:
                raise SnapshotError(f"{where}: request of sq {r.sqid} on the wrong CQ")
            # in flight: an I/O command with a due time; an AER: on the admin SQ, no due time
            if (inflight != (r.due is not None) or (inflight and r.sqid == 0)
                    or (aer and r.sqid != 0)):
                raise SnapshotError(f"{where}: request in an impossible state")
            if aer and r.sqe.opc != AdminOpcode.ASYNC_EVENT_REQUEST:
                raise SnapshotError("aer_reqs: holds a command that is not an AER")
            sq.used += 1
            if sq.used > sq.size:
                raise SnapshotError(f"sq[{sq.sqid}]: more requests than queue entries")
    if len(ctrl.aer_reqs) > ctrl.config.aerl + 1:
        raise SnapshotError("aer_reqs: more outstanding AERs than AERL allows")
    if ctrl.starttime_ms > ctrl.now // 1_000_000:     # SMART power-on hours would go negative
        raise SnapshotError("starttime_ms: the controller was powered on in the future")
    page = ctrl.page_size
    if page & (page - 1) or not 4096 <= page <= 65536:
        raise SnapshotError(f"page_size: {page} is not a supported page size")


def restore(blob: bytes, config: Config, profile: Profile, mem: GuestMemory | None = None,
            store: NamespaceStore | None = None, now: int = 0,
            patch: Callable[[dict], dict] | None = None) -> Controller:
    """A controller built from ``blob`` on a fresh one; raises only ``SnapshotError``.

    ``patch``, if given, edits the decoded state before it is applied (``model.statediff``)."""
    try:
        envelope = decode(blob)
        if envelope["profile"] != profile.name:
            raise SnapshotError(f"snapshot was made by profile {envelope['profile']!r}, "
                                f"not {profile.name!r}")
        if envelope["config"] != _config_plain(config):
            raise SnapshotError("snapshot was made by a differently configured controller")
        ctrl = Controller(config, mem, store, now)
        state = profile.decode_state(envelope["state"])
        if patch is not None and isinstance(state, dict):
            state = patch(state)
        if not isinstance(state, dict) or not set(state) <= set(TOP) | {"sq", "cq"}:
            raise SnapshotError("state holds unknown fields")
        for kind in ("cq", "sq"):
            if kind in state:
                _queues(ctrl, kind, state[kind])
        for path, value in state.items():
            if path in TOP:
                _top(ctrl, path, value)
        _consistency(ctrl)
        profile.post_load(ctrl)
        return ctrl
    except SnapshotError:
        raise
    except (FormatError, TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
        raise SnapshotError(f"snapshot does not describe a controller: {exc}") from None


__all__ = ["SCHEMA", "capture", "decode", "encode", "restore", "select", "snapshot"]
