"""Queue management and queue mechanics: Create/Delete I/O CQ/SQ, phase tags, SQHD, full CQs,
SQ throttling, SQ deletion, doorbell errors.

Rules from the reference digest sections 2.3, 3.3 and 4 (QEMU ``nvme_create_cq``,
``nvme_create_sq``, ``nvme_del_sq``, ``nvme_del_cq``, ``nvme_process_sq``, ``nvme_post_cqes``,
``nvme_process_db``) and section 8 items 5, 8, 10, 13, 14.
"""

from __future__ import annotations

import pytest

from nvmefuzz.protocol import regs
from nvmefuzz.protocol.queues import SQE
from nvmefuzz.protocol.spec import (
    DNR, AdminOpcode as A, FeatureId as F, LogId, Status as S,
)

INVALID_QID = S.INVALID_QID | DNR
INVALID_QSIZE = S.INVALID_QSIZE | DNR
CQ_INVALID = S.CQ_INVALID | DNR
PRP_OFFSET = S.INVALID_PRP_OFFSET | DNR
IRQ_VECTOR = S.INVALID_IRQ_VECTOR | DNR
INVALID_FIELD = S.INVALID_FIELD | DNR


def latency(rig) -> int:
    return rig.ctrl.config.io_latency_ns


# ---------------------------------------------------------------------------- Create I/O CQ
class TestCreateCQ:
    def test_create_cq_success_gives_empty_cq_with_phase_1(self, rig):
        """A created CQ has head = tail = 0, phase 1, QSIZE+1 entries, IEN and IV as asked."""
        assert rig.create_cq(3, 15, ien=1, iv=7) == 0
        cq = rig.ctrl.cqs[3]
        assert (cq.head, cq.tail, cq.phase, cq.size, cq.ien, cq.vector) == (0, 0, 1, 16, True, 7)

    @pytest.mark.parametrize(("kwargs", "status"), [
        pytest.param({"qid": 0}, INVALID_QID, id="qid-0"),
        pytest.param({"qid": 65}, INVALID_QID, id="qid-above-max-ioqpairs"),
        pytest.param({"qid": 0xFFFF}, INVALID_QID, id="qid-ffff"),
        pytest.param({"qsize": 0}, INVALID_QSIZE, id="qsize-0"),
        pytest.param({"qsize": 0x800}, INVALID_QSIZE, id="qsize-above-mqes"),
        pytest.param({"prp1": 0x0016_0010}, PRP_OFFSET, id="prp1-offset"),
        pytest.param({"prp1": 0x0016_0800}, PRP_OFFSET, id="prp1-half-page"),
        pytest.param({"iv": 65}, IRQ_VECTOR, id="iv-msix-qsize"),
        pytest.param({"iv": 0xFFFF}, IRQ_VECTOR, id="iv-ffff"),
        pytest.param({"iv": 65, "ien": 0}, IRQ_VECTOR, id="iv-checked-without-ien"),
        pytest.param({"pc": 0}, INVALID_FIELD, id="pc-0"),
    ])
    def test_create_cq_invalid_parameter_status(self, rig, kwargs, status):
        """Each invalid Create I/O CQ parameter fails with QEMU's status, and no CQ appears."""
        args = {"qid": 1, "qsize": 7, **kwargs}
        qid = args.pop("qid")
        assert rig.create_cq(qid, args.pop("qsize"), **args) == status
        assert set(rig.ctrl.cqs) == {0}

    @pytest.mark.parametrize(("qid", "qsize", "iv"), [(64, 7, 0), (1, 0x7FF, 0), (1, 1, 64)])
    def test_create_cq_accepts_boundary_values(self, rig, qid, qsize, iv):
        """QID = max_ioqpairs, QSIZE = MQES and IV = msix_qsize - 1 are all valid."""
        assert rig.create_cq(qid, qsize, iv=iv) == 0

    def test_create_cq_existing_qid_is_invalid_queue_identifier(self, rig):
        """A CQ ID already in use fails with Invalid Queue Identifier | DNR."""
        assert rig.create_cq(1, 7) == 0
        assert rig.create_cq(1, 3) == INVALID_QID
        assert rig.ctrl.cqs[1].size == 8

    def test_create_cq_prp1_must_align_to_configured_page(self, make_rig):
        """With CC.MPS = 1 the CQ base must be 8 KiB aligned."""
        r = make_rig()
        assert r.enable(MPS=1) == regs.CSTS_RDY
        assert r.create_cq(1, 7, prp1=0x0016_1000) == PRP_OFFSET
        assert r.create_cq(1, 7, prp1=0x0016_2000) == 0

    @pytest.mark.parametrize(("iosqes", "iocqes"), [(0, 0), (6, 0), (0, 4), (7, 4), (6, 5)])
    def test_create_cq_with_cc_entry_sizes_not_6_4_is_invalid_queue_size(
            self, make_rig, iosqes, iocqes):
        """QEMU quirk: CC.IOSQES != 6 or CC.IOCQES != 4 fails Create CQ with 1:02 | DNR."""
        r = make_rig()
        assert r.enable(IOSQES=iosqes, IOCQES=iocqes) == regs.CSTS_RDY
        assert r.create_cq(1, 7) == INVALID_QSIZE

    def test_cc_entry_sizes_are_reread_at_each_create_cq(self, rig):
        """The quirk reads CC at command time; Create SQ does not check entry sizes at all."""
        assert rig.create_cq(1, 7) == 0
        rig.write("CC", regs.pack("CC", EN=1))            # EN 1->1: IOSQES = IOCQES = 0
        assert rig.create_cq(2, 7) == INVALID_QSIZE
        assert rig.create_sq(1, 1, 7) == 0

    def test_create_cq_sets_qs_created(self, rig):
        """After a CQ was created, Set Features Number of Queues is a Command Sequence Error."""
        assert rig.create_cq(1, 7) == 0
        assert rig.set_feature(F.NUMBER_OF_QUEUES, 0x000F000F).status == \
            S.COMMAND_SEQUENCE_ERROR | DNR

    @pytest.mark.parametrize(("kwargs", "status"), [
        pytest.param({"iosqes": 0, "qid": 0}, INVALID_QSIZE, id="entry-size-before-qid"),
        pytest.param({"qid": 0, "qsize": 0}, INVALID_QID, id="qid-before-qsize"),
        pytest.param({"qsize": 0, "prp1": 0x0016_0004}, INVALID_QSIZE, id="qsize-before-prp"),
        pytest.param({"prp1": 0x0016_0004, "iv": 65}, PRP_OFFSET, id="prp-before-iv"),
        pytest.param({"iv": 65, "pc": 0}, IRQ_VECTOR, id="iv-before-pc"),
        pytest.param({"qid": 70, "qsize": 0, "prp1": 4, "iv": 99, "pc": 0}, INVALID_QID,
                     id="all-bad"),
    ])
    def test_create_cq_checks_in_qemu_order(self, make_rig, kwargs, status):
        """With several bad fields, the first failing check in QEMU's order decides."""
        r = make_rig()
        assert r.enable(IOSQES=kwargs.pop("iosqes", 6)) == regs.CSTS_RDY
        args = {"qid": 1, "qsize": 7, **kwargs}
        assert r.create_cq(args.pop("qid"), args.pop("qsize"), **args) == status

    def test_create_cq_iv_nonzero_without_msix_is_invalid_interrupt_vector(self, intx_rig):
        """With MSI-X disabled only IV 0 is accepted."""
        assert intx_rig.create_cq(1, 7, iv=1) == IRQ_VECTOR
        assert intx_rig.create_cq(1, 7, iv=1, ien=0) == IRQ_VECTOR
        assert intx_rig.create_cq(1, 7, iv=0) == 0


