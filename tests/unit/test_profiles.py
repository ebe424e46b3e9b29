"""Per-profile behaviour of the migration designs: what each saves, refuses and re-derives.

Scenarios are built through the real host driver over a ``ModelTarget`` (``Rig``); a migration
is ``snapshot`` on the source and ``restore`` onto copies of its guest memory and namespace, so
the source and the destination can both keep running and be compared.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import cbor2
import pytest

from nvmefuzz.errors import CampaignError, MigrationHung, MigrationRefused, SnapshotError
from nvmefuzz.fuzz.session import replay
from nvmefuzz.host import layout as L
from nvmefuzz.host.driver import Completion, Host, pattern_bytes
from nvmefuzz.model import profiles, snapshot as snap
from nvmefuzz.model.controller import Controller
from nvmefuzz.model.memory import GuestMemory
from nvmefuzz.model.profiles.base import ALL_FIELDS
from nvmefuzz.model.state import Config, Features
from nvmefuzz.protocol import regs
from nvmefuzz.protocol.queues import SQE
from nvmefuzz.protocol.structures import ID_CTRL_NVM, parse
from nvmefuzz.protocol.spec import AdminOpcode as A, FeatureId as F, IoOpcode as IO
from nvmefuzz.targets.base import HUNG, QEMU_VIEW, TargetConfig
from nvmefuzz.targets.model import ModelTarget
from nvmefuzz.trace import corpus

CORPUS = Path(__file__).resolve().parents[2] / "corpus"

LATENCY = 20_000
INACTIVE_NSID = 5              # a valid but inactive namespace: the command fails at fetch
V3_REFUSAL = "no free space in CQ (not supported)"


class Rig:
    """A host and a model controller, enabled, with helpers for the usual commands."""

    def __init__(self, profile: str = "full", msix: bool = True, enable: bool = True) -> None:
        self.t = ModelTarget(TargetConfig(profile=profile, msix=msix, io_latency_ns=LATENCY))
        self.h = Host(self.t)
        if enable:
            assert self.h.enable(7, 7) & regs.CSTS_RDY

    @property
    def ctrl(self) -> Controller:
        return self.t.ctrl

    def admin(self, sqe: SQE, **kw) -> Completion:
        cid = self.h.submit(0, sqe, **kw)
        self.h.ring_sq(0)
        done = self.h.harvest(0)
        self.h.ring_cq(0)
        mine = [c for c in done if c.cqe.cid == cid]
        assert len(mine) == 1
        return mine[0]

    def pair(self, qid: int, cq_size: int, sq_size: int, ien: int = 1, iv: int = 0) -> None:
        self.t.mem_write(L.cq_base(qid), bytes(16 * cq_size))
        cq = self.admin(SQE(A.CREATE_IO_CQ, cdw10=qid | (cq_size - 1) << 16,
                            cdw11=1 | ien << 1 | iv << 16, prp1=L.cq_base(qid)),
                        effect=("create_cq", qid, cq_size))
        sq = self.admin(SQE(A.CREATE_IO_SQ, cdw10=qid | (sq_size - 1) << 16,
                            cdw11=1 | qid << 16, prp1=L.sq_base(qid)),
                        effect=("create_sq", qid, qid, sq_size))
        assert cq.cqe.status == 0 and sq.cqe.status == 0

    def io(self, qid: int, opc: int = IO.READ, slba: int = 0, nsid: int = 1,
           pattern: int = 0, ring: bool = True) -> int:
        """An 8-block (4 KiB) Read or Write on SQ ``qid``; returns its CID."""
        data = pattern_bytes(pattern, 4096) if opc == IO.WRITE else None
        cid = self.h.submit(qid, SQE(opc, nsid=nsid, cdw10=slba, cdw12=7), data=data,
                            length=4096, returns_data=opc == IO.READ)
        if ring:
            self.h.ring_sq(qid)
        return cid

    def set_feature(self, fid: int, cdw11: int = 0, nsid: int = 0, **kw) -> int:
        return self.admin(SQE(A.SET_FEATURES, nsid=nsid, cdw10=fid, cdw11=cdw11), **kw).cqe.status

    def get_feature(self, fid: int, nsid: int = 0) -> int:
        c = self.admin(SQE(A.GET_FEATURES, nsid=nsid, cdw10=fid))
        assert c.cqe.status == 0
        return c.cqe.dw0

    def reap(self, qid: int) -> list[Completion]:
        """Consume everything CQ ``qid`` holds, ringing after each batch, until it is empty."""
        out: list[Completion] = []
        while True:
            done = self.h.harvest(qid)
            if not done:
                return out
            out += done
            self.h.ring_cq(qid)


def migrate(rig: Rig, profile_name: str) -> tuple[bytes, Rig]:
    """Save ``rig`` with a profile and load it into a second rig (same host state, copied
    guest memory and namespace); raises ``MigrationRefused`` if the profile refuses."""
    profile = profiles.get(profile_name)
    src = rig.ctrl
    blob = snap.snapshot(src, profile)
    dst = Rig(profile_name, msix=src.config.msix, enable=False)
    dst.t.ctrl = snap.restore(blob, src.config, profile, mem=src.mem.copy(),
                              store=src.store.copy(), now=src.now)
    dst.h = rig.h.clone(dst.t)
    return blob, dst


def busy(profile: str = "full", msix: bool = True, nsid: int = 1) -> Rig:
    """In-flight I/O on pair 2 and a full CQ 1 (2 entries, vector 3) with two waiting reads
    (of namespace ``nsid``: QEMU 11.1 refuses to save those of an active one)."""
    rig = Rig(profile, msix)
    rig.pair(1, cq_size=2, sq_size=4, iv=3 if msix else 0)
    rig.pair(2, cq_size=8, sq_size=8)
    rig.io(2, IO.WRITE, slba=0, pattern=7)
    rig.t.advance(LATENCY)
    assert [c.cqe.status for c in rig.reap(2)] == [0]
    for _ in range(3):
        rig.io(1, IO.READ, slba=0, nsid=nsid, ring=False)
    rig.h.ring_sq(1)
    rig.t.advance(LATENCY)                         # 1 posted, 2 wait on the full CQ
    rig.io(2, IO.WRITE, slba=64, pattern=8)
    rig.io(2, IO.WRITE, slba=72, pattern=9)
    rig.io(2, IO.READ, slba=0)
    ctrl = rig.ctrl
    assert ctrl.cqs[1].full() and len(ctrl.cqs[1].waiting) == 2
    assert len(ctrl.inflight) == 3
    return rig


def finish_everything(rig: Rig) -> list[tuple]:
    """Let the I/O finish and consume every CQ; what the host saw, in order."""
    rig.t.advance(LATENCY)
    seen = []
    for qid in (1, 2, 1, 2):
        seen += [(c.cqid, c.cqe, c.data) for c in rig.reap(qid)]
        rig.t.advance(LATENCY)
    return seen


# ---------------------------------------------------------------------- full
def test_full_carries_inflight_io_and_waiting_completions_across_restore():
    """``full`` keeps in-flight I/O and a full CQ's waiting completions, and finishes them."""
    src = busy("full")
    _, dst = migrate(src, "full")
    s, d = src.ctrl, dst.ctrl
    assert d.inflight == s.inflight and len(d.inflight) == 3
    assert d.cqs[1].waiting == s.cqs[1].waiting and len(d.cqs[1].waiting) == 2
    assert [q.used for q in d.sqs.values()] == [q.used for q in s.sqs.values()] == [0, 2, 3]
    assert d.irq_log == []                          # nothing re-posted, nothing re-raised

    seen_src, seen_dst = finish_everything(src), finish_everything(dst)
    assert seen_dst == seen_src
    assert len([c for c in seen_src if c[0] == 1]) == 3 and len(seen_src) == 6
    assert all(cqe.status == 0 for _, cqe, _ in seen_src)
    assert d.store.blocks == s.store.blocks and d.store.read(64, 16) != bytes(8192)


