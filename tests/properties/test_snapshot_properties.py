"""Properties of snapshot/restore over random host command streams.

A command stream is a list of small host operations (queue creation, I/O and admin commands,
AERs, doorbells and shadow doorbells, consuming completions, time passing, Set Features,
environment events) that ``Driver.apply`` runs through the real host driver against a
``ModelTarget``.  Every decision the driver makes (skip an operation, which CID, which
buffer) depends only on the host's own state, so two drivers in the same host state fed the
same stream make the same calls: that is what lets (b) run one continuation against the
original and the restored controller.

The rules checked:

* (a) under ``full``, snapshot -> restore -> snapshot gives the same bytes, at every step, and
  every profile writes canonical CBOR;
* (b) a restored controller is indistinguishable from the original afterwards (registers,
  guest memory, namespace, interrupts, harvested completions, final snapshot);
* (c) a damaged blob (bytes flipped, inserted, deleted, truncated) or a hostile but well-formed
  CBOR state either restores to a controller that keeps working, or raises ``SnapshotError``.
"""

from __future__ import annotations

import copy
from typing import Any

import cbor2
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from nvmefuzz.errors import MigrationHung, MigrationRefused, SnapshotError
from nvmefuzz.host import layout as L
from nvmefuzz.host.driver import Host, pattern_bytes
from nvmefuzz.model import profiles, snapshot as snap
from nvmefuzz.model.controller import Controller
from nvmefuzz.protocol import regs
from nvmefuzz.protocol.queues import SQE
from nvmefuzz.protocol.spec import AdminOpcode as A, FeatureId as F, IoOpcode as IO, LogId
from nvmefuzz.targets.base import TargetConfig
from nvmefuzz.targets.model import ModelTarget