# ---------------------------------------------------------------------------- Create I/O SQ
class TestCreateSQ:
    def test_create_sq_success_gives_empty_sq_bound_to_its_cq(self, rig):
        """A created SQ has head = tail = 0, QSIZE+1 entries and the requested CQ."""
        assert rig.create_cq(2, 7) == 0
        assert rig.create_sq(5, 2, 31) == 0
        sq = rig.ctrl.sqs[5]
        assert (sq.head, sq.tail, sq.size, sq.cqid, sq.used) == (0, 0, 32, 2, 0)

    @pytest.mark.parametrize(("kwargs", "status"), [
        pytest.param({"cqid": 0}, CQ_INVALID, id="cqid-0-admin"),
        pytest.param({"cqid": 2}, CQ_INVALID, id="cqid-missing"),
        pytest.param({"cqid": 0xFFFF}, CQ_INVALID, id="cqid-ffff"),
        pytest.param({"qid": 0}, INVALID_QID, id="qid-0"),
        pytest.param({"qid": 65}, INVALID_QID, id="qid-above-max-ioqpairs"),
        pytest.param({"qsize": 0}, INVALID_QSIZE, id="qsize-0"),
        pytest.param({"qsize": 0x800}, INVALID_QSIZE, id="qsize-above-mqes"),
        pytest.param({"prp1": 0x0014_0040}, PRP_OFFSET, id="prp1-offset"),
        pytest.param({"pc": 0}, INVALID_FIELD, id="pc-0"),
    ])
    def test_create_sq_invalid_parameter_status(self, rig, kwargs, status):
        """Each invalid Create I/O SQ parameter fails with QEMU's status, and no SQ appears."""
        assert rig.create_cq(1, 7) == 0
        args = {"qid": 1, "cqid": 1, "qsize": 7, **kwargs}
        assert rig.create_sq(args.pop("qid"), args.pop("cqid"), args.pop("qsize"),
                             **args) == status
        assert set(rig.ctrl.sqs) == {0}

    def test_create_sq_existing_qid_is_invalid_queue_identifier(self, rig):
        """An SQ ID already in use fails with Invalid Queue Identifier | DNR."""
        rig.io_pair(1)
        assert rig.create_sq(1, 1, 3) == INVALID_QID

    def test_several_sqs_may_share_one_cq(self, rig):
        """Two SQs can complete into the same CQ."""
        assert rig.create_cq(1, 15) == 0
        assert rig.create_sq(1, 1, 7) == 0
        assert rig.create_sq(2, 1, 7) == 0
        rig.flush(1)
        rig.flush(2)
        rig.ctrl.advance(latency(rig))
        assert sorted(c.sqid for c in rig.harvest(1)) == [1, 2]

    @pytest.mark.parametrize(("kwargs", "status"), [
        pytest.param({"cqid": 9, "qid": 0}, CQ_INVALID, id="cqid-before-qid"),
        pytest.param({"qid": 0, "qsize": 0}, INVALID_QID, id="qid-before-qsize"),
        pytest.param({"qsize": 0, "prp1": 8}, INVALID_QSIZE, id="qsize-before-prp"),
        pytest.param({"prp1": 8, "pc": 0}, PRP_OFFSET, id="prp-before-pc"),
    ])
    def test_create_sq_checks_in_qemu_order(self, rig, kwargs, status):
        """With several bad fields, the first failing check in QEMU's order decides."""
        assert rig.create_cq(1, 7) == 0
        args = {"qid": 1, "cqid": 1, "qsize": 7, **kwargs}
        assert rig.create_sq(args.pop("qid"), args.pop("cqid"), args.pop("qsize"),
                             **args) == status

    def test_create_sq_does_not_set_qs_created(self, rig):
        """Only Create CQ marks queues as created (QEMU sets qs_created there alone)."""
        # A destination whose migration design did not carry qs_created must keep accepting
        # Number of Queues after creating an SQ, exactly like QEMU.
        assert rig.create_cq(1, 7) == 0
        rig.ctrl.qs_created = False               # as restored without qs_created
        assert rig.create_sq(1, 1, 7) == 0
        assert rig.set_feature(F.NUMBER_OF_QUEUES, 0x000F000F).status == 0