# ---------------------------------------------------------------------- qemu-v3-patch
def test_v3_patch_refuses_a_full_cq_with_waiting_completions():
    """The v3 patch refuses with its QMP error text when a CQ is full with waiting entries."""
    rig = busy("qemu-v3-patch")
    with pytest.raises(MigrationRefused) as info:
        snap.snapshot(rig.ctrl, profiles.get("qemu-v3-patch"))
    assert info.value.reason == V3_REFUSAL
    assert rig.ctrl.stop_processing is False
    assert rig.ctrl.inflight == []                  # it drained before it looked


def test_v3_patch_hangs_when_io_is_in_flight_at_the_vm_stop():
    """The VM stop posts all but the last drained completion; v3's pre_save then waits for CQ
    1's req_list to empty, which nothing can do while it runs: a hang, named by the CQ."""
    rig = Rig("qemu-v3-patch")
    rig.pair(1, cq_size=8, sq_size=8)
    rig.io(1, IO.WRITE, slba=8, pattern=3)
    rig.io(1, IO.READ, slba=8)
    assert len(rig.ctrl.inflight) == 2
    outcome = rig.t.migrate()
    assert outcome.kind == HUNG
    assert outcome.detail.startswith("save: pre_save spins on cq[1].req_list: 1 completion(s)")
    cq = rig.ctrl.cqs[1]
    assert rig.ctrl.inflight == [] and cq.tail == 1 and not cq.full()
    assert [r.sqe.opc for r in cq.waiting] == [IO.READ]           # the last one to finish


