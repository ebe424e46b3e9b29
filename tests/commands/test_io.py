"""NVM I/O commands on the reference controller, checked against QEMU hw/nvme behaviour.

Rules come from the reference digest: section 2.1 (PRP rules, MDTS), 3.2 (status codes) and
3.11 (NVM commands), plus ``nvme_io_cmd``/``nvme_map_prp``/``nvme_do_write`` of QEMU.  Commands
go through the host driver; hand-built buffers and PRP lists live in ``rig.scratch``.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from nvmefuzz.host import layout as L
from nvmefuzz.protocol.queues import SQE
from nvmefuzz.protocol.spec import BROADCAST_NSID, DNR, IoOpcode as IO, Status as S

BLOCK = 512
PAGE = 4096
DATA_OPS = (IO.READ, IO.WRITE, IO.COMPARE)
RANGE_OPS = (IO.READ, IO.WRITE, IO.COMPARE, IO.WRITE_ZEROES)


def page(rig, n: int, size: int = PAGE) -> int:
    """Address of the ``n``-th page of the rig's scratch memory."""
    return rig.scratch + n * size


def dsm_ranges(*ranges: tuple[int, int]) -> bytes:
    """Dataset Management ranges ``(slba, nlb)`` (context attributes zero, NLB 1-based)."""
    return b"".join(bytes(4) + nlb.to_bytes(4, "little") + slba.to_bytes(8, "little")
                    for slba, nlb in ranges)


def dsm(attr: int, nr: int) -> SQE:
    return SQE(IO.DATASET_MANAGEMENT, nsid=1, cdw10=nr - 1, cdw11=attr)


def at_fetch(rig, sqe: SQE, qid: int = 1, **kw):
    """Submit, ring and harvest with no time passing: the command must already be complete."""
    cid = rig.io_submit(sqe, qid, **kw)
    done = rig.reap(rig.host.sqs[qid].cqid)
    assert [c.cqe.cid for c in done] == [cid], f"expected a completion at fetch, got {done}"
    return done[0].cqe