# ---------------------------------------------------------------------------- admin dispatch
class TestAdminDispatch:
    def test_unsupported_opcode_checked_before_fuse(self, rig):
        """QEMU checks the opcode first: an unknown fused opcode is Invalid Opcode | DNR."""
        cqe = rig.admin(SQE(opc=A.KEEP_ALIVE, fuse=1))
        assert cqe.status == S.INVALID_OPCODE | DNR

    def test_psdt_checked_before_fuse(self, rig):
        """SGLs on an admin command fail with Invalid Field | DNR even when FUSE is set."""
        cqe = rig.admin(SQE(opc=A.CREATE_IO_CQ, fuse=1, psdt=1, prp1=0x0016_0000,
                            cdw10=1 | 7 << 16, cdw11=1))
        assert cqe.status == INVALID_FIELD

    def test_fused_admin_command_is_invalid_field_without_dnr(self, rig):
        """FUSE != 0 on a supported admin command fails with Invalid Field, no DNR."""
        cqe = rig.admin(SQE(opc=A.CREATE_IO_CQ, fuse=2, prp1=0x0016_0000, cdw10=1 | 7 << 16,
                            cdw11=1))
        assert cqe.status == S.INVALID_FIELD
        assert 1 not in rig.ctrl.cqs


# ---------------------------------------------------------------------------- Delete
class TestDelete:
    @pytest.mark.parametrize("qid", [0, 1, 2, 65, 0xFFFF])
    def test_delete_sq_invalid_qid(self, rig, qid):
        """Deleting SQ 0 or an SQ that does not exist fails with Invalid QID | DNR."""
        if qid == 2:
            rig.io_pair(1)                       # SQ 1 exists, SQ 2 does not
        assert rig.delete_sq(qid) == INVALID_QID

    @pytest.mark.parametrize("qid", [0, 1, 65])
    def test_delete_cq_invalid_qid_is_completion_queue_invalid(self, rig, qid):
        """QEMU quirk: deleting CQ 0 or a missing CQ fails with CQ Invalid (1:00) | DNR."""
        assert rig.delete_cq(qid) == CQ_INVALID

    def test_delete_cq_with_sq_attached_is_invalid_queue_deletion_without_dnr(self, rig):
        """A CQ that still has an SQ cannot be deleted: 1:0C, and DNR is not set."""
        rig.io_pair(1)
        assert rig.delete_cq(1) == S.INVALID_QUEUE_DELETION == 0x010C
        assert 1 in rig.ctrl.cqs

    def test_delete_sq_then_cq_succeeds_and_frees_ids(self, rig):
        """Deleting the SQ, then its CQ, succeeds and both IDs can be created again."""
        rig.io_pair(1)
        assert rig.delete_sq(1) == 0
        assert rig.delete_cq(1) == 0
        assert set(rig.ctrl.sqs) == {0} and set(rig.ctrl.cqs) == {0}
        rig.io_pair(1)

    def test_delete_sq_aborts_in_flight_io_with_sq_deletion_status(self, rig):
        """In-flight commands complete with 0:08 (no DNR) on the CQ before Delete SQ's CQE."""
        rig.io_pair(1, iv=1)
        cids = [rig.flush(1) for _ in range(3)]
        rig.ctrl.irq_log.clear()
        assert rig.delete_sq(1) == 0
        cqes = rig.harvest(1)
        assert [(c.cid, c.status, c.sqid, c.sqhd) for c in cqes] == \
            [(cid, S.ABORTED_SQ_DELETION, 1, 3) for cid in cids]
        log = rig.ctrl.irq_log
        assert log.index(("msix", 1)) < log.index(("msix", 0))
        assert rig.ctrl.inflight == []
        rig.ctrl.advance(10 * latency(rig))
        assert rig.peek(1) == []

    def test_delete_sq_drops_completions_waiting_on_full_cq(self, rig):
        """Completions of the deleted SQ still waiting for CQ space are never posted."""
        rig.io_pair(1, cq_qsize=1)               # 2 entries: one usable slot
        cids = [rig.flush(1) for _ in range(3)]
        rig.ctrl.advance(latency(rig))
        assert len(rig.ctrl.cqs[1].waiting) == 2
        assert rig.delete_sq(1) == 0
        assert rig.ctrl.cqs[1].waiting == []
        assert [c.cid for c in rig.harvest(1)] == cids[:1]
        assert rig.peek(1) == []
        assert rig.delete_cq(1) == 0

    def test_delete_sq_posts_aborts_that_fit_and_drops_the_rest(self, rig):
        """Aborted in-flight commands are posted while the CQ has room; the rest vanish."""
        rig.io_pair(1, cq_qsize=2)               # 3 entries: two usable slots
        cids = [rig.flush(1) for _ in range(4)]
        assert rig.delete_sq(1) == 0
        cqes = rig.harvest(1)
        assert [(c.cid, c.status) for c in cqes] == \
            [(cid, S.ABORTED_SQ_DELETION) for cid in cids[:2]]
        assert rig.peek(1) == [] and rig.ctrl.cqs[1].waiting == []

    def test_delete_sq_keeps_other_sqs_completions(self, rig):
        """Deleting one SQ leaves another SQ's completions on the shared CQ."""
        assert rig.create_cq(1, 1) == 0          # one usable slot
        assert rig.create_sq(1, 1, 7) == 0
        assert rig.create_sq(2, 1, 7) == 0
        rig.flush(1)
        keep = rig.flush(2)
        rig.ctrl.advance(latency(rig))
        assert rig.delete_sq(1) == 0
        assert [c.sqid for c in rig.harvest(1)] == [1]
        assert [(c.sqid, c.cid) for c in rig.harvest(1)] == [(2, keep)]