def test_v3_patch_hangs_also_when_its_own_drain_meets_the_io():
    """Without a VM stop before it, pre_save's nvme_ns_drain polls the same way: a hang too."""
    rig = Rig("qemu-v3-patch")
    rig.pair(1, cq_size=8, sq_size=8)
    rig.io(1, IO.WRITE, slba=8, pattern=3)
    with pytest.raises(MigrationHung, match=r"cq\[1\]\.req_list"):
        snap.snapshot(rig.ctrl, profiles.get("qemu-v3-patch"))


def test_v3_patch_migrates_once_the_io_has_finished():
    """I/O that finished and posted before the migration is not in the way: the destination
    holds the same CQ and the data written."""
    rig = Rig("qemu-v3-patch")
    rig.pair(1, cq_size=8, sq_size=8)
    rig.io(1, IO.WRITE, slba=8, pattern=3)
    rig.io(1, IO.READ, slba=8)
    rig.t.advance(LATENCY)
    assert rig.ctrl.inflight == [] and rig.ctrl.cqs[1].tail == 2
    blob, dst = migrate(rig, "qemu-v3-patch")
    assert "inflight" not in cbor2.loads(blob)["state"]
    assert dst.ctrl.inflight == [] and dst.ctrl.cqs[1].tail == 2
    assert [c.data for c in dst.reap(1)] == [None, pattern_bytes(3, 4096)]


def test_v3_patch_does_not_save_feature_values():
    """Features come back at power-on values under the v3 patch (threshold 0x157 again)."""
    rig = Rig("qemu-v3-patch")
    assert rig.set_feature(F.TEMPERATURE_THRESHOLD, 0x160) == 0
    assert rig.set_feature(F.ASYNC_EVENT_CONFIG, 0x3) == 0
    assert rig.set_feature(F.VOLATILE_WRITE_CACHE, 0) == 0
    assert rig.get_feature(F.TEMPERATURE_THRESHOLD) == 0x160
    blob, dst = migrate(rig, "qemu-v3-patch")
    assert not any(k.startswith("features.") and k not in (
        "features.host_timestamp", "features.timestamp_set_ms")
        for k in cbor2.loads(blob)["state"])
    assert dst.get_feature(F.TEMPERATURE_THRESHOLD) == 0x157
    assert dst.get_feature(F.ASYNC_EVENT_CONFIG) == 0
    assert dst.get_feature(F.VOLATILE_WRITE_CACHE) == 1
    assert rig.ctrl.features.temp_thresh_hi == 0x160


def test_v3_patch_successful_save_leaves_the_source_sq_processing_stopped():
    """The v3 patch clears stop_processing_sq only on its error path: a source that resumes
    after a successful save (a migration failing later) fetches nothing any more."""
    rig = Rig("qemu-v3-patch")
    rig.pair(1, cq_size=8, sq_size=8)
    migrate(rig, "qemu-v3-patch")
    assert rig.ctrl.stop_processing is True
    rig.io(1, IO.READ)
    rig.t.advance(LATENCY)
    assert rig.ctrl.sqs[1].head == 0 and rig.reap(1) == []