FULL = profiles.get("full")
#: at least 200 examples; more under a longer profile (HYPOTHESIS_PROFILE=nightly)
SETTINGS = settings(max_examples=max(200, settings.default.max_examples), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
QIDS = (1, 2, 3)
#: (offset, size) of every BAR0 register a host can read
REGISTER_READS = ((0x00, 8), (0x08, 4), (0x0C, 4), (0x10, 4), (0x14, 4), (0x1C, 4),
                  (0x20, 4), (0x24, 4), (0x28, 8), (0x30, 8), (0x38, 4), (0x3C, 4))


# ---------------------------------------------------------------------- the stream driver
class Driver:
    """A host over a model target that runs stream operations and records what it saw."""

    def __init__(self, target: ModelTarget, host: Host | None = None) -> None:
        self.t = target
        self.h = host if host is not None else Host(target)
        self.seen: list[tuple] = []

    def clone_onto(self, target: ModelTarget) -> Driver:
        """A driver in this driver's host state, talking to ``target``."""
        return Driver(target, self.h.clone(target))

    def run(self, ops: list[tuple]) -> None:
        for op in ops:
            self.apply(op)

    def apply(self, op: tuple) -> None:
        getattr(self, f"op_{op[0]}")(*op[1:])

    # -- helpers
    def _submit(self, qid: int, sqe: SQE, ring: bool, **kw: Any) -> None:
        sq = self.h.sqs.get(qid)
        if sq is None or sq.free() == 0:
            return
        self.h.submit(qid, sqe, **kw)
        if ring:
            self.h.ring_sq(qid)
        self.t.advance(0)

    # -- operations
    def op_enable(self, asqs: int, acqs: int) -> None:
        self.seen.append(("csts", self.h.enable(asqs, acqs)))

    def op_create_cq(self, qid: int, size: int, ien: int, iv: int) -> None:
        self.t.mem_write(L.cq_base(qid), bytes(16 * size))
        sqe = SQE(A.CREATE_IO_CQ, cdw10=qid | (size - 1) << 16, cdw11=1 | ien << 1 | iv << 16,
                  prp1=L.cq_base(qid))
        self._submit(0, sqe, True, effect=("create_cq", qid, size))

    def op_create_sq(self, qid: int, cqid: int, size: int) -> None:
        sqe = SQE(A.CREATE_IO_SQ, cdw10=qid | (size - 1) << 16, cdw11=1 | cqid << 16,
                  prp1=L.sq_base(qid))
        self._submit(0, sqe, True, effect=("create_sq", qid, cqid, size))

    def op_delete_sq(self, qid: int) -> None:
        self._submit(0, SQE(A.DELETE_IO_SQ, cdw10=qid), True, effect=("delete_sq", qid))

    def op_delete_cq(self, qid: int) -> None:
        self._submit(0, SQE(A.DELETE_IO_CQ, cdw10=qid), True, effect=("delete_cq", qid))

    def op_io(self, qid: int, opc: int, slba: int, nlb: int, pattern: int, ring: bool) -> None:
        length, data, cdw10, cdw11, cdw12 = 0, None, 0, 0, 0
        if opc in (IO.READ, IO.WRITE, IO.COMPARE, IO.WRITE_ZEROES):
            cdw10, cdw12 = slba, nlb - 1
            if opc != IO.WRITE_ZEROES:
                length = nlb * 512
            if opc in (IO.WRITE, IO.COMPARE):
                data = pattern_bytes(pattern, length)
        elif opc == IO.DATASET_MANAGEMENT:
            data = bytes(4) + nlb.to_bytes(4, "little") + slba.to_bytes(8, "little")
            length, cdw11 = 16, 4
        sqe = SQE(opc, nsid=1, cdw10=cdw10, cdw11=cdw11, cdw12=cdw12)
        self._submit(qid, sqe, ring, data=data, length=length, returns_data=opc == IO.READ)

    def op_burst(self, qid: int, failing: int, valid: int) -> None:
        """Commands that fail at fetch (the host learns SQHD early) then valid reads, one
        doorbell: the way an SQ's request pool runs out with SQEs still pending."""
        for i in range(failing + valid):
            self._submit(qid, SQE(IO.READ, nsid=1 if i >= failing else 5, cdw10=i, cdw12=7),
                         False, length=4096, returns_data=True)
        self.op_ring_sq(qid)

    def op_admin(self, kind: str, arg: int, ring: bool) -> None:
        sqe, kw = _admin_command(kind, arg)
        self._submit(0, sqe, ring, **kw)

    def op_aer(self) -> None:
        self._submit(0, SQE(A.ASYNC_EVENT_REQUEST), True)

    def op_dbbuf(self) -> None:
        """Doorbell Buffer Config: from now on the host writes shadow doorbells."""
        self.t.mem_write(L.SHADOW_DB, bytes(L.PAGE))
        self.t.mem_write(L.EVENTIDX, bytes(L.PAGE))
        self._submit(0, SQE(A.DOORBELL_BUFFER_CONFIG, prp1=L.SHADOW_DB, prp2=L.EVENTIDX), True,
                     effect=("dbbuf", 0))

    def op_ring_sq(self, qid: int) -> None:
        if qid in self.h.sqs:
            self.h.ring_sq(qid)
            self.t.advance(0)

    def op_consume(self, qid: int, limit: int, ring: bool) -> None:
        done = self.h.harvest(qid, limit)
        for c in done:
            self.seen.append(("cqe", c.cqid, c.cqe, c.data, c.known))
        if done and ring:
            self.h.ring_cq(qid)
        self.t.advance(0)

    def op_ring_cq(self, qid: int) -> None:
        if qid in self.h.cqs:
            self.h.ring_cq(qid)
            self.t.advance(0)

    def op_advance(self, ns: int) -> None:
        self.t.advance(ns)

    def op_ns_changed(self, nsid: int) -> None:
        self.t.environment("ns_changed", nsid)

    def op_intms(self, set_mask: bool, bits: int) -> None:
        self.h.write_reg("INTMS" if set_mask else "INTMC", bits)
        self.t.advance(0)


def _admin_command(kind: str, arg: int) -> tuple[SQE, dict]:
    """An admin command of ``kind`` (``arg`` picks a variant) and its submit keywords."""
    if kind == "identify":
        return SQE(A.IDENTIFY, nsid=1, cdw10=(0, 1, 2, 3)[arg % 4]), {
            "length": 4096, "returns_data": True}
    if kind == "get_log":
        lid = (LogId.SMART_HEALTH, LogId.CHANGED_NS_LIST, LogId.ERROR_INFORMATION,
               LogId.COMMANDS_SUPPORTED_EFFECTS)[arg % 4]
        rae = (arg >> 2) & 1
        return SQE(A.GET_LOG_PAGE, nsid=0xFFFFFFFF, cdw10=lid | rae << 15 | (128 - 1) << 16), {
            "length": 512, "returns_data": True}
    if kind == "get_features":
        fid = (F.TEMPERATURE_THRESHOLD, F.ASYNC_EVENT_CONFIG, F.VOLATILE_WRITE_CACHE,
               F.TIMESTAMP, F.NUMBER_OF_QUEUES, F.WRITE_ATOMICITY, F.HOST_BEHAVIOR_SUPPORT,
               F.ERROR_RECOVERY)[arg % 8]
        nsid = 1 if fid == F.ERROR_RECOVERY else 0
        cdw11 = (1 << 20) if arg & 8 and fid == F.TEMPERATURE_THRESHOLD else 0
        return SQE(A.GET_FEATURES, nsid=nsid, cdw10=fid, cdw11=cdw11), {
            "length": 512 if fid == F.HOST_BEHAVIOR_SUPPORT else 8, "returns_data": True}
    if kind == "set_temp":       # thresholds around the composite temperature 0x143
        thsel, value = arg & 1, 0x130 + (arg >> 1) % 0x30
        return SQE(A.SET_FEATURES, cdw10=F.TEMPERATURE_THRESHOLD,
                   cdw11=value | thsel << 20), {}
    if kind == "set_async":
        return SQE(A.SET_FEATURES, cdw10=F.ASYNC_EVENT_CONFIG, cdw11=arg & 0x1FF), {}
    if kind == "set_vwc":
        return SQE(A.SET_FEATURES, cdw10=F.VOLATILE_WRITE_CACHE, cdw11=arg & 1), {}
    if kind == "set_err_rec":
        return SQE(A.SET_FEATURES, nsid=1, cdw10=F.ERROR_RECOVERY, cdw11=arg), {}
    if kind == "set_atomicity":
        return SQE(A.SET_FEATURES, cdw10=F.WRITE_ATOMICITY, cdw11=arg & 1), {}
    if kind == "set_timestamp":
        return SQE(A.SET_FEATURES, cdw10=F.TIMESTAMP), {
            "data": (arg * 1_000_003).to_bytes(8, "little"), "length": 8}
    if kind == "set_hbs":
        return SQE(A.SET_FEATURES, cdw10=F.HOST_BEHAVIOR_SUPPORT), {
            "data": pattern_bytes(arg, 512), "length": 512}
    if kind == "set_queues":
        return SQE(A.SET_FEATURES, cdw10=F.NUMBER_OF_QUEUES, cdw11=arg | arg << 16), {}
    if kind == "abort":
        return SQE(A.ABORT, cdw10=(arg % 3) | (arg % 8) << 16), {}
    return SQE(0xC3), {}         # an opcode the controller does not know


# ---------------------------------------------------------------------- stream strategies
ADMIN_KINDS = ("identify", "get_log", "get_features", "set_temp", "set_async", "set_vwc",
               "set_err_rec", "set_atomicity", "set_timestamp", "set_hbs", "set_queues",
               "abort", "unknown")
IO_OPCODES = (IO.READ, IO.WRITE, IO.COMPARE, IO.WRITE_ZEROES, IO.FLUSH,
              IO.DATASET_MANAGEMENT, 0x7E)
qids = st.sampled_from(QIDS)
cqids = st.sampled_from((0, *QIDS))
sizes = st.integers(2, 8)
cq_sizes = st.sampled_from((2, 2, 3, 4, 5, 8))     # small CQs fill up: waiting completions
sq_sizes = st.sampled_from((2, 4, 6, 8, 8))
times = st.one_of(st.sampled_from((0, 1, 19_999, 20_000, 20_001, 40_000, 1_000_000,
                                   3_600_000_000_000)),
                  st.integers(0, 100_000))


def setup_ops() -> st.SearchStrategy[list[tuple]]:
    """Enable with small admin queues, then create one to three I/O queue pairs."""
    def pairs(spec: list[tuple[int, int, int, int]]) -> list[tuple]:
        ops: list[tuple] = []
        for qid, (cq_size, sq_size, ien, cqid) in zip(QIDS, spec):
            ops.append(("create_cq", qid, cq_size, ien, 0))
            ops.append(("create_sq", qid, min(cqid, qid) or qid, sq_size))
            ops.append(("consume", 0, 8, True))
        return ops

    return st.builds(
        lambda a, c, p: [("enable", a, c), *pairs(p)],
        st.integers(1, 7), st.integers(1, 7),
        st.lists(st.tuples(cq_sizes, sq_sizes, st.integers(0, 1), st.integers(0, 3)),
                 min_size=1, max_size=3))


def stream_op() -> st.SearchStrategy[tuple]:
    """One host operation of a random stream; I/O, time and consuming are weighted up."""
    io = st.tuples(st.just("io"), qids, st.sampled_from(IO_OPCODES),
                   st.one_of(st.integers(0, 64), st.just((1 << 14) - 4)), st.integers(1, 8),
                   st.integers(0, 7), st.booleans())
    weighted = [
        (8, io),
        (2, st.tuples(st.just("burst"), qids, st.integers(0, 4), st.integers(0, 6))),
        (3, st.tuples(st.just("consume"), cqids, st.integers(1, 8), st.booleans())),
        (3, st.tuples(st.just("advance"), times)),
        (2, st.tuples(st.just("admin"), st.sampled_from(ADMIN_KINDS), st.integers(0, 255),
                      st.booleans())),
        (1, st.tuples(st.just("aer"))),
        (1, st.tuples(st.just("dbbuf"))),
        (1, st.tuples(st.sampled_from(("ring_sq", "ring_cq")), cqids)),
        (1, st.tuples(st.just("create_cq"), qids, sizes, st.integers(0, 1),
                      st.integers(0, 2))),
        (1, st.tuples(st.just("create_sq"), qids, qids, sizes)),
        (1, st.tuples(st.sampled_from(("delete_sq", "delete_cq")), qids)),
        (1, st.one_of(st.tuples(st.just("ns_changed"), st.integers(1, 3)),
                      st.tuples(st.just("intms"), st.booleans(), st.integers(0, 15)))),
    ]
    table = [strategy for weight, strategy in weighted for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(table.__getitem__)


def streams(max_ops: int = 60) -> st.SearchStrategy[list[tuple]]:
    """Setup, then a random stream (long enough to fill queues, at most ``max_ops``)."""
    return st.builds(lambda s, r: s + r, setup_ops(),
                     st.lists(stream_op(), min_size=max_ops // 3, max_size=max_ops))


def new_driver(msix: bool, latency: int = 20_000) -> Driver:
    return Driver(ModelTarget(TargetConfig(profile="full", msix=msix, io_latency_ns=latency)))


def restore_copy(ctrl: Controller, profile=FULL) -> tuple[bytes, Controller]:
    """Snapshot ``ctrl`` and restore the blob onto copies of its memory and namespace."""
    blob = snap.snapshot(ctrl, profile)
    return blob, snap.restore(blob, ctrl.config, profile, mem=ctrl.mem.copy(),
                              store=ctrl.store.copy(), now=ctrl.now)


# ---------------------------------------------------------------------- (a) and (b)
@SETTINGS
@given(msix=st.booleans(), ops=streams())
def test_full_snapshot_restore_snapshot_is_byte_identical(msix, ops):
    """Under ``full``, a restored controller snapshots to exactly the bytes it came from."""
    d = new_driver(msix)
    checked = 0
    for op in ops:
        d.apply(op)
        blob, restored = restore_copy(d.t.ctrl)
        assert snap.snapshot(restored, FULL) == blob, f"after {op}"
        checked += 1
    assert checked == len(ops)


@SETTINGS
@given(msix=st.booleans(), ops=streams(40), profile=st.sampled_from(profiles.NAMES))
def test_every_profile_writes_canonical_cbor(msix, ops, profile):
    """A snapshot blob is canonical CBOR: re-encoding its decoded envelope gives its bytes."""
    d = new_driver(msix)
    d.run(ops)
    try:
        blob = snap.snapshot(d.t.ctrl, profiles.get(profile))
    except (MigrationRefused, MigrationHung):
        assume(False)                                      # no blob to look at
    assert cbor2.dumps(cbor2.loads(blob), canonical=True) == blob


def _observable(d: Driver) -> dict:
    ctrl = d.t.ctrl
    return {
        "registers": [ctrl.mmio_read(off, size) for off, size in REGISTER_READS],
        "memory": {k: bytes(v) for k, v in ctrl.mem.pages.items() if any(v)},
        "cq_regions": {q: ctrl.mem.read(L.cq_base(q), 16 * 8) for q in (0, *QIDS)},
        "data_regions": {q: ctrl.mem.read(L.data_slot(q, 0), 8 * L.SLOT_STRIDE)
                         for q in (0, *QIDS)},
        "namespace": dict(ctrl.store.blocks),
        "host": (d.h.sqs, d.h.cqs),
        "seen": d.seen,
    }


@SETTINGS
@given(msix=st.booleans(), prefix=streams(40),
       continuation=st.lists(stream_op(), min_size=10, max_size=40))
def test_restored_controller_behaves_like_the_original(msix, prefix, continuation):
    """After a ``full`` restore, the same host actions give the same observable behaviour."""
    original = new_driver(msix)
    original.run(prefix)
    src = original.t.ctrl
    _, restored_ctrl = restore_copy(src)
    twin_target = ModelTarget(TargetConfig(profile="full", msix=msix))
    twin_target.ctrl = restored_ctrl
    twin = original.clone_onto(twin_target)
    original.seen, irq_start = [], len(src.irq_log)
    assert restored_ctrl.irq_log == []                 # at rest: the load raises nothing

    original.run(continuation)
    twin.run(continuation)

    assert _observable(twin) == _observable(original)
    assert restored_ctrl.irq_log == src.irq_log[irq_start:]
    assert snap.snapshot(restored_ctrl, FULL) == snap.snapshot(src, FULL)


# ---------------------------------------------------------------------- (c) damaged blobs
def _reloads(ctrl: Controller) -> None:
    """A working controller's own ``full`` snapshot loads again into the same queues."""
    again = snap.restore(snap.snapshot(ctrl, FULL), ctrl.config, FULL, now=ctrl.now)
    assert again.sqs.keys() == ctrl.sqs.keys() and again.cqs.keys() == ctrl.cqs.keys()


def exercise(ctrl: Controller) -> None:
    """Drive a restored controller hard from outside; it must never raise.

    Reads every register, puts commands at the tail of every SQ the controller has (at
    whatever address the controller believes the SQ is) and rings, lets time pass, consumes
    every CQ, drains, then resets, re-enables and runs admin commands; in between, the
    controller's own snapshot must load again.
    """
    for off, size in REGISTER_READS:
        ctrl.mmio_read(off, size)
    scratch = 0x0200_0000
    admin = [SQE(A.IDENTIFY, nsid=1, cdw10=1, prp1=scratch),
             SQE(A.GET_LOG_PAGE, nsid=0xFFFFFFFF, cdw10=LogId.SMART_HEALTH | 127 << 16,
                 prp1=scratch),
             SQE(A.GET_LOG_PAGE, cdw10=LogId.CHANGED_NS_LIST | 127 << 16, prp1=scratch),
             SQE(A.GET_FEATURES, cdw10=F.TIMESTAMP, prp1=scratch),
             SQE(A.SET_FEATURES, cdw10=F.TEMPERATURE_THRESHOLD, cdw11=0x100),
             SQE(A.ASYNC_EVENT_REQUEST, cid=77), SQE(A.ABORT, cdw10=77 << 16)]
    io = [SQE(IO.WRITE, nsid=1, cdw12=7, prp1=scratch),
          SQE(IO.READ, nsid=1, cdw10=8, cdw12=7, prp1=scratch),
          SQE(IO.COMPARE, nsid=1, cdw12=7, prp1=scratch), SQE(IO.FLUSH, nsid=1),
          SQE(IO.WRITE_ZEROES, nsid=1, cdw12=3)]
    for sq in list(ctrl.sqs.values()):
        for sqe in admin if sq.sqid == 0 else io:
            sq = ctrl.sqs.get(sq.sqid, sq)
            if (sq.tail + 1) % sq.size == sq.head:
                break
            if ctrl.mem.valid(sq.base + sq.tail * 64, 64):
                ctrl.mem.write(sq.base + sq.tail * 64, sqe.encode())
            ctrl.mmio_write(regs.sq_tail_doorbell(sq.sqid), 4, (sq.tail + 1) % sq.size)
    _reloads(ctrl)
    ctrl.advance(ctrl.config.io_latency_ns * 2)
    _reloads(ctrl)
    for cq in list(ctrl.cqs.values()):
        ctrl.mmio_write(regs.cq_head_doorbell(cq.cqid), 4, cq.tail)
    ctrl.mmio_write(regs.sq_tail_doorbell(70), 4, 1)      # an invalid doorbell
    ctrl.advance(ctrl.config.io_latency_ns * 2)
    ctrl.drain()
    _reloads(ctrl)
    ctrl.mmio_write(regs.CC, 4, 0)                         # reset, then a normal bring-up
    bus = ModelTarget(TargetConfig(profile="full", msix=ctrl.config.msix))
    bus.ctrl = ctrl
    host = Host(bus)
    if host.enable(7, 7) & regs.CSTS_RDY:
        host.submit(0, SQE(A.IDENTIFY, cdw10=1), length=4096, returns_data=True)
        host.submit(0, SQE(A.GET_LOG_PAGE, nsid=0xFFFFFFFF,
                           cdw10=LogId.SMART_HEALTH | 127 << 16), length=512)
        host.ring_sq(0)
        assert len(host.harvest(0)) == 2
        _reloads(ctrl)


def restores_or_refuses(blob: bytes, src: Controller, profile=FULL) -> bool:
    """The (c) rule: True if ``blob`` restored to a working controller, False if refused."""
    try:
        ctrl = snap.restore(blob, src.config, profile, now=src.now)
    except SnapshotError:
        return False
    exercise(ctrl)
    return True


def _blob_of(msix: bool, ops: list[tuple], profile=FULL) -> tuple[bytes, Controller]:
    d = new_driver(msix)
    d.run(ops)
    return snap.snapshot(d.t.ctrl, profile), d.t.ctrl


mutations = st.lists(st.tuples(st.sampled_from(("flip", "insert", "delete", "set")),
                               st.integers(0, 1 << 16), st.integers(0, 255)),
                     min_size=1, max_size=4)


def mutate(blob: bytes, muts: list[tuple[str, int, int]], truncate: int | None) -> bytes:
    out = bytearray(blob)
    for kind, pos, byte in muts:
        pos %= len(out) + (kind == "insert")
        if kind == "flip" and out:
            out[pos] ^= 1 << (byte % 8)
        elif kind == "set" and out:
            out[pos] = byte
        elif kind == "insert":
            out[pos:pos] = bytes([byte])
        elif kind == "delete" and out:
            del out[pos]
    if truncate is not None:
        del out[truncate % (len(out) + 1):]
    return bytes(out)


@SETTINGS
@given(msix=st.booleans(), ops=streams(30), profile=st.sampled_from(profiles.NAMES),
       muts=mutations, truncate=st.none() | st.integers(0, 1 << 16))
def test_damaged_snapshot_restores_or_raises_snapshot_error(msix, ops, profile, muts,
                                                            truncate):
    """A damaged blob restores to a working controller or raises SnapshotError, nothing else."""
    prof = profiles.get(profile)
    try:
        blob, src = _blob_of(msix, ops, prof)
    except (MigrationRefused, MigrationHung):
        assume(False)                              # a refusal or a hang leaves nothing to damage
    damaged = mutate(blob, muts, truncate)
    restored = restores_or_refuses(damaged, src, prof)
    assert restored or damaged != blob


@SETTINGS
@given(msix=st.booleans(), ops=streams(30), cut=st.integers(0, 1 << 16))
def test_every_truncation_is_refused_with_snapshot_error(msix, ops, cut):
    """A blob cut short anywhere raises SnapshotError (CBOR has no valid proper prefix)."""
    blob, src = _blob_of(msix, ops)
    cut %= len(blob)
    assert not restores_or_refuses(blob[:cut], src)


# ---------------------------------------------------------------------- (c) hostile CBOR
HOSTILE_VALUES = st.one_of(
    st.integers(-(1 << 70), -1), st.integers(1 << 16, 1 << 70),
    st.sampled_from((0, 1, 2, 0xFF, 0x100, 0xFFFF, 0x10000, (1 << 31) - 1, 1 << 31,
                     (1 << 32) - 1, 1 << 32, (1 << 64) - 1, 1 << 64, -(1 << 31) - 1)),
    st.text(max_size=8), st.binary(max_size=80), st.none(), st.booleans(),
    st.floats(allow_nan=False),
    st.recursive(st.integers(-3, 70) | st.none(),
                 lambda inner: st.lists(inner, max_size=3)
                 | st.dictionaries(st.text(max_size=4), inner, max_size=2), max_leaves=6),
)


def _locations(value: Any, path: tuple = ()) -> list[tuple]:
    """Every (container path, key) inside a decoded state, depth first."""
    out = []
    items = value.items() if isinstance(value, dict) else (
        enumerate(value) if isinstance(value, list) else ())
    for key, child in items:
        out.append(path + (key,))
        out.extend(_locations(child, path + (key,)))
    return out


def _at(state: Any, path: tuple) -> Any:
    for key in path:
        state = state[key]
    return state


def _request(sqid: int, opc: int = IO.READ, due: int | None = 5) -> dict:
    return {"sqid": sqid, "sqe": SQE(opc, nsid=1).encode(), "status": 0, "dw0": 0, "dw1": 0,
            "due": due}


def _structured(state: dict, kind: str, pick: int, value: int) -> None:
    """Semantically hostile edits a byte fuzzer is unlikely to reach."""
    sqs, cqs = state.get("sq", []), state.get("cq", [])
    if kind == "dangling_cqid" and sqs:
        absent = [c for c in range(66) if c not in {q.get("cqid") for q in cqs}]
        sqs[pick % len(sqs)]["cqid"] = absent[value % len(absent)]
    elif kind == "head_past_size" and (sqs or cqs):
        q = (sqs + cqs)[pick % len(sqs + cqs)]
        q["head" if value & 1 else "tail"] = q["size"] + value % 3
    elif kind == "duplicate_qid" and (sqs or cqs):
        table = sqs if sqs and (value & 1 or not cqs) else cqs
        table.append(copy.deepcopy(table[pick % len(table)]))
    elif kind == "missing_sq_request":
        where = ("inflight", "aer_reqs", "cq")[value % 3]
        req = _request(5 + pick % 60, A.ASYNC_EVENT_REQUEST if where == "aer_reqs" else IO.READ,
                       None if where != "inflight" else 5)
        if where == "cq" and cqs:
            cqs[pick % len(cqs)]["waiting"].append(req)
        elif where != "cq":
            state[where] = [*state.get(where, []), req]
    elif kind == "extra_request" and sqs:
        sq = sqs[pick % len(sqs)]
        for _ in range(1 + value % 9):
            if sq["sqid"]:
                state["inflight"].append(_request(sq["sqid"], due=value))
            else:
                state["aer_reqs"].append(_request(0, A.ASYNC_EVENT_REQUEST, None))
    elif kind == "drop_queue" and (sqs or cqs):
        table = cqs if cqs and (value & 1 or not sqs) else sqs
        del table[pick % len(table)]
    elif kind == "queue_size" and (sqs or cqs):
        q = (sqs + cqs)[pick % len(sqs + cqs)]
        big = 2049 if (q.get("sqid", q.get("cqid"))) else 4097   # one past what CAP/AQA allow
        q["size"] = (0, 1, big, 1 << 32)[value % 4]
    elif kind == "unknown_field":
        state[f"bogus{value}"] = pick
    elif kind == "wrong_request_state" and state.get("inflight"):
        state["inflight"][pick % len(state["inflight"])]["due"] = None
    elif kind == "future_clock":
        state[("starttime_ms", "features.timestamp_set_ms")[value & 1]] = (1 << 63) + pick
    elif kind == "aer_on_io_sq" and any(q["sqid"] for q in sqs):
        io_sqs = [q["sqid"] for q in sqs if q["sqid"]]
        state["aer_reqs"] = [*state.get("aer_reqs", []),
                             _request(io_sqs[pick % len(io_sqs)], A.ASYNC_EVENT_REQUEST, None)]
    elif kind == "irq_vector" and cqs:
        cqs[pick % len(cqs)].update(vector=value % 80, ien=True)
    elif kind == "event_type":
        state["aer_queue"] = [[value % 256, pick & 0xFF, 2]] * (1 + pick % 3)


STRUCTURED = ("dangling_cqid", "head_past_size", "duplicate_qid", "missing_sq_request",
              "extra_request", "drop_queue", "queue_size", "unknown_field",
              "wrong_request_state", "future_clock", "event_type", "irq_vector",
              "aer_on_io_sq")


def _in_range(state: dict, data: st.DataObject) -> None:
    """Set one schema field to a value its type and width allow but no run would produce."""
    fields = [(p, k) for p, k in snap.TOP.items() if p in state and isinstance(k, int)]
    fields += [(f"{t}[{i}].{f}", kind) for t, table in (("sq", snap.SQ_FIELDS),
                                                        ("cq", snap.CQ_FIELDS))
               for i, rec in enumerate(state.get(t, [])) for f, kind in table.items()
               if isinstance(kind, int) or kind == snap.BOOL]
    fields += [(p, k) for p, k in snap.TOP.items() if p in state and k in (snap.BOOL,
                                                                          snap.INT32)]
    if not fields:
        return
    path, kind = data.draw(st.sampled_from(fields), label="field")
    if kind == snap.BOOL:
        value: Any = data.draw(st.booleans(), label="bool")
    elif kind == snap.INT32:
        value = data.draw(st.integers(-(1 << 31), (1 << 31) - 1), label="int32")
    else:
        value = data.draw(st.one_of(st.integers(0, min(kind, 300)), st.just(kind),
                                    st.integers(0, kind)), label="uint")
    if "[" in path:
        table, rest = path.split("[", 1)
        index, name = rest.split("].")
        state[table][int(index)][name] = value
    else:
        state[path] = value


@SETTINGS
@given(msix=st.booleans(), ops=streams(30), data=st.data())
def test_hostile_cbor_state_restores_or_raises_snapshot_error(msix, ops, data):
    """A hostile well-formed state restores to a working controller or raises SnapshotError."""
    blob, src = _blob_of(msix, ops)
    envelope = cbor2.loads(blob)
    state = envelope["state"]
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        how = data.draw(st.sampled_from(("in_range", "in_range", "structured", "any")),
                        label="how")
        try:
            if how == "in_range":
                _in_range(state, data)
            elif how == "structured":
                _structured(state, data.draw(st.sampled_from(STRUCTURED), label="kind"),
                            data.draw(st.integers(0, 1 << 16), label="pick"),
                            data.draw(st.integers(0, 1 << 16), label="value"))
            else:
                path = data.draw(st.sampled_from(_locations(state)), label="path")
                _at(state, path[:-1])[path[-1]] = data.draw(HOSTILE_VALUES, label="value")
        except (TypeError, KeyError, AttributeError, IndexError):
            pass                        # an earlier edit already broke the structure
    hostile = cbor2.dumps(envelope, canonical=True)
    restored = restores_or_refuses(hostile, src)
    assert restored or hostile != blob


@SETTINGS
@given(msix=st.booleans(), ops=streams(30),
       kind=st.sampled_from(("dangling_cqid", "head_past_size", "duplicate_qid",
                             "missing_sq_request", "queue_size", "unknown_field",
                             "wrong_request_state", "aer_on_io_sq")),
       pick=st.integers(0, 1 << 16), value=st.integers(0, 1 << 16))
def test_inconsistent_queue_state_is_refused(msix, ops, kind, pick, value):
    """Dangling CQ ids, heads past the end, duplicate ids, misplaced requests are refused."""
    blob, src = _blob_of(msix, ops)
    envelope = cbor2.loads(blob)
    before = copy.deepcopy(envelope["state"])
    _structured(envelope["state"], kind, pick, value)
    hostile = cbor2.dumps(envelope, canonical=True)
    if envelope["state"] == before:                # nothing to break (e.g. no inflight)
        assert restores_or_refuses(hostile, src)
    else:
        assert not restores_or_refuses(hostile, src)