# ---------------------------------------------------------------------------- mechanics
class TestQueueMechanics:
    def test_phase_tag_inverts_when_cq_tail_wraps(self, make_rig):
        """CQEs carry phase 1 until the tail wraps from N-1 to 0, then phase 0."""
        r = make_rig()
        assert r.enable(acqs=2) == regs.CSTS_RDY  # admin CQ of 3 entries
        seen = []
        for _ in range(7):
            slot = r.cq[0]["head"]
            cid = r.submit(0, r.nop())
            raw = r.raw_cqe(0, slot)
            seen.append((slot, raw[14] & 1, int.from_bytes(raw[12:14], "little") == cid))
            assert len(r.harvest(0)) == 1
        assert seen == [(0, 1, True), (1, 1, True), (2, 1, True), (0, 0, True), (1, 0, True),
                        (2, 0, True), (0, 1, True)]

    def test_sqhd_reports_fetch_head_at_posting_time(self, rig):
        """SQHD is the SQ head when the CQE is written, not where the command was fetched."""
        rig.io_pair(1)
        first = rig.flush(1)
        later = [rig.flush(1, ring=False), rig.flush(1, ring=False)]
        rig.ring_sq(1)
        assert rig.ctrl.sqs[1].head == 3
        rig.ctrl.advance(latency(rig))
        cqes = rig.harvest(1)
        assert [(c.cid, c.sqhd, c.sqid) for c in cqes] == \
            [(cid, 3, 1) for cid in [first, *later]]

    def test_sqhd_counts_synchronous_admin_commands_fetched_in_one_pass(self, rig):
        """Admin commands fetched in one pass all report the head after the last fetch."""
        cids = [rig.place(0, rig.nop()) for _ in range(3)]
        rig.ring_sq(0)
        assert [(c.cid, c.sqhd) for c in rig.harvest(0)] == [(cid, 3) for cid in cids]

    def test_sqhd_wraps_with_the_sq(self, make_rig):
        """SQHD is taken modulo the SQ size."""
        r = make_rig()
        assert r.enable(asqs=1) == regs.CSTS_RDY   # admin SQ of 2 entries
        assert [r.admin(r.nop()).sqhd for _ in range(3)] == [1, 0, 1]

    def test_full_cq_holds_completions_in_order_until_host_frees_slots(self, rig):
        """A full CQ keeps completions waiting in FIFO order; CQ head doorbells release them."""
        rig.io_pair(1, cq_qsize=2)               # 3 entries: two usable slots
        cids = [rig.flush(1) for _ in range(5)]
        rig.ctrl.advance(latency(rig))
        assert [r.sqe.cid for r in rig.ctrl.cqs[1].waiting] == cids[2:]
        got = [c.cid for c in rig.harvest(1, ring=False)]
        assert got == cids[:2]
        assert rig.peek(1) == []                 # consumed, but the controller was not told
        rig.ring_cq(1)
        got += [c.cid for c in rig.harvest(1)]
        got += [c.cid for c in rig.harvest(1)]
        assert got == cids
        assert rig.ctrl.cqs[1].waiting == [] and rig.ctrl.sqs[1].used == 0

    def test_sq_stalls_when_all_request_objects_are_held_and_resumes(self, make_rig):
        """An SQ of N entries fetches at most N commands whose CQEs are not yet written."""
        r = make_rig()
        assert r.enable(asqs=3, acqs=1) == regs.CSTS_RDY   # SQ of 4, CQ with one slot
        first = [r.place(0, r.nop()) for _ in range(3)]
        r.ring_sq(0)
        (c1,) = r.harvest(0, ring=False)
        assert (c1.cid, c1.sqhd) == (first[0], 3)
        sq = r.ctrl.sqs[0]
        assert sq.used == 2
        more = [r.place(0, r.nop()) for _ in range(3)]     # host saw SQHD 3: 3 free slots
        r.ring_sq(0)
        assert (sq.head, sq.tail, sq.used) == (1, 2, 4)    # stalled with one unfetched
        assert [q.sqe.cid for q in r.ctrl.cqs[0].waiting] == first[1:] + more[:2]
        r.ring_cq(0)                                      # frees the slot: one CQE posts,
        assert sq.head == 2                               # its request object fetches more
        (c2,) = r.harvest(0)
        assert (c2.cid, c2.sqhd) == (first[1], 1)
        rest = []
        for _ in range(4):                                # one CQ slot: one CQE per pass
            rest += [c.cid for c in r.harvest(0)]
        assert rest == first[2:] + more
        assert (sq.used, r.ctrl.cqs[0].waiting) == (0, [])

    def test_sq_tail_doorbell_value_uses_low_16_bits(self, rig):
        """Only bits 15:0 of a doorbell write are the new tail."""
        cid = rig.place(0, rig.nop())
        rig.ctrl.mmio_write(regs.sq_tail_doorbell(0), 4, 0xABCD_0001)
        assert [c.cid for c in rig.harvest(0)] == [cid]

    def test_cq_head_doorbell_emptying_cq_decrements_cq_pending(self, rig):
        """cq_pending counts non-empty IEN CQs; a head doorbell that empties a CQ decrements it."""
        rig.place(0, rig.nop())
        rig.place(0, rig.nop())
        rig.ring_sq(0)
        assert rig.ctrl.cq_pending == 1
        rig.harvest(0, limit=1)                  # head doorbell leaves one entry
        assert rig.ctrl.cq_pending == 1
        rig.harvest(0)
        assert rig.ctrl.cq_pending == 0

    def test_repeated_cq_head_doorbell_drives_cq_pending_negative(self, rig):
        """QEMU quirk: every head write that leaves the CQ empty decrements, even if it was."""
        rig.admin(rig.nop())
        assert rig.ctrl.cq_pending == 0
        rig.ring_cq(0)
        rig.ring_cq(0)
        assert rig.ctrl.cq_pending == -2

    def test_cq_without_ien_is_not_counted_in_cq_pending(self, rig):
        """A CQ with interrupts disabled never changes cq_pending."""
        rig.io_pair(1, ien=0)
        rig.flush(1)
        rig.ctrl.advance(latency(rig))
        assert len(rig.peek(1)) == 1 and rig.ctrl.cq_pending == 0
        rig.harvest(1)
        assert rig.ctrl.cq_pending == 0

    def test_cq_head_may_pass_the_tail(self, rig):
        """QEMU quirk: a CQ head beyond the tail (but < size) is accepted, no error event."""
        rig.aer()
        rig.ring_cq(0, 5)
        assert rig.ctrl.cqs[0].head == 5
        assert rig.ctrl.aer_reqs != [] and rig.ctrl.aer_queue == []