def stalled(profile: str, busy: int = 1, full: int = 2) -> Rig:
    """SQ ``busy``'s request pool exhausted by in-flight reads with one more SQE pending
    behind them, plus CQ ``full`` full with two waiting completions."""
    rig = Rig(profile)
    for qid in sorted((busy, full)):
        if qid == busy:
            rig.pair(busy, cq_size=8, sq_size=4)
        else:
            rig.pair(full, cq_size=2, sq_size=4)
    rig.io(busy, ring=False)
    rig.io(busy, ring=False)
    rig.io(busy, nsid=INACTIVE_NSID)               # fails at fetch: the host learns SQHD 3
    assert len(rig.reap(busy)) == 1 and rig.h.sqs[busy].free() == 3
    for _ in range(3):
        rig.io(busy, ring=False)
    rig.h.ring_sq(busy)                            # 2 fetched (pool of 4 used up), 1 pending
    for _ in range(3):
        rig.io(full, nsid=INACTIVE_NSID, ring=False)
    rig.h.ring_sq(full)                            # 1 posted, 2 waiting on the full CQ
    ctrl = rig.ctrl
    sq = ctrl.sqs[busy]
    assert sq.used == sq.size == 4 and len(ctrl.inflight) == 4
    assert (sq.head, sq.tail) == (1, 2)
    assert ctrl.cqs[full].full() and len(ctrl.cqs[full].waiting) == 2
    return rig


def test_v3_patch_error_path_leaves_a_kicked_sq_idle():
    """A full CQ 1 with waiting completions comes first in CQ order, so v3 refuses before it
    could hang on CQ 2.  After the refusal SQ 2, kicked during pre_save's own drain, fetches
    nothing until its doorbell rings again, whereas a plain drain fetches its pending SQE at
    once."""
    plain = stalled("full", busy=2, full=1)
    plain.ctrl.drain()
    assert plain.ctrl.sqs[2].head == 2 and len(plain.ctrl.inflight) == 1

    rig = stalled("qemu-v3-patch", busy=2, full=1)
    with pytest.raises(MigrationRefused) as info:
        snap.snapshot(rig.ctrl, profiles.get("qemu-v3-patch"))
    assert info.value.reason == V3_REFUSAL
    ctrl = rig.ctrl
    assert ctrl.inflight == [] and ctrl.cqs[2].tail == 5     # the VM ran on: all four posted
    assert (ctrl.sqs[2].head, ctrl.sqs[2].tail, ctrl.sqs[2].used) == (1, 2, 0)

    assert len(rig.reap(2)) == 4                   # CQ doorbells and time do not wake it
    rig.t.advance(10 * LATENCY)
    assert ctrl.sqs[2].head == 1 and ctrl.inflight == []
    rig.h.ring_sq(2)                               # the doorbell again: it fetches at last
    assert ctrl.sqs[2].head == 2 and len(ctrl.inflight) == 1


def test_v3_patch_hangs_on_a_cq_that_is_not_full_before_it_meets_a_full_one():
    """The same queues the other way round: the last drained read waits in CQ 1, not full,
    which pre_save meets first, so the save hangs instead of refusing."""
    rig = stalled("qemu-v3-patch", busy=1, full=2)
    outcome = rig.t.migrate()
    assert outcome.kind == HUNG and "cq[1].req_list" in outcome.detail
    assert len(rig.ctrl.cqs[2].waiting) == 2


# ---------------------------------------------------------------------- qemu-11.1
def test_qemu_11_1_saves_waiting_completions_and_features():
    """QEMU 11.1 carries a full CQ's waiting completions and every feature value."""
    rig = busy("qemu-11.1", nsid=INACTIVE_NSID)
    assert rig.set_feature(F.TEMPERATURE_THRESHOLD, 0x160) == 0
    assert rig.set_feature(F.TEMPERATURE_THRESHOLD, 0x20 | 1 << 20) == 0
    assert rig.set_feature(F.ASYNC_EVENT_CONFIG, 0x1) == 0
    assert rig.set_feature(F.VOLATILE_WRITE_CACHE, 0) == 0
    assert rig.set_feature(F.ERROR_RECOVERY, 0x1234, nsid=1) == 0
    assert rig.set_feature(F.WRITE_ATOMICITY, 1) == 0
    assert rig.set_feature(F.HOST_BEHAVIOR_SUPPORT, data=pattern_bytes(5, 512),
                           length=512) == 0
    assert rig.set_feature(F.TIMESTAMP, data=(123456).to_bytes(8, "little"), length=8) == 0
    _, dst = migrate(rig, "qemu-11.1")
    s, d = rig.ctrl, dst.ctrl
    assert d.cqs[1].waiting == s.cqs[1].waiting and len(d.cqs[1].waiting) == 2
    assert d.features == s.features and d.features != Features()
    assert dst.get_feature(F.TEMPERATURE_THRESHOLD) == 0x160
    assert dst.get_feature(F.VOLATILE_WRITE_CACHE) == 0
    assert finish_everything(dst) == finish_everything(rig)