def big_transfer(rig, opc: int, slba: int, first_page: int, nlb: int, list_page: int,
                 data: bytes | None = None):
    """A Read/Write of ``nlb`` blocks over contiguous scratch pages with a PRP list."""
    pages = [page(rig, first_page + i) for i in range(-(-nlb * BLOCK // PAGE))]
    if data is not None:
        rig.scatter(pages, data)
    prp1, prp2 = rig.prps(pages, list_at=page(rig, list_page))
    c = rig.io(rig.rw(opc, slba, nlb, prp1=prp1, prp2=prp2))
    return c, pages


# ---------------------------------------------------------------------- data path
class TestDataPath:
    def test_write_then_read_round_trips_through_guest_memory(self, rig, pattern):
        """Data written from host memory reads back unchanged into host memory."""
        data = pattern(1, 3 * BLOCK)
        assert rig.write(10, data).cqe.status == S.SUCCESS
        c = rig.read(10, 3)
        assert c.cqe.status == S.SUCCESS
        assert c.data == data

    def test_write_lands_in_the_namespace_store_and_only_there(self, rig, pattern):
        """A Write stores exactly its blocks in the namespace; neighbours stay unwritten."""
        data = pattern(2, 2 * BLOCK)
        rig.write(100, data)
        assert rig.store.read(100, 2) == data
        assert rig.store.read(99, 1) == bytes(BLOCK)
        assert rig.store.read(102, 1) == bytes(BLOCK)

    def test_read_copies_namespace_blocks_into_the_host_buffer(self, rig, pattern):
        """A Read returns what the namespace holds, whoever wrote it."""
        data = pattern(3, 4 * BLOCK)
        rig.store.write(7, data)
        assert rig.read(7, 4).data == data

    def test_unwritten_blocks_read_as_zeroes(self, rig):
        """Never-written logical blocks read as zeroes (the host buffer is overwritten)."""
        c = rig.io(rig.rw(IO.READ, 50, 2), data=b"\xaa" * 1024, length=1024, returns_data=True)
        assert c.cqe.status == S.SUCCESS
        assert c.data == bytes(1024)

    def test_prp1_in_page_offset_is_honoured_both_ways(self, rig, pattern):
        """PRP1 may point into a page: data moves from and to exactly that offset."""
        data = pattern(4, BLOCK)
        src, dst = page(rig, 0), page(rig, 1)
        rig.mem.write(src + 700, data)
        assert rig.io(rig.rw(IO.WRITE, 3, 1, prp1=src + 700)).cqe.status == S.SUCCESS
        assert rig.store.read(3, 1) == data
        rig.mem.write(dst, b"\x55" * PAGE)
        assert rig.io(rig.rw(IO.READ, 3, 1, prp1=dst + 700)).cqe.status == S.SUCCESS
        assert rig.mem.read(dst + 700, BLOCK) == data
        assert rig.mem.read(dst, 700) == b"\x55" * 700
        assert rig.mem.read(dst + 700 + BLOCK, PAGE - 700 - BLOCK) == b"\x55" * (
            PAGE - 700 - BLOCK)

    def test_prp1_offset_spills_into_the_prp2_page(self, rig, pattern):
        """With an in-page offset the rest of the transfer continues at PRP2."""
        data = pattern(5, BLOCK)
        p0, p5 = page(rig, 0), page(rig, 5)
        rig.mem.write(p0 + 3800, data[:296])
        rig.mem.write(p5, data[296:])
        assert rig.io(rig.rw(IO.WRITE, 0, 1, prp1=p0 + 3800, prp2=p5)).cqe.status == 0
        assert rig.store.read(0, 1) == data
        p1, p7 = page(rig, 1), page(rig, 7)
        assert rig.io(rig.rw(IO.READ, 0, 1, prp1=p1 + 3800, prp2=p7)).cqe.status == 0
        assert rig.mem.read(p1 + 3800, 296) + rig.mem.read(p7, 216) == data

    def test_prp2_is_the_second_page_of_a_two_page_transfer(self, rig, pattern):
        """Exactly one more page after PRP1: PRP2 is that page (not a list), anywhere."""
        data = pattern(6, 2 * PAGE)
        pages = [page(rig, 2), page(rig, 9)]
        rig.scatter(pages, data)
        assert rig.io(rig.rw(IO.WRITE, 0, 16, prp1=pages[0], prp2=pages[1])).cqe.status == 0
        assert rig.store.read(0, 16) == data
        back = [page(rig, 11), page(rig, 3)]
        assert rig.io(rig.rw(IO.READ, 0, 16, prp1=back[0], prp2=back[1])).cqe.status == 0
        assert rig.gather(back, 2 * PAGE) == data

    def test_prp_list_describes_transfers_beyond_two_pages(self, rig, pattern):
        """More than two pages: PRP2 points to a list of page addresses, in order."""
        data = pattern(7, 4 * PAGE)
        pages = [page(rig, n) for n in (10, 4, 7, 1)]
        rig.scatter(pages, data)
        prp1, prp2 = rig.prps(pages, list_at=page(rig, 20))
        assert rig.io(rig.rw(IO.WRITE, 64, 32, prp1=prp1, prp2=prp2)).cqe.status == 0
        assert rig.store.read(64, 32) == data
        back = [page(rig, n) for n in (2, 12, 6, 13)]
        prp1, prp2 = rig.prps(back, list_at=page(rig, 21))
        assert rig.io(rig.rw(IO.READ, 64, 32, prp1=prp1, prp2=prp2)).cqe.status == 0
        assert rig.gather(back, 4 * PAGE) == data

    def test_prp_list_pointer_may_carry_an_in_page_offset(self, rig, pattern):
        """The PRP list itself may start inside its page."""
        data = pattern(8, 3 * PAGE)
        pages = [page(rig, n) for n in (1, 2, 3)]
        rig.scatter(pages, data)
        prp1, prp2 = rig.prps(pages, list_at=page(rig, 20) + 0x100)
        assert prp2 & (PAGE - 1) == 0x100
        assert rig.io(rig.rw(IO.WRITE, 0, 24, prp1=prp1, prp2=prp2)).cqe.status == 0
        assert rig.store.read(0, 24) == data

    def test_full_list_page_chains_through_its_last_entry(self, rig, pattern):
        """A full list page with pages still to go: its last entry chains to the next list."""
        data = pattern(9, 5 * PAGE)
        pages = [page(rig, n) for n in (0, 1, 2, 3, 4)]
        rig.scatter(pages, data)
        first_list = page(rig, 20) + PAGE - 16        # room for two entries only
        second_list = page(rig, 22)
        rig.mem.write(first_list, pages[1].to_bytes(8, "little")
                      + second_list.to_bytes(8, "little"))
        rig.mem.write(second_list, b"".join(p.to_bytes(8, "little") for p in pages[2:]))
        c = rig.io(rig.rw(IO.WRITE, 8, 40, prp1=pages[0], prp2=first_list))
        assert c.cqe.status == S.SUCCESS
        assert rig.store.read(8, 40) == data

    def test_last_list_entry_is_data_when_it_is_the_final_page(self, rig, pattern):
        """The last entry of a list page is a data page if exactly one page remains."""
        data = pattern(10, 3 * PAGE)
        pages = [page(rig, n) for n in (0, 1, 2)]
        rig.scatter(pages, data)
        plist = page(rig, 20) + PAGE - 16
        rig.mem.write(plist, pages[1].to_bytes(8, "little") + pages[2].to_bytes(8, "little"))
        rig.mem.write(page(rig, 21), b"\xff" * PAGE)  # garbage where a chain would lead
        assert rig.io(rig.rw(IO.WRITE, 0, 24, prp1=pages[0], prp2=plist)).cqe.status == 0
        assert rig.store.read(0, 24) == data

    def test_transfer_of_exactly_mdts_round_trips(self, rig, pattern):
        """A transfer of exactly 2^MDTS pages (512 KiB) is accepted and moves every byte."""
        nlb = (PAGE << 7) // BLOCK
        data = pattern(11, nlb * BLOCK)
        c, _ = big_transfer(rig, IO.WRITE, 0, 100, nlb, 30, data)
        assert c.cqe.status == S.SUCCESS
        assert rig.store.read(0, nlb) == data
        c, pages = big_transfer(rig, IO.READ, 0, 300, nlb, 31)
        assert c.cqe.status == S.SUCCESS
        assert rig.gather(pages, nlb * BLOCK) == data


# ---------------------------------------------------------------------- PRP errors
class TestPrpErrors:
    @pytest.mark.parametrize("opc", DATA_OPS)
    def test_misaligned_prp2_is_invalid_prp_offset_dnr(self, rig, opc):
        """PRP2 used as the second data page must be page aligned (0:13 with DNR)."""
        sqe = rig.rw(opc, 0, 16, prp1=page(rig, 0), prp2=page(rig, 5) + 8)
        assert at_fetch(rig, sqe).status == S.INVALID_PRP_OFFSET | DNR

    @pytest.mark.parametrize("opc", DATA_OPS)
    def test_misaligned_prp_list_entry_is_invalid_prp_offset_dnr(self, rig, opc):
        """Every PRP list entry must be page aligned."""
        pages = [page(rig, 0), page(rig, 1), page(rig, 2) + 512, page(rig, 3)]
        prp1, prp2 = rig.prps(pages, list_at=page(rig, 20))
        sqe = rig.rw(opc, 0, 32, prp1=prp1, prp2=prp2)
        assert at_fetch(rig, sqe).status == S.INVALID_PRP_OFFSET | DNR

    @pytest.mark.parametrize("offset", [8, 0x200, PAGE - 8])
    def test_misaligned_list_chain_pointer_is_invalid_prp_offset_dnr(self, rig, offset):
        """A chain pointer to the next PRP list page must be page aligned, like any entry."""
        plist = page(rig, 20) + PAGE - 16
        second = page(rig, 22)
        rig.mem.write(second + offset, b"".join(page(rig, n).to_bytes(8, "little")
                                                 for n in (2, 3, 4)))
        rig.mem.write(plist, page(rig, 1).to_bytes(8, "little")
                      + (second + offset).to_bytes(8, "little"))
        sqe = rig.rw(IO.WRITE, 0, 40, prp1=page(rig, 0), prp2=plist)
        assert at_fetch(rig, sqe).status == S.INVALID_PRP_OFFSET | DNR
        assert rig.store.read(0, 40) == bytes(40 * BLOCK)

    @pytest.mark.parametrize("opc, status", [
        (IO.READ, S.DATA_TRANSFER_ERROR | DNR),
        (IO.WRITE, S.DATA_TRANSFER_ERROR | DNR),
        (IO.COMPARE, S.DATA_TRANSFER_ERROR),
    ])
    def test_prp_list_outside_guest_ram_fails_at_fetch(self, rig, opc, status):
        """An unreadable PRP list is a Data Transfer Error at fetch (QEMU adds DNR for R/W)."""
        sqe = rig.rw(opc, 0, 24, prp1=page(rig, 0), prp2=rig.unmapped)
        assert at_fetch(rig, sqe).status == status

    @pytest.mark.parametrize("opc", DATA_OPS)
    def test_data_buffer_outside_guest_ram_fails_at_completion(self, rig, opc):
        """A data buffer outside guest RAM maps fine but the transfer fails when the I/O ends."""
        cid = rig.io_submit(rig.rw(opc, 0, 1), length=BLOCK, unmapped=True)
        assert rig.reap(1) == []
        rig.target.advance(rig.latency - 1)
        assert rig.reap(1) == []
        rig.target.advance(1)
        [c] = rig.reap(1)
        assert (c.cqe.cid, c.cqe.status) == (cid, S.DATA_TRANSFER_ERROR)
        assert rig.store.read(0, 1) == bytes(BLOCK)


# ---------------------------------------------------------------------- LBA range, MDTS
class TestRangeAndSize:
    @pytest.mark.parametrize("opc", RANGE_OPS)
    def test_range_ending_past_nsze_is_lba_out_of_range_dnr(self, rig, opc):
        """SLBA + NLB > NSZE is LBA Out of Range (0:80) with DNR, at fetch."""
        nsze = rig.store.nsze
        length = 0 if opc == IO.WRITE_ZEROES else 2 * BLOCK
        cqe = at_fetch(rig, rig.rw(opc, nsze - 1, 2), length=length)
        assert cqe.status == S.LBA_OUT_OF_RANGE | DNR

    def test_the_last_block_is_in_range(self, rig, pattern):
        """A range ending exactly at NSZE is valid."""
        data = pattern(12, BLOCK)
        assert rig.write(rig.store.nsze - 1, data).cqe.status == S.SUCCESS
        assert rig.store.read(rig.store.nsze - 1, 1) == data

    @pytest.mark.parametrize("opc", RANGE_OPS)
    @pytest.mark.parametrize("slba, nlb", [((1 << 64) - 1, 2), ((1 << 64) - 16, 32),
                                            ((1 << 64) - 1024, 1024)])
    def test_slba_overflowing_64_bits_is_lba_out_of_range(self, rig, opc, slba, nlb):
        """An SLBA + NLB that overflows 64 bits is out of range, not a wrap to low LBAs."""
        length = 0 if opc == IO.WRITE_ZEROES else nlb * BLOCK
        cqe = at_fetch(rig, rig.rw(opc, slba, nlb), length=min(length, 4 * PAGE))
        assert cqe.status == S.LBA_OUT_OF_RANGE | DNR

    @pytest.mark.parametrize("opc", DATA_OPS)
    def test_transfer_beyond_mdts_is_invalid_field_dnr(self, rig, opc):
        """A data transfer larger than 2^MDTS pages (512 KiB) is Invalid Field with DNR."""
        nlb = (PAGE << 7) // BLOCK + 1
        assert at_fetch(rig, rig.rw(opc, 0, nlb)).status == S.INVALID_FIELD | DNR

    def test_mdts_is_checked_before_the_lba_range(self, rig):
        """Too long and out of range at once reports the size error (QEMU's check order)."""
        nlb = (PAGE << 7) // BLOCK + 1
        sqe = rig.rw(IO.READ, rig.store.nsze, nlb)
        assert at_fetch(rig, sqe).status == S.INVALID_FIELD | DNR

    def test_write_zeroes_is_exempt_from_mdts(self, rig, pattern):
        """Write Zeroes moves no data, so MDTS does not limit its length."""
        rig.store.write(0, pattern(13, BLOCK))
        rig.store.write(2047, pattern(14, BLOCK))
        rig.store.write(2048, pattern(15, BLOCK))
        c = rig.io(rig.rw(IO.WRITE_ZEROES, 0, 2048))
        assert c.cqe.status == S.SUCCESS
        assert rig.store.read(0, 2048) == bytes(2048 * BLOCK)
        assert rig.store.read(2048, 1) == pattern(15, BLOCK)

    def test_mdts_scales_with_the_memory_page_size(self, make_rig, pattern):
        """With CC.MPS=1 (8 KiB pages) the limit is 2^MDTS * 8 KiB = 1 MiB."""
        rig = make_rig(mps=1)
        big = 2 * PAGE
        nlb = (big << 7) // BLOCK
        pages = [page(rig, i, big) for i in range(128)]
        data = pattern(16, nlb * BLOCK)
        rig.scatter(pages, data, page=big)
        prp1, prp2 = rig.prps(pages, list_at=rig.scratch_end - big, page=big)
        assert rig.io(rig.rw(IO.WRITE, 0, nlb, prp1=prp1, prp2=prp2)).cqe.status == 0
        assert rig.store.read(0, nlb) == data
        too_long = rig.rw(IO.WRITE, 0, nlb + 1, prp1=prp1, prp2=prp2)
        assert at_fetch(rig, too_long).status == S.INVALID_FIELD | DNR


# ---------------------------------------------------------------------- namespace ID
class TestNamespaceId:
    @pytest.mark.parametrize("opc", [*RANGE_OPS, IO.DATASET_MANAGEMENT])
    @pytest.mark.parametrize("nsid", [0, 257, 0x1000, BROADCAST_NSID - 1, BROADCAST_NSID])
    def test_nsid_zero_beyond_nn_or_broadcast_is_invalid_namespace_dnr(self, rig, opc, nsid):
        """NSID 0, above NN (256) or broadcast (except Flush) is Invalid Namespace (0:0B)|DNR."""
        sqe = SQE(opc, nsid=nsid, cdw12=0)
        assert at_fetch(rig, sqe, length=BLOCK).status == S.INVALID_NSID | DNR

    @pytest.mark.parametrize("opc", [*RANGE_OPS, IO.DATASET_MANAGEMENT, IO.FLUSH])
    @pytest.mark.parametrize("nsid", [2, 100, 256])
    def test_valid_but_inactive_nsid_is_invalid_field_dnr(self, rig, opc, nsid):
        """A valid NSID with no attached namespace is Invalid Field (QEMU), with DNR."""
        sqe = SQE(opc, nsid=nsid)
        assert at_fetch(rig, sqe, length=BLOCK).status == S.INVALID_FIELD | DNR

    def test_flush_accepts_the_broadcast_nsid(self, rig):
        """Flush with NSID FFFFFFFFh flushes every namespace and succeeds after the latency."""
        cid = rig.io_submit(SQE(IO.FLUSH, nsid=BROADCAST_NSID))
        assert rig.reap(1) == []
        rig.target.advance(rig.latency)
        assert [(c.cqe.cid, c.cqe.status) for c in rig.reap(1)] == [(cid, S.SUCCESS)]

    @pytest.mark.parametrize("nsid, status", [(0, S.INVALID_NSID | DNR),
                                              (257, S.INVALID_NSID | DNR)])
    def test_flush_still_checks_a_specific_nsid(self, rig, nsid, status):
        """Flush of one namespace validates that NSID like any other command."""
        assert at_fetch(rig, SQE(IO.FLUSH, nsid=nsid)).status == status

    def test_flush_of_the_active_namespace_succeeds(self, rig):
        """Flush with NSID 1 completes successfully."""
        assert rig.io(SQE(IO.FLUSH, nsid=1)).cqe.status == S.SUCCESS

    def test_namespace_is_checked_before_the_opcode(self, rig):
        """An unknown opcode with a bad NSID reports the namespace (QEMU's check order)."""
        assert at_fetch(rig, SQE(0x7F, nsid=0)).status == S.INVALID_NSID | DNR
        assert at_fetch(rig, SQE(0x7F, nsid=2)).status == S.INVALID_FIELD | DNR


# ---------------------------------------------------------------------- opcode, FUSE
class TestOpcodeAndFuse:
    @pytest.mark.parametrize("opc", [0x03, IO.WRITE_UNCORRECTABLE, 0x7F, 0x80, 0xFF])
    def test_unsupported_io_opcode_is_invalid_opcode_dnr(self, rig, opc):
        """An opcode missing from the NVM effects table is Invalid Opcode (0:01) with DNR."""
        assert at_fetch(rig, SQE(opc, nsid=1)).status == S.INVALID_OPCODE | DNR

    @pytest.mark.parametrize("fuse", [1, 2, 3])
    @pytest.mark.parametrize("opc", RANGE_OPS)
    def test_fused_command_is_invalid_field_without_dnr(self, rig, fuse, opc):
        """Fused operations are unsupported: Invalid Field, retryable (no DNR)."""
        cqe = at_fetch(rig, rig.rw(opc, 0, 1, fuse=fuse), length=BLOCK)
        assert cqe.status == S.INVALID_FIELD

    def test_fuse_is_checked_after_the_namespace(self, rig):
        """A fused command with NSID 0 reports the namespace first."""
        assert at_fetch(rig, rig.rw(IO.READ, 0, 1, nsid=0, fuse=1)).status == (
            S.INVALID_NSID | DNR)

    def test_fuse_is_checked_before_the_opcode(self, rig):
        """A fused command with an unknown opcode reports the FUSE field."""
        assert at_fetch(rig, SQE(0x7F, nsid=1, fuse=1)).status == S.INVALID_FIELD

    def test_flush_never_looks_at_fuse(self, rig):
        """QEMU dispatches Flush before the FUSE check, so a fused Flush succeeds."""
        assert rig.io(SQE(IO.FLUSH, nsid=1, fuse=1)).cqe.status == S.SUCCESS


# ---------------------------------------------------------------------- Compare
class TestCompare:
    def test_compare_of_matching_data_succeeds(self, rig, pattern):
        """Compare succeeds when the host buffer equals the namespace blocks."""
        data = pattern(20, 2 * BLOCK)
        rig.write(30, data)
        c = rig.io(rig.rw(IO.COMPARE, 30, 2), data=data, length=len(data))
        assert c.cqe.status == S.SUCCESS

    def test_compare_mismatch_is_compare_failure_dnr(self, rig, pattern):
        """One differing byte fails the Compare with 2:85 and DNR, after the latency."""
        data = pattern(21, 2 * BLOCK)
        rig.write(30, data)
        other = data[:-1] + bytes([data[-1] ^ 1])
        cid = rig.io_submit(rig.rw(IO.COMPARE, 30, 2), data=other, length=len(other))
        assert rig.reap(1) == []
        rig.target.advance(rig.latency)
        assert [(c.cqe.cid, c.cqe.status) for c in rig.reap(1)] == [
            (cid, S.COMPARE_FAILURE | DNR)]

    def test_compare_against_unwritten_blocks_compares_zeroes(self, rig):
        """Unwritten blocks compare equal to a zero buffer and unequal to anything else."""
        assert rig.io(rig.rw(IO.COMPARE, 9, 1), data=bytes(BLOCK),
                      length=BLOCK).cqe.status == S.SUCCESS
        assert rig.io(rig.rw(IO.COMPARE, 9, 1), data=b"\x01" * BLOCK,
                      length=BLOCK).cqe.status == S.COMPARE_FAILURE | DNR


# ---------------------------------------------------------------------- Write Zeroes
class TestWriteZeroes:
    def test_write_zeroes_clears_exactly_its_range(self, rig, pattern):
        """Write Zeroes zeroes SLBA..SLBA+NLB-1 and nothing else."""
        data = pattern(22, 8 * BLOCK)
        rig.write(0, data)
        assert rig.io(rig.rw(IO.WRITE_ZEROES, 2, 3)).cqe.status == S.SUCCESS
        assert rig.read(0, 8).data == data[:2 * BLOCK] + bytes(3 * BLOCK) + data[5 * BLOCK:]


# ---------------------------------------------------------------------- Dataset Management
class TestDatasetManagement:
    def test_deallocated_range_reads_back_as_zeroes(self, rig, pattern):
        """DSM with AD deallocates the range: it reads as zeroes, neighbours are kept."""
        data = pattern(23, 8 * BLOCK)
        rig.write(0, data)
        ranges = dsm_ranges((2, 3))
        c = rig.io(dsm(4, 1), data=ranges, length=len(ranges))
        assert c.cqe.status == S.SUCCESS
        assert rig.read(0, 8).data == data[:2 * BLOCK] + bytes(3 * BLOCK) + data[5 * BLOCK:]

    def test_deallocate_skips_bad_ranges_and_applies_the_good_ones(self, rig, pattern):
        """Out-of-range, overflowing and empty ranges are skipped silently (QEMU)."""
        nsze = rig.store.nsze
        data = pattern(24, 8 * BLOCK)
        rig.write(0, data)
        rig.write(nsze - 1, pattern(25, BLOCK))
        ranges = dsm_ranges((nsze - 1, 5), ((1 << 64) - 1, 2), (0, 0), (4, 2), (nsze, 1))
        c = rig.io(dsm(4, 5), data=ranges, length=len(ranges))
        assert c.cqe.status == S.SUCCESS
        assert rig.read(0, 8).data == data[:4 * BLOCK] + bytes(2 * BLOCK) + data[6 * BLOCK:]
        assert rig.store.read(nsze - 1, 1) == pattern(25, BLOCK)

    def test_number_of_ranges_is_zero_based(self, rig, pattern):
        """NR=1 means two ranges: a third range in the buffer is ignored."""
        data = pattern(26, 8 * BLOCK)
        rig.write(0, data)
        ranges = dsm_ranges((0, 1), (2, 1), (4, 1))
        assert rig.io(dsm(4, 2), data=ranges, length=len(ranges)).cqe.status == S.SUCCESS
        got = rig.read(0, 8).data
        assert got[:BLOCK] == bytes(BLOCK)
        assert got[2 * BLOCK:3 * BLOCK] == bytes(BLOCK)
        assert got[4 * BLOCK:5 * BLOCK] == data[4 * BLOCK:5 * BLOCK]

    @pytest.mark.parametrize("attr", [0, 1, 2, 3, 0xF8])
    def test_dsm_without_deallocate_changes_nothing_and_completes_at_fetch(
            self, rig, pattern, attr):
        """Without AD QEMU has nothing to do: success at once, data untouched."""
        data = pattern(27, 4 * BLOCK)
        rig.write(0, data)
        ranges = dsm_ranges((0, 4))
        assert at_fetch(rig, dsm(attr, 1), data=ranges, length=len(ranges)).status == 0
        assert rig.store.read(0, 4) == data

    def test_deallocate_completes_after_the_io_latency(self, rig, pattern):
        """DSM with AD is backend work: it completes io_latency_ns after fetch."""
        rig.write(0, pattern(28, BLOCK))
        ranges = dsm_ranges((0, 1))
        cid = rig.io_submit(dsm(4, 1), data=ranges, length=len(ranges))
        assert rig.reap(1) == []
        rig.target.advance(rig.latency)
        assert [(c.cqe.cid, c.cqe.status) for c in rig.reap(1)] == [(cid, S.SUCCESS)]
        assert rig.store.read(0, 1) == bytes(BLOCK)

    def test_deallocate_with_no_range_to_discard_completes_at_fetch(self, rig, pattern):
        """Every range skipped (past the end, longer than DMRSL): QEMU gives the backend
        nothing and completes at once, ahead of I/O fetched before it."""
        nsze = rig.store.nsze
        rig.write(0, pattern(31, BLOCK))
        first = rig.io_submit(rig.rw(IO.READ, 0, 1), length=BLOCK)
        ranges = dsm_ranges((nsze - 1, 5), (0, rig.ctrl.dmrsl + 1))
        cid = rig.io_submit(dsm(4, 2), data=ranges, length=len(ranges))
        assert [(c.cqe.cid, c.cqe.status) for c in rig.reap(1)] == [(cid, S.SUCCESS)]
        rig.target.advance(rig.latency)
        assert [c.cqe.cid for c in rig.reap(1)] == [first]
        assert rig.store.read(0, 1) == pattern(31, BLOCK)

    def test_an_empty_range_is_a_discard_of_nothing_that_waits_for_the_backend(self, rig):
        """A zero-length range inside the namespace still goes to the backend (QEMU)."""
        ranges = dsm_ranges((3, 0))
        cid = rig.io_submit(dsm(4, 1), data=ranges, length=len(ranges))
        assert rig.reap(1) == []
        rig.target.advance(rig.latency)
        assert [c.cqe.cid for c in rig.reap(1)] == [cid]

    def test_range_buffer_prp_errors_fail_at_fetch(self, rig, pattern):
        """The range list is mapped at submission: a misaligned PRP2 fails at once (0:13|DNR)."""
        rig.write(0, pattern(29, BLOCK))
        rig.mem.write(page(rig, 0) + 16, dsm_ranges(*[(0, 1)] * 256)[:PAGE - 16])
        sqe = SQE(IO.DATASET_MANAGEMENT, nsid=1, cdw10=255, cdw11=4, prp1=page(rig, 0) + 16,
                  prp2=page(rig, 1) + 8)
        assert at_fetch(rig, sqe).status == S.INVALID_PRP_OFFSET | DNR
        assert rig.store.read(0, 1) == pattern(29, BLOCK)


# ---------------------------------------------------------------------- timing and order
class TestTiming:
    def test_io_completes_only_after_io_latency(self, rig, pattern):
        """An I/O command completes io_latency_ns of virtual time after fetch, not before."""
        data = pattern(30, BLOCK)
        cid = rig.io_submit(rig.rw(IO.WRITE, 5, 1), data=data, length=BLOCK)
        assert rig.ctrl.sqs[1].head == 1                 # fetched at the doorbell
        assert rig.reap(1) == []
        rig.target.advance(rig.latency - 1)
        assert rig.reap(1) == []
        assert rig.store.read(5, 1) == bytes(BLOCK)      # data moves when the backend finishes
        rig.target.advance(1)
        assert [(c.cqe.cid, c.cqe.status) for c in rig.reap(1)] == [(cid, S.SUCCESS)]
        assert rig.store.read(5, 1) == data

    def test_latency_is_counted_from_each_commands_fetch(self, rig):
        """Commands fetched at different times complete at their own fetch time + latency."""
        half = rig.latency // 2
        a = rig.io_submit(SQE(IO.FLUSH, nsid=1))
        rig.target.advance(half)
        b = rig.io_submit(SQE(IO.FLUSH, nsid=1))
        rig.target.advance(rig.latency - half)
        assert [c.cqe.cid for c in rig.reap(1)] == [a]
        rig.target.advance(half - 1)
        assert rig.reap(1) == []
        rig.target.advance(1)
        assert [c.cqe.cid for c in rig.reap(1)] == [b]

    def test_latency_follows_the_configuration(self, make_rig):
        """config.io_latency_ns sets the delay (here 1000 ns)."""
        rig = make_rig(latency=1000)
        cid = rig.io_submit(SQE(IO.FLUSH, nsid=1))
        rig.target.advance(999)
        assert rig.reap(1) == []
        rig.target.advance(1)
        assert [c.cqe.cid for c in rig.reap(1)] == [cid]

    def test_completion_order_equals_fetch_order(self, rig, pattern):
        """Commands fetched together complete in fetch order, each CQE with SQHD = fetch head."""
        data = pattern(31, BLOCK)
        ranges = dsm_ranges((40, 1))
        cids = [
            rig.io_submit(rig.rw(IO.WRITE, 1, 1), data=data, length=BLOCK, ring=False),
            rig.io_submit(rig.rw(IO.READ, 2, 1), length=BLOCK, ring=False),
            rig.io_submit(SQE(IO.FLUSH, nsid=1), ring=False),
            rig.io_submit(rig.rw(IO.COMPARE, 3, 1), data=bytes(BLOCK), length=BLOCK,
                          ring=False),
            rig.io_submit(rig.rw(IO.WRITE_ZEROES, 4, 8), ring=False),
            rig.io_submit(dsm(4, 1), data=ranges, length=len(ranges), ring=False),
        ]
        rig.host.ring_sq(1)
        rig.target.advance(rig.latency)
        done = rig.reap(1)
        assert [c.cqe.cid for c in done] == cids
        assert {c.cqe.status for c in done} == {S.SUCCESS}
        assert {c.cqe.sqhd for c in done} == {len(cids)}

    def test_fetch_order_across_queues_decides_completion_order(self, rig):
        """Two SQs on one CQ: the SQ whose doorbell rang first completes first."""
        rig.create_io_pair(2, 16, cqid=1)
        a = [rig.io_submit(SQE(IO.FLUSH, nsid=1), 1, ring=False) for _ in range(2)]
        b = [rig.io_submit(SQE(IO.FLUSH, nsid=1), 2, ring=False) for _ in range(2)]
        rig.host.ring_sq(2)
        rig.host.ring_sq(1)
        rig.target.advance(rig.latency)
        done = rig.reap(1)
        assert [(c.cqe.sqid, c.cqe.cid) for c in done] == [(2, b[0]), (2, b[1]), (1, a[0]),
                                                           (1, a[1])]

    def test_commands_failing_at_fetch_complete_before_inflight_ones(self, rig, pattern):
        """A command rejected at fetch is posted at once, ahead of an earlier in-flight one."""
        good = rig.io_submit(rig.rw(IO.WRITE, 0, 1), data=pattern(32, BLOCK), length=BLOCK,
                             ring=False)
        bad = rig.io_submit(rig.rw(IO.READ, 0, 1, nsid=0), ring=False)
        rig.host.ring_sq(1)
        assert [(c.cqe.cid, c.cqe.status) for c in rig.reap(1)] == [
            (bad, S.INVALID_NSID | DNR)]
        rig.target.advance(rig.latency)
        assert [c.cqe.cid for c in rig.reap(1)] == [good]


# ---------------------------------------------------------------------- SMART counters
class TestSmartCounters:
    def test_host_read_and_write_commands_are_counted(self, rig, pattern):
        """Each successful Read or Write adds one to Host Read/Write Commands."""
        for i in range(2):
            rig.write(i, pattern(40 + i, BLOCK))
        for i in range(3):
            rig.read(i, 1)
        smart = rig.smart()
        assert (smart["host_writes"], smart["host_reads"]) == (2, 3)
        assert (rig.ctrl.host_writes, rig.ctrl.host_reads) == (2, 3)

    def test_data_units_are_thousands_of_512_byte_units_rounded_up(self, rig, pattern):
        """Data Units Read/Written count 1000 x 512 bytes, rounded up."""
        assert (rig.smart()["data_units_written"], rig.smart()["data_units_read"]) == (0, 0)
        rig.write(0, pattern(43, BLOCK))
        assert rig.smart()["data_units_written"] == 1
        c, _ = big_transfer(rig, IO.WRITE, 1, 100, 999, 30, pattern(44, 999 * BLOCK))
        assert c.cqe.status == S.SUCCESS
        assert rig.smart()["data_units_written"] == 1          # exactly 1000 blocks
        rig.write(1000, pattern(45, BLOCK))
        assert rig.smart()["data_units_written"] == 2          # 1001 blocks
        c, _ = big_transfer(rig, IO.READ, 0, 300, 1000, 31)
        assert c.cqe.status == S.SUCCESS
        assert rig.smart()["data_units_read"] == 1
        rig.read(0, 1)
        assert rig.smart()["data_units_read"] == 2

    def test_failed_and_dataless_commands_are_not_counted(self, rig, pattern):
        """Rejected commands, Flush, Write Zeroes and DSM leave the I/O counters alone."""
        nsze = rig.store.nsze
        at_fetch(rig, rig.rw(IO.WRITE, nsze, 1), data=pattern(46, BLOCK), length=BLOCK)
        at_fetch(rig, rig.rw(IO.READ, 0, 1, nsid=2), length=BLOCK)
        rig.io(SQE(IO.FLUSH, nsid=1))
        rig.io(rig.rw(IO.WRITE_ZEROES, 0, 8))
        ranges = dsm_ranges((0, 1))
        rig.io(dsm(4, 1), data=ranges, length=len(ranges))
        smart = rig.smart()
        assert [smart[k] for k in ("host_reads", "host_writes", "data_units_read",
                                   "data_units_written")] == [0, 0, 0, 0]

    def test_compare_counts_as_a_read_only_when_it_matches(self, rig, pattern):
        """QEMU accounts a Compare as a read only when the data matched."""
        data = pattern(47, BLOCK)
        rig.store.write(0, data)
        bad = rig.io(rig.rw(IO.COMPARE, 0, 1), data=bytes(BLOCK), length=BLOCK)
        assert bad.cqe.status == S.COMPARE_FAILURE | DNR
        assert (rig.smart()["host_reads"], rig.smart()["data_units_read"]) == (0, 0)
        good = rig.io(rig.rw(IO.COMPARE, 0, 1), data=data, length=BLOCK)
        assert good.cqe.status == S.SUCCESS
        assert (rig.smart()["host_reads"], rig.smart()["data_units_read"]) == (1, 1)


# ---------------------------------------------------------------------- host buffers
class TestHostBuffers:
    """The host driver never gives a new command the buffer of one still outstanding."""

    @staticmethod
    def _read_then_reuse_its_entry(rig, pattern):
        """A Read in flight in SQ entry 1 of a 3-entry SQ (on an 8-entry CQ); a rejected
        command in entry 2 tells the host (by SQHD) that the SQ is empty, so the host's next
        two commands take entries 0 and 1, the Read's.  The second is a Write of block 5,
        fetched behind the Read."""
        rig.create_io_pair(3, 8)
        rig.create_io_pair(2, 3, cqid=3)
        rig.write(0, pattern(50, BLOCK), qid=2)                   # entry 0
        read = rig.io_submit(rig.rw(IO.READ, 0, 1), 2, length=BLOCK, returns_data=True)
        at_fetch(rig, SQE(0x7F, nsid=1), qid=2)                   # entry 2: SQHD 0
        assert rig.host.sqs[2].outstanding[read]                  # the Read is still out
        rig.io_submit(SQE(IO.FLUSH, nsid=1), 2, ring=False)       # entry 0
        write = rig.io_submit(rig.rw(IO.WRITE, 5, 1), 2, data=pattern(51, BLOCK),
                              length=BLOCK)                       # entry 1
        return read, write

    def test_a_write_in_the_entry_of_a_read_in_flight_writes_its_own_data(self, rig, pattern):
        read, write = self._read_then_reuse_its_entry(rig, pattern)
        out = rig.host.sqs[2].outstanding
        assert out[write].buffer != out[read].buffer
        rig.target.advance(2 * rig.latency)
        done = {c.cqe.cid: c for c in rig.reap(3)}
        assert done[read].data == pattern(50, BLOCK)
        assert done[write].cqe.status == S.SUCCESS
        assert rig.store.read(5, 1) == pattern(51, BLOCK)         # not what the Read fetched

    def test_a_buffer_is_taken_again_once_its_completion_is_consumed(self, rig, pattern):
        """Back to the entry's own window: the layout stays the same for a host that keeps
        up, and the buffer is free once the host has consumed the completion."""
        read, write = self._read_then_reuse_its_entry(rig, pattern)
        out = rig.host.sqs[2].outstanding
        moved = out[write].buffer
        rig.target.advance(2 * rig.latency)
        rig.reap(3)
        assert rig.host.sqs[2].outstanding == {}
        again = rig.io_submit(rig.rw(IO.READ, 5, 1), 2, length=BLOCK, returns_data=True)
        assert rig.host.sqs[2].outstanding[again].buffer == L.data_slot(2, 2)
        assert moved not in (L.data_slot(2, 0), L.data_slot(2, 1))

    @settings(max_examples=200, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @example(ops=["read", "reject", "reap", "read", "read"])    # entry 1's own window held
    @given(ops=st.lists(st.sampled_from(["read", "write", "reject", "wait", "reap", "peek",
                                         "stale"]), max_size=40))
    def test_no_outstanding_buffer_is_shared_or_pointed_to(self, make_rig, pattern, ops):
        """Whatever the host submits, waits for and consumes (all, or without ringing the CQ
        head, so completions stay waiting on a full CQ), and however often a doorbell rung
        past its tail makes the controller run stale entries again, the buffer of an
        outstanding command is its own: no other outstanding command's overlaps it, and no
        SQE in another SQ entry (as guest memory holds it) points into its data window."""
        rig = make_rig(io_queue=False)
        rig.create_io_pair(3, 4)
        rig.create_io_pair(2, 3, cqid=3)
        sq = rig.host.sqs[2]
        for i, op in enumerate(ops):
            if op in ("read", "write", "reject") and sq.free():
                sqe = (SQE(0x7F, nsid=1) if op == "reject" else
                       rig.rw(IO.READ if op == "read" else IO.WRITE, i % 4, 1))
                rig.io_submit(sqe, 2, data=pattern(i, BLOCK) if op == "write" else None,
                              length=BLOCK, returns_data=op == "read")
            elif op == "wait":
                rig.target.advance(rig.latency // 2)
            elif op == "reap":
                rig.reap(3)
            elif op == "peek":
                rig.host.harvest(3)                 # consumed, head not rung
            elif op == "stale":
                rig.host.ring_sq(2, (sq.tail + 1) % sq.size)
            spans = sorted((c.buffer, c.buffer + c.length) for c in sq.outstanding.values())
            assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans
            entries = [SQE.decode(rig.mem.read(L.sq_base(2) + n * 64, 64))
                       for n in range(sq.size)]
            for cid, cmd in sq.outstanding.items():
                pointing = {e.cid for e in entries
                            if cmd.window <= e.prp1 < cmd.window + L.SLOT_STRIDE}
                assert pointing <= {cid}, (cid, pointing)