# ---------------------------------------------------------------------------- doorbell errors
def bad_doorbells():
    sq, cq = regs.sq_tail_doorbell, regs.cq_head_doorbell
    return [
        pytest.param(sq(5), 0, 0, id="sq-missing"),
        pytest.param(cq(5), 0, 0, id="cq-missing"),
        pytest.param(sq(65), 1, 0, id="sq-above-max-ioqpairs"),
        pytest.param(cq(0xFFFF), 1, 0, id="cq-ffff"),
        pytest.param(sq(0), 8, 1, id="admin-sq-tail-eq-size"),
        pytest.param(cq(0), 8, 1, id="admin-cq-head-eq-size"),
        pytest.param(sq(1), 4, 1, id="io-sq-tail-eq-size"),
        pytest.param(cq(1), 0xFFFF, 1, id="io-cq-head-ffff"),
    ]


class TestDoorbellErrors:
    @pytest.mark.parametrize(("offset", "value", "info"), bad_doorbells())
    def test_invalid_doorbell_with_aer_outstanding_posts_error_event(
            self, rig, offset, value, info):
        """A bad doorbell completes an AER: type Error, info 0 (register) / 1 (value), log 01h."""
        rig.io_pair(1, sq_qsize=3, cq_qsize=3)
        aer = rig.aer()
        before = {q: (s.head, s.tail) for q, s in rig.ctrl.sqs.items()}
        io_cq = (rig.ctrl.cqs[1].head, rig.ctrl.cqs[1].tail)
        admin_cq_head = rig.ctrl.cqs[0].head
        rig.ctrl.mmio_write(offset, 4, value)
        # the bad write itself was ignored
        assert {q: (s.head, s.tail) for q, s in rig.ctrl.sqs.items()} == before
        assert (rig.ctrl.cqs[1].head, rig.ctrl.cqs[1].tail) == io_cq
        assert rig.ctrl.cqs[0].head == admin_cq_head
        (cqe,) = rig.harvest(0)
        assert (cqe.cid, cqe.status) == (aer, 0)
        assert cqe.dw0 == 0 | info << 8 | LogId.ERROR_INFORMATION << 16

    @pytest.mark.parametrize(("offset", "value", "info"), bad_doorbells())
    def test_invalid_doorbell_without_aer_raises_no_event(self, rig, offset, value, info):
        """Without an outstanding AER a bad doorbell is not even queued as an event."""
        rig.io_pair(1, sq_qsize=3, cq_qsize=3)
        rig.ctrl.mmio_write(offset, 4, value)
        assert rig.ctrl.aer_queue == []
        rig.aer()                                # stays outstanding: nothing to report

    def test_error_event_masks_further_errors_until_error_log_read(self, rig):
        """After one Error event, further ones are masked; reading log 01h (RAE=0) unmasks."""
        rig.aer()
        rig.ring_sq(7, 0)
        assert len(rig.harvest(0)) == 1
        second = rig.aer()
        rig.ring_sq(7, 0)                        # queued but masked
        assert rig.peek(0) == [] and len(rig.ctrl.aer_queue) == 1
        assert rig.read_error_log().status == 0  # unmasks and drops queued Error events
        assert rig.extra == [] and rig.ctrl.aer_queue == []
        rig.ring_cq(0, 0xFFFF)
        (cqe,) = rig.harvest(0)
        assert (cqe.cid, cqe.dw0) == (second, 0x00010100)

    @pytest.mark.parametrize("offset", [0x1002, 0x1006, 0x100A])
    def test_misaligned_doorbell_write_is_ignored(self, rig, offset):
        """A 2-byte doorbell write not 4-byte aligned changes nothing and raises no event."""
        rig.aer()
        rig.place(0, rig.nop())
        rig.ctrl.mmio_write(offset, 2, 1)
        assert rig.peek(0) == []
        assert rig.ctrl.aer_queue == [] and len(rig.ctrl.aer_reqs) == 1
        assert (rig.ctrl.sqs[0].tail, rig.ctrl.cqs[0].head) == (1, 0)  # AER fetched only

    def test_unaligned_4_byte_write_is_split_into_2_byte_accesses(self, rig):
        """A 4-byte write at 0x1002 is two 2-byte writes: 0x1002 (ignored) and 0x1004."""
        rig.aer()
        rig.ctrl.mmio_write(0x1002, 4, 0x4E564D65)       # upper half 0x4E56 -> CQ 0 head
        (cqe,) = rig.harvest(0)
        assert cqe.dw0 == 0x00010100                      # Error, invalid doorbell value

    def test_doorbells_before_enable_hit_no_queue(self, make_rig):
        """Before CC.EN no queue exists: doorbell writes do nothing (and no AER exists)."""
        r = make_rig()
        r.ctrl.mmio_write(regs.sq_tail_doorbell(0), 4, 1)
        r.ctrl.mmio_write(regs.cq_head_doorbell(0), 4, 1)
        assert r.ctrl.sqs == {} and r.ctrl.aer_queue == [] and r.read("CSTS") == 0