def test_qemu_11_1_loses_smart_counters_and_changed_nsids():
    """QEMU 11.1 does not migrate the SMART I/O counters or the changed-namespace list."""
    rig = busy("qemu-11.1", nsid=INACTIVE_NSID)
    rig.t.environment("ns_changed", 1)
    _, dst = migrate(rig, "qemu-11.1")
    s, d = rig.ctrl, dst.ctrl
    assert s.host_reads > 0 and s.host_writes > 0 and s.data_units_written > 0
    assert (d.host_reads, d.host_writes, d.data_units_read, d.data_units_written) == (0, 0, 0, 0)
    assert s.changed_nsids == [1] and d.changed_nsids == []
    assert d.aer_queue == s.aer_queue and len(d.aer_queue) == 1


def test_qemu_11_1_post_load_reasserts_the_interrupt_of_a_full_cq():
    """QEMU 11.1's post_load runs the CQ bottom half of a restored full CQ: its vector fires."""
    _, dst = migrate(busy("qemu-11.1", nsid=INACTIVE_NSID), "qemu-11.1")
    assert dst.ctrl.irq_log == [("msix", 3)]
    assert dst.ctrl.cqs[1].full() and len(dst.ctrl.cqs[1].waiting) == 2
    _, same = migrate(busy("full"), "full")
    assert same.ctrl.irq_log == []                 # the full profile simply carries on


def test_guest_memory_rollback_takes_back_every_write_since_the_checkpoint():
    """The final RAM pass of a ``ram_first`` profile: later writes, to pages that existed or
    not, never arrive; ``commit`` keeps them (a refused save: the source runs on)."""
    mem = GuestMemory()
    mem.write(0x1FF8, b"A" * 16)                  # across two pages
    mem.checkpoint()
    mem.write(0x1FFC, b"B" * 8)
    mem.write(0x9000, b"C")
    mem.write_u32(0x1FF8, 0xFFFFFFFF)
    mem.rollback()
    assert mem.read(0x1FF8, 16) == b"A" * 16 and 9 not in mem.pages
    mem.checkpoint()
    mem.write(0x9000, b"C")
    mem.commit()
    mem.rollback()                                # nothing to take back any more
    assert mem.read(0x9000, 1) == b"C"


def on_model(trace, view=QEMU_VIEW) -> dict:
    """A QEMU target's trace replayed on the model under ``qemu-11.1`` and ``full``, as the
    qemu target sees (``view``)."""
    return {profile: replay(attrs.evolve(trace, target={**trace.target, "kind": "model",
                                                         "profile": profile, **view}))[0]
            for profile in ("qemu-11.1", "full")}


@pytest.mark.parametrize("name, signature, step", [
    ("divergence-posted-io-missing-5d210b1444.cbor", "divergence:posted/io/missing", 5),
    ("divergence-posted-io-cqes-ec62be8e93.cbor", "divergence:posted/io/cqes", 11),
    ("divergence-cqe-admin-identify-cns-0x06-data-0x4-86b33632ab.cbor",
     "divergence:cqe/admin/IDENTIFY/cns=0x06/data@0x4", 2),
    ("divergence-cqe-io-read-data-fee71a52d2.cbor", "divergence:cqe/io/READ/data", 9),
])
def test_the_qemu_11_1_profile_reproduces_what_qemu_loses_at_a_migration(name, signature, step):
    """QEMU 11.1.3's findings (corpus/qemu-target) on the model: ``qemu-11.1`` reaches the same
    verdict at the same step, ``full`` passes: the completion of a held Read lost (6 steps);
    a fifth Write fetched while the save drains four, its completion lost (12 steps); DMRSL
    reported as 0 after a migration (3 steps), and Dataset Management then deallocating
    nothing, so a Read returns the written data, not zeroes (10 steps)."""
    trace = corpus.load(CORPUS / "qemu-target" / name)
    verdicts = on_model(trace)
    assert verdicts["qemu-11.1"].signature == trace.verdict.signature == signature
    assert verdicts["qemu-11.1"].step == trace.verdict.step == step
    assert verdicts["full"].ok


@pytest.mark.parametrize("name, signature, step, opc", [
    ("divergence-cqe-io-read-data-fee71a52d2.cbor", "divergence:irq/extra", 6, 9),
    ("divergence-posted-io-cqes-ec62be8e93.cbor", "divergence:irq/events", 11, None),
])
def test_outside_the_qemu_view_the_model_sees_qemu_losses_another_way(name, signature, step,
                                                                      opc):
    """With time to pass and every MSI-X message counted, the first difference is another: the
    deallocate that has no range to discard completes at fetch on the destination, after the
    backend on the source; five interrupts against four for the lost completion."""
    trace = corpus.load(CORPUS / "qemu-target" / name)
    seen = on_model(trace, view={})["qemu-11.1"]
    assert (seen.signature, seen.step, trace.steps[seen.step].args.get("opc")) == (
        signature, step, opc)


def test_the_dsm_range_limit_comes_back_when_the_guest_resets_the_controller():
    """QEMU 11.1 computes DMRSL when the controller starts: the destination reports 0 and a
    deallocate of 8 blocks does nothing, until a reset and an enable compute it again."""
    rig = Rig("qemu-11.1")
    assert identify_nvm(rig) == (7, 255, 0x3FFFFF, 255 * 0x3FFFFF)   # as QEMU 11.1.3 reports
    rig.pair(1, cq_size=8, sq_size=8)
    _, dst = migrate(rig, "qemu-11.1")
    assert identify_nvm(dst) == (7, 255, 0, 0)
    assert deallocate_then_read(dst, slba=16) == pattern_bytes(5, 4096)   # not deallocated
    dst.h.write_reg("CC", 0)                     # a controller reset
    assert dst.h.enable(7, 7) & regs.CSTS_RDY
    assert identify_nvm(dst) == (7, 255, 0x3FFFFF, 255 * 0x3FFFFF)
    dst.pair(1, cq_size=8, sq_size=8)
    assert deallocate_then_read(dst, slba=16) == bytes(4096)
    _, kept = migrate(rig, "full")
    assert identify_nvm(kept) == identify_nvm(rig)


def identify_nvm(rig: Rig) -> tuple[int, int, int, int]:
    """VSL, DMRL, DMRSL and DMSL from Identify CNS 06h (NVM command set)."""
    c = rig.admin(SQE(A.IDENTIFY, cdw10=0x06), length=4096, returns_data=True)
    assert c.cqe.status == 0
    d = parse(ID_CTRL_NVM, c.data)
    return d["vsl"], d["dmrl"], d["dmrsl"], d["dmsl"]


def deallocate_then_read(rig: Rig, slba: int) -> bytes:
    """Write pattern 5 to 8 blocks at ``slba``, deallocate them, read them back."""
    rig.io(1, IO.WRITE, slba=slba, pattern=5)
    rig.t.advance(LATENCY)
    rng = (0).to_bytes(4, "little") + (8).to_bytes(4, "little") + slba.to_bytes(8, "little")
    rig.h.submit(1, SQE(IO.DATASET_MANAGEMENT, nsid=1, cdw10=0, cdw11=4), data=rng, length=16)
    rig.h.ring_sq(1)
    rig.t.advance(LATENCY)
    rig.io(1, IO.READ, slba=slba)
    rig.t.advance(LATENCY)
    done = rig.reap(1)
    assert [c.cqe.status for c in done] == [0, 0, 0]
    return done[-1].data


# ---------------------------------------------------------------------- nvmecs-v0
def post_n(rig: Rig, qid: int, n: int) -> None:
    """``n`` commands on SQ ``qid`` that complete at fetch, each consumed at once."""
    for _ in range(n):
        rig.io(qid, nsid=INACTIVE_NSID)
        assert len(rig.reap(qid)) == 1


def nvmecs_rig() -> Rig:
    """Four I/O pairs whose CQs sit at every tail/phase combination, plus changed features."""
    rig = Rig("nvmecs-v0")
    rig.pair(1, cq_size=4, sq_size=4)
    rig.pair(2, cq_size=4, sq_size=8, iv=2)
    rig.pair(3, cq_size=4, sq_size=4)
    rig.pair(4, cq_size=4, sq_size=4, ien=0, iv=5)
    for qid, n in ((1, 5), (2, 4), (3, 1), (4, 0)):
        post_n(rig, qid, n)
    assert rig.set_feature(F.TEMPERATURE_THRESHOLD, 0x160) == 0
    return rig


def _u(raw: bytes, off: int, size: int) -> int:
    return int.from_bytes(raw[off:off + size], "little")


def test_nvmecs_v0_encodes_tp4159_controller_state_bytes():
    """The stream holds a TP4159 header and NVMECS v0 with 24-byte SQ and CQ entries."""
    rig = nvmecs_rig()
    blob = snap.snapshot(rig.ctrl, profiles.get("nvmecs-v0"))
    state = cbor2.loads(blob)["state"]
    assert set(state) == {"regs", "nvmecs"}
    raw, ctrl = state["nvmecs"], rig.ctrl
    # header: VER, CSATTR (suspended), reserved, NVMECSS in dwords, VSS
    assert _u(raw, 0, 2) == 0 and raw[2] == 1 and raw[3:16] == bytes(13)
    assert _u(raw, 16, 16) * 4 == len(raw) - 48 and _u(raw, 32, 16) == 0
    body = raw[48:]
    assert (_u(body, 0, 2), _u(body, 2, 2), _u(body, 4, 2), _u(body, 6, 2)) == (0, 4, 4, 0)
    assert len(body) == 8 + 24 * 8
    for i, qid in enumerate((1, 2, 3, 4)):
        e, q = body[8 + 24 * i:32 + 24 * i], ctrl.sqs[qid]
        assert (_u(e, 0, 8), _u(e, 8, 2), _u(e, 10, 2), _u(e, 12, 2)) == (
            q.base, q.size - 1, qid, q.cqid)
        assert _u(e, 14, 2) & 1 == 1 and (_u(e, 16, 2), _u(e, 18, 2)) == (q.head, q.tail)
        assert e[20:] == bytes(4)
    s0pts = []
    for i, qid in enumerate((1, 2, 3, 4)):
        e, q = body[8 + 24 * (4 + i):32 + 24 * (4 + i)], ctrl.cqs[qid]
        assert (_u(e, 0, 8), _u(e, 8, 2), _u(e, 10, 2), _u(e, 12, 2), _u(e, 14, 2)) == (
            q.base, q.size - 1, qid, q.head, q.tail)
        attr = _u(e, 16, 4)
        assert attr & 1 == 1 and (attr >> 1) & 1 == q.ien and attr >> 16 == q.vector
        s0pt = (attr >> 2) & 1
        assert s0pt == (q.phase if q.tail != 0 else 1 - q.phase)
        assert s0pt == rig.t.mem_read(q.base, 16)[14] & 1      # slot 0's phase tag in RAM
        assert e[20:] == bytes(4)
        s0pts.append((q.tail, q.phase, s0pt))
    assert s0pts == [(1, 0, 0), (0, 0, 1), (1, 1, 1), (0, 1, 0)]


def test_nvmecs_v0_round_trips_io_queue_state():
    """Every I/O SQ and CQ comes back at the same position, phase, vector and IEN."""
    rig = nvmecs_rig()
    _, dst = migrate(rig, "nvmecs-v0")
    s, d = rig.ctrl, dst.ctrl
    for qid in (1, 2, 3, 4):
        assert d.sqs[qid] == s.sqs[qid]
        assert d.cqs[qid] == s.cqs[qid]
    assert d.cc == s.cc and d.csts & regs.CSTS_RDY and d.page_size == s.page_size
    post_n(dst, 1, 3)                              # and the host carries on with them
    post_n(rig, 1, 3)
    assert d.cqs[1] == s.cqs[1]


def test_nvmecs_v0_loses_admin_queue_positions_and_features():
    """NVMECS v0 has no admin queues or features: both come back at power-on values."""
    rig = nvmecs_rig()
    s = rig.ctrl
    assert s.sqs[0].head != 0 and s.cqs[0].tail != 0
    _, dst = migrate(rig, "nvmecs-v0")
    d = dst.ctrl
    assert (d.sqs[0].head, d.sqs[0].tail, d.cqs[0].head, d.cqs[0].tail, d.cqs[0].phase) == (
        0, 0, 0, 0, 1)
    assert (d.sqs[0].base, d.cqs[0].base, d.sqs[0].size) == (s.sqs[0].base, s.cqs[0].base,
                                                             s.sqs[0].size)
    assert s.features.temp_thresh_hi == 0x160 and d.features.temp_thresh_hi == 0x157


# ---------------------------------------------------------------------- names and mutants
def test_without_produces_a_profile_that_does_not_save_the_path():
    """``Profile.without(path)`` drops exactly that path and restores it at power-on."""
    rig = Rig()
    mutant = profiles.get("full").without("cc")
    assert mutant.name == "full-without-cc" and mutant.saves == ALL_FIELDS - {"cc"}
    blob = snap.snapshot(rig.ctrl, mutant)
    assert "cc" not in cbor2.loads(blob)["state"]
    dst = snap.restore(blob, rig.ctrl.config, mutant)
    assert rig.ctrl.cc != 0 and dst.cc == 0 and dst.aqa == rig.ctrl.aqa
    with pytest.raises(KeyError):
        profiles.get("qemu-11.1").without("inflight")


def test_get_builds_without_mutants_by_name():
    """``get("full-without-cc")`` is the mutant, and its blobs load under that name."""
    mutant = profiles.get("full-without-cc")
    assert mutant == profiles.get("full").without("cc")
    rig = Rig()
    blob = snap.snapshot(rig.ctrl, mutant)
    assert snap.restore(blob, rig.ctrl.config, profiles.get("full-without-cc")).cc == 0
    assert profiles.get("qemu-11.1-without-features.temp_thresh_hi").saves == (
        profiles.get("qemu-11.1").saves - {"features.temp_thresh_hi"})


@pytest.mark.parametrize("name", ["nonsense", "full-without-nonsense",
                                  "qemu-11.1-without-inflight", "nope-without-cc", ""])
def test_unknown_profile_raises_campaign_error(name):
    """A profile name that is neither built in nor a valid mutant is a CampaignError."""
    with pytest.raises(CampaignError):
        profiles.get(name)


@pytest.mark.parametrize("made_by,loaded_by", [
    (a, b) for a in profiles.NAMES for b in (*profiles.NAMES, "full-without-cc") if a != b])
def test_snapshot_of_one_profile_is_refused_by_another(made_by, loaded_by):
    """A blob made by one profile is refused by restore under any other profile."""
    rig = Rig(made_by)
    rig.pair(1, cq_size=4, sq_size=4)
    blob = snap.snapshot(rig.ctrl, profiles.get(made_by))
    with pytest.raises(SnapshotError, match="profile"):
        snap.restore(blob, rig.ctrl.config, profiles.get(loaded_by))
    assert snap.restore(blob, rig.ctrl.config, profiles.get(made_by)).sqs.keys() == {0, 1}


@pytest.mark.parametrize("profile", profiles.NAMES)
@pytest.mark.parametrize("other", [Config(msix=False), Config(io_latency_ns=LATENCY + 1),
                                   Config(nsze=1 << 15)])
def test_snapshot_of_one_config_is_refused_by_another(profile, other):
    """A blob made by a differently configured controller is refused by restore."""
    rig = Rig(profile)
    blob = snap.snapshot(rig.ctrl, profiles.get(profile))
    assert other != rig.ctrl.config
    with pytest.raises(SnapshotError, match="configured"):
        snap.restore(blob, other, profiles.get(profile))


@pytest.mark.parametrize("profile", ["qemu-11.1", "nvmecs-v0"])
def test_a_draining_save_fetches_nothing_and_the_destination_fetches_what_it_freed(profile):
    """pre_save stops SQ processing before it drains (QEMU cancels the SQ bottom halves, a
    TP4159 Suspend stops fetching): the SQE pending behind SQ 1's used-up request pool stays
    under the saved tail although the drain frees the pool, and the destination fetches it
    at post_load, as the drained twin does."""
    rig, twin = stalled(profile), stalled(profile)
    _, dst = migrate(rig, profile)
    assert rig.ctrl.inflight == [] and rig.ctrl.sqs[1].head == 1     # saved: not fetched
    assert rig.ctrl.stop_processing is False
    twin.ctrl.drain()                                # the twin drains as the session does
    assert dst.ctrl.sqs[1].head == twin.ctrl.sqs[1].head == 2
    assert len(dst.ctrl.inflight) == len(twin.ctrl.inflight) == 1
    if profile == "qemu-11.1":                       # which also keeps CQ 2's waiting entries
        assert finish_everything(dst) == finish_everything(twin)
