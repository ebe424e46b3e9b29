"""Controller registers: CAP/VS, enable, reset, shutdown, interrupt masks, read-only registers.

Rules from the reference digest section 1 (register map, CAP, CC, CSTS and QEMU's
``nvme_write_bar`` / ``nvme_start_ctrl`` / ``nvme_ctrl_reset``) and section 8 items 1-3.
"""

from __future__ import annotations

import pytest

from nvmefuzz.protocol import regs
from nvmefuzz.protocol.queues import SQE
from nvmefuzz.protocol.spec import (
    DNR, AdminOpcode as A, FeatureId as F, IoOpcode as IO, Status as S,
)

QEMU_CAP = 0x0040_0820_0F01_07FF     # MQES 7FFh, CQR, TO 0Fh, CSS NVM|IOCS, MPSMAX 4 (11.1.3)
ADMIN_SQ, ADMIN_CQ = 0x0001_0000, 0x0002_0000
RDY, CFS = 0x1, 0x2
SHST_COMPLETE = 0x8


def bar_image(rig) -> list[int]:
    """Every dword of the implemented register block, as the host reads it."""
    return [rig.ctrl.mmio_read(off, 4) for off in range(0, 0x40, 4)]


class TestCapAndVersion:
    def test_cap_has_qemu_value(self, make_rig):
        """CAP = MQES 7FFh, CQR 1, TO 0Fh, CSS bits 0/6, MPSMIN 0, MPSMAX 4, DSTRD 0."""
        r = make_rig()
        assert r.read("CAP") == QEMU_CAP
        assert r.ctrl.mmio_read(0x00, 4) == 0x0F01_07FF
        assert r.ctrl.mmio_read(0x04, 4) == 0x0040_0820

    def test_cap_mqes_follows_config(self, make_rig):
        """CAP.MQES reports the configured maximum queue entries (0's based)."""
        assert make_rig(mqes=0xFF).ctrl.mmio_read(0x00, 4) == 0x0F01_00FF

    def test_vs_reports_nvme_1_4_0(self, make_rig):
        """VS reads 0001_0400h (MJR 1, MNR 4, TER 0)."""
        assert make_rig().read("VS") == 0x0001_0400

    def test_registers_read_zero_at_power_on(self, make_rig):
        """INTMS, INTMC, CC, CSTS, NSSR, AQA, ASQ and ACQ are zero after power-on."""
        r = make_rig()
        for name in ("INTMS", "INTMC", "CC", "CSTS", "NSSR", "AQA", "ASQ", "ACQ"):
            assert r.read(name) == 0, name

    def test_small_reads_are_little_endian_slices(self, make_rig):
        """A 2-byte read returns the addressed half of the register, little-endian."""
        r = make_rig()
        assert r.ctrl.mmio_read(0x00, 2) == 0x07FF
        assert r.ctrl.mmio_read(0x02, 2) == 0x0F01
        assert r.ctrl.mmio_read(0x0A, 2) == 0x0001


class TestEnable:
    def test_cc_en_0_to_1_sets_csts_rdy(self, make_rig):
        """A valid enable sets CSTS to RDY only (01h) within the same write."""
        r = make_rig()
        assert r.enable() == RDY
        assert r.read("CSTS") == RDY

    def test_enable_builds_admin_queues_from_aqa(self, make_rig):
        """The admin SQ/CQ get ASQS+1 / ACQS+1 entries and admin commands then complete."""
        r = make_rig()
        assert r.enable(asqs=3, acqs=5) == RDY
        assert (r.ctrl.sqs[0].size, r.ctrl.cqs[0].size) == (4, 6)
        assert r.admin(r.nop()).status == 0

    @pytest.mark.parametrize("kwargs", [
        pytest.param({"asq": ADMIN_SQ + 0x200}, id="asq-misaligned"),
        pytest.param({"acq": ADMIN_CQ + 0x10}, id="acq-misaligned"),
        pytest.param({"asq": ADMIN_SQ + 0x1000, "MPS": 1}, id="asq-misaligned-for-8k-page"),
        pytest.param({"acq": ADMIN_CQ + 0x1000, "MPS": 1}, id="acq-misaligned-for-8k-page"),
        pytest.param({"asqs": 0}, id="asqs-0"),
        pytest.param({"acqs": 0}, id="acqs-0"),
        *[pytest.param({"CSS": css}, id=f"css-{css}") for css in (1, 2, 3, 4, 5, 7)],
        # ASQ = ACQ = 0 is aligned to any page size, so only the MPS range check can fail
        *[pytest.param({"MPS": mps, "asq": 0, "acq": 0}, id=f"mps-{mps}")
          for mps in range(5, 16)],
    ])
    def test_enable_failure_sets_csts_cfs_only(self, make_rig, kwargs):
        """A failed enable sets CSTS to CFS only (02h) and creates no admin queue."""
        r = make_rig()
        assert r.enable(**kwargs) == CFS
        assert r.ctrl.sqs == {} and r.ctrl.cqs == {}

    @pytest.mark.parametrize("css", [0, 6])
    def test_enable_accepts_css_advertised_in_cap(self, make_rig, css):
        """CC.CSS 000b (NVM) and 110b (all I/O sets) are supported; 111b is not (QEMU 11.1)."""
        assert make_rig().enable(CSS=css) == RDY

    @pytest.mark.parametrize("mps", range(5))
    def test_enable_accepts_mps_between_mpsmin_and_mpsmax(self, make_rig, mps):
        """CC.MPS 0..4 (4 KiB..64 KiB pages) enables when ASQ/ACQ are page aligned."""
        r = make_rig()
        assert r.enable(MPS=mps) == RDY
        assert r.ctrl.page_size == 4096 << mps

    def test_enable_does_not_check_iosqes_iocqes(self, make_rig):
        """nvme_start_ctrl ignores CC.IOSQES/IOCQES: zero entry sizes still enable."""
        assert make_rig().enable(IOSQES=0, IOCQES=0) == RDY

    def test_enable_failure_overwrites_shst_with_cfs_only(self, make_rig):
        """A failed enable sets CSTS to exactly CFS, dropping a shutdown-complete SHST."""
        r = make_rig()
        r.write("CC", regs.pack("CC", SHN=regs.SHN_NORMAL))
        assert r.read("CSTS") == SHST_COMPLETE
        r.program_admin(asqs=0)
        r.write("CC", regs.pack("CC", EN=1, SHN=regs.SHN_NORMAL, IOSQES=6, IOCQES=4))
        assert r.read("CSTS") == CFS

    def test_enable_with_aligned_zero_bases_succeeds_at_max_page(self, make_rig):
        """ASQ = ACQ = 0 with MPS = MPSMAX (64 KiB pages) enables: only alignment matters."""
        r = make_rig()
        assert r.enable(MPS=4, asq=0, acq=0) == RDY

    def test_enable_together_with_shutdown_reports_rdy_only(self, make_rig):
        """EN 0->1 overwrites CSTS with RDY, dropping the SHST that SHN set in the same write."""
        r = make_rig()
        assert r.enable(SHN=regs.SHN_NORMAL) == RDY

    def test_cc_write_with_en_still_1_latches_nothing_new(self, rig):
        """EN 1->1 stores CC as written but keeps the page size latched at enable."""
        cc = regs.pack("CC", EN=1, MPS=1, IOSQES=6, IOCQES=4)
        rig.write("CC", cc)
        assert rig.read("CC") == cc
        assert rig.read("CSTS") == RDY
        # A 4 KiB-aligned (not 8 KiB-aligned) CQ base is still accepted: the page is 4 KiB.
        assert rig.create_cq(1, 7, prp1=0x0016_1000) == 0

    def test_cfs_cleared_by_disable_then_good_enable(self, make_rig):
        """After a failed enable, EN 1->0 clears CSTS and a valid enable then works."""
        r = make_rig()
        assert r.enable(asqs=0) == CFS
        r.disable()
        assert r.read("CSTS") == 0
        assert r.enable() == RDY

    def test_cc_stores_written_value_without_masking(self, make_rig):
        """CC keeps every written bit, reserved ones included (QEMU stores the whole dword)."""
        r = make_rig()
        value = regs.pack("CC", MPS=3, AMS=7, IOSQES=6, IOCQES=4) | 1 << 24 | 1 << 31
        r.write("CC", value)
        assert r.read("CC") == value


class TestReset:
    def test_cc_en_1_to_0_clears_csts_and_cc(self, rig):
        """A Controller Level Reset leaves CSTS = 0 and CC = 0 (the written value is lost)."""
        rig.write("CC", regs.pack("CC", IOSQES=6, IOCQES=4, MPS=2))
        assert rig.read("CSTS") == 0
        assert rig.read("CC") == 0

    def test_reset_keeps_aqa_asq_acq(self, rig):
        """AQA, ASQ and ACQ survive a controller reset."""
        before = (rig.read("AQA"), rig.read("ASQ"), rig.read("ACQ"))
        rig.disable()
        assert (rig.read("AQA"), rig.read("ASQ"), rig.read("ACQ")) == before
        assert before == (0x0007_0007, ADMIN_SQ, ADMIN_CQ)

    def test_reset_clears_interrupt_mask(self, rig):
        """INTMS (and INTMC, which mirrors it) read 0 after a reset."""
        rig.write("INTMS", 0x5)
        rig.disable()
        assert rig.read("INTMS") == 0
        assert rig.read("INTMC") == 0

    def test_reset_frees_admin_and_io_queues(self, rig):
        """All queues are deleted: after re-enable the same I/O queue IDs can be created."""
        rig.io_pair(1)
        rig.disable()
        assert rig.ctrl.sqs == {} and rig.ctrl.cqs == {}
        assert rig.enable() == RDY
        assert rig.create_cq(1, 7) == 0
        assert rig.create_sq(1, 1, 7) == 0

    def test_reset_drops_outstanding_aers_without_completion(self, rig):
        """Outstanding AERs vanish: no CQE is posted and the AER limit is free again."""
        rig.aer()
        head = rig.cq[0]["head"]
        rig.disable()
        assert rig.ctrl.mem.read(ADMIN_CQ + head * 16, 16) == bytes(16)
        assert rig.enable() == RDY
        for _ in range(4):                         # AERL = 3: four may be outstanding
            rig.aer()
        rig.submit(0, SQE(opc=A.ASYNC_EVENT_REQUEST))
        assert [c.status for c in rig.harvest(0)] == [S.AER_LIMIT_EXCEEDED]

    def test_reset_drops_completions_of_in_flight_io(self, rig):
        """I/O in flight at reset is drained but never completes into the old CQ."""
        rig.io_pair(1)
        rig.flush(1)
        base = rig.cq[1]["base"]
        rig.disable()
        rig.ctrl.advance(10 * rig.ctrl.config.io_latency_ns)
        assert rig.ctrl.mem.read(base, 16 * 8) == bytes(16 * 8)
        assert rig.ctrl.inflight == []

    def test_reset_drains_in_flight_writes_into_the_namespace(self, rig):
        """nvme_ctrl_reset drains in-flight AIO first: a pending Write's data lands."""
        rig.io_pair(1)
        data = bytes(range(256)) * 2
        rig.ctrl.mem.write(0x0300_0000, data)
        rig.submit(1, SQE(opc=IO.WRITE, nsid=1, prp1=0x0300_0000, cdw10=7, cdw12=0))
        assert rig.ctrl.store.read(7, 1) == bytes(512)
        rig.disable()
        assert rig.ctrl.store.read(7, 1) == data

    def test_reset_keeps_feature_values(self, rig):
        """Temperature threshold, async event config and write cache survive a reset."""
        assert rig.set_feature(F.TEMPERATURE_THRESHOLD, 0x160).status == 0
        assert rig.set_feature(F.ASYNC_EVENT_CONFIG, 0x100).status == 0
        assert rig.set_feature(F.VOLATILE_WRITE_CACHE, 0).status == 0
        rig.disable()
        assert rig.enable() == RDY
        assert rig.get_feature(F.TEMPERATURE_THRESHOLD).dw0 == 0x160
        assert rig.get_feature(F.ASYNC_EVENT_CONFIG).dw0 == 0x100
        assert rig.get_feature(F.VOLATILE_WRITE_CACHE).dw0 == 0

    def test_reset_restores_write_atomicity_disable_normal(self, rig):
        """nvme_ctrl_reset sets DN back to the atomic.dn parameter (off by default)."""
        assert rig.set_feature(F.WRITE_ATOMICITY, 1).status == 0
        assert rig.get_feature(F.WRITE_ATOMICITY).dw0 == 1
        rig.disable()
        assert rig.enable() == RDY
        assert rig.get_feature(F.WRITE_ATOMICITY).dw0 == 0

    def test_reset_clears_qs_created(self, rig):
        """After a reset Set Features Number of Queues is accepted again."""
        assert rig.create_cq(1, 7) == 0
        assert rig.set_feature(F.NUMBER_OF_QUEUES, 0x3F003F).status == \
            S.COMMAND_SEQUENCE_ERROR | DNR
        rig.disable()
        assert rig.enable() == RDY
        assert rig.set_feature(F.NUMBER_OF_QUEUES, 0x3F003F).status == 0


class TestShutdown:
    @pytest.mark.parametrize("shn", [regs.SHN_NORMAL, regs.SHN_ABRUPT, 3])
    def test_shn_set_reports_shutdown_complete_immediately(self, rig, shn):
        """SHN 0 -> non-zero sets CSTS.SHST = 10b in the same write; RDY stays set."""
        rig.write("CC", rig.read("CC") | shn << 14)
        assert rig.read("CSTS") == RDY | SHST_COMPLETE

    def test_shn_cleared_returns_shst_to_normal(self, rig):
        """SHN non-zero -> 0 clears CSTS.SHST."""
        cc = rig.read("CC")
        rig.write("CC", cc | regs.SHN_NORMAL << 14)
        rig.write("CC", cc)
        assert rig.read("CSTS") == RDY

    def test_shn_change_between_nonzero_values_keeps_shst(self, rig):
        """SHN 01b -> 10b is not a new shutdown request: SHST stays 10b."""
        cc = rig.read("CC")
        rig.write("CC", cc | regs.SHN_NORMAL << 14)
        rig.write("CC", cc | regs.SHN_ABRUPT << 14)
        assert rig.read("CSTS") == RDY | SHST_COMPLETE

    def test_commands_still_processed_after_shutdown(self, rig):
        """Shutdown neither deletes queues nor stops processing (QEMU quirk)."""
        rig.io_pair(1)
        rig.write("CC", rig.read("CC") | regs.SHN_NORMAL << 14)
        assert rig.admin(rig.nop()).status == 0
        rig.flush(1)
        rig.ctrl.advance(rig.ctrl.config.io_latency_ns)
        assert [c.status for c in rig.harvest(1)] == [0]

    def test_shutdown_while_disabled_sets_shst_only(self, make_rig):
        """SHN written with EN=0 reports SHST = 10b without RDY."""
        r = make_rig()
        r.write("CC", regs.pack("CC", SHN=regs.SHN_NORMAL))
        assert r.read("CSTS") == SHST_COMPLETE


class TestInterruptMaskRegisters:
    def test_intms_write_sets_mask_bits(self, rig):
        """INTMS is write-1-to-set: writes accumulate, zeros change nothing."""
        rig.write("INTMS", 0x5)
        rig.write("INTMS", 0x2)
        rig.write("INTMS", 0x0)
        assert rig.read("INTMS") == 0x7

    def test_intmc_write_clears_mask_bits(self, rig):
        """INTMC is write-1-to-clear on the same mask."""
        rig.write("INTMS", 0xFFFF_FFFF)
        rig.write("INTMC", 0x8000_0005)
        assert rig.read("INTMS") == 0x7FFF_FFFA

    def test_intmc_reads_current_mask(self, rig):
        """Reading INTMC returns the current mask, like INTMS."""
        rig.write("INTMS", 0x0000_0F0F)
        rig.write("INTMC", 0x0000_0003)
        assert rig.read("INTMC") == rig.read("INTMS") == 0x0000_0F0C


class TestReadOnlyRegisters:
    @pytest.mark.parametrize(("offset", "size", "value"), [
        pytest.param(0x00, 8, 0, id="cap-8"),
        pytest.param(0x00, 4, 0xFFFF_FFFF, id="cap-lo"),
        pytest.param(0x04, 4, 0xFFFF_FFFF, id="cap-hi"),
        pytest.param(0x08, 4, 0x0002_0000, id="vs"),
        pytest.param(0x18, 4, 0xFFFF_FFFF, id="reserved-18"),
        pytest.param(0x1C, 4, 0xFFFF_FFFF, id="csts-all"),
        pytest.param(0x1C, 4, 0x10, id="csts-nssro-w1c"),
        pytest.param(0x1C, 4, 0x0, id="csts-zero"),
        pytest.param(0x20, 4, regs.NSSR_MAGIC, id="nssr-magic"),
        pytest.param(0x20, 4, 0x1234, id="nssr-other"),
        pytest.param(0x38, 4, 0xFFFF_FFFF, id="cmbloc"),
        pytest.param(0x3C, 4, 0xFFFF_FFFF, id="cmbsz"),
        pytest.param(0x16, 2, 0xFFFF, id="cc-upper-half"),
    ])
    def test_writes_to_read_only_registers_are_ignored(self, rig, offset, size, value):
        """CAP, VS, CSTS, NSSR, CMB and unmapped offsets ignore writes; nothing resets."""
        rig.io_pair(1)
        before = bar_image(rig)
        rig.ctrl.mmio_write(offset, size, value)
        assert bar_image(rig) == before
        assert set(rig.ctrl.sqs) == {0, 1}
        assert rig.admin(rig.nop()).status == 0

    def test_nssr_reads_zero_after_magic_write(self, rig):
        """NSSR reads 0 even after the reset magic was written (NSSRS=0, unsupported)."""
        rig.write("NSSR", regs.NSSR_MAGIC)
        assert rig.read("NSSR") == 0
        assert rig.read("CSTS") == RDY


class TestAdminQueueRegisters:
    @pytest.mark.parametrize("name", ["ASQ", "ACQ"])
    def test_base_register_8_byte_write_reads_back(self, make_rig, name):
        """An 8-byte write stores the whole 64-bit base address."""
        r = make_rig()
        r.write(name, 0x0000_0012_3456_7000)
        assert r.read(name) == 0x0000_0012_3456_7000

    @pytest.mark.parametrize("name", ["ASQ", "ACQ"])
    def test_base_register_4_byte_halves_are_independent(self, make_rig, name):
        """A 4-byte write at +0 sets the low half, at +4 the high half; the other is kept."""
        r = make_rig()
        off = regs.OFFSET[name]
        r.ctrl.mmio_write(off + 4, 4, 0x0000_00AB)
        r.ctrl.mmio_write(off, 4, 0x1234_5000)
        assert r.read(name) == 0x0000_00AB_1234_5000
        r.ctrl.mmio_write(off, 4, 0x0000_1000)
        assert r.read(name) == 0x0000_00AB_0000_1000
        r.ctrl.mmio_write(off + 4, 4, 0)
        assert r.read(name) == 0x0000_0000_0000_1000
        assert r.ctrl.mmio_read(off, 4) == 0x1000 and r.ctrl.mmio_read(off + 4, 4) == 0

    def test_aqa_stores_whole_dword(self, make_rig):
        """AQA keeps every written bit, reserved ones included."""
        r = make_rig()
        r.write("AQA", 0xFFFF_FFFF)
        assert r.read("AQA") == 0xFFFF_FFFF


class TestDoorbellReads:
    def test_doorbell_reads_return_zero(self, rig):
        """SQ tail and CQ head doorbells read as 0, whatever was written."""
        rig.io_pair(1)
        rig.place(0, rig.nop())
        rig.ring_sq(0)
        rig.flush(1)
        for offset in (0x1000, 0x1004, 0x1008, 0x100C, 0x1FFC):
            assert rig.ctrl.mmio_read(offset, 4) == 0, hex(offset)

    @pytest.mark.parametrize("offset", [0x40, 0x50, 0x64, 0xE00, 0xFFC])
    def test_unimplemented_register_offsets_read_zero(self, rig, offset):
        """Offsets past the implemented registers (no CMB, PMR, boot partitions) read 0."""
        assert rig.ctrl.mmio_read(offset, 4) == 0
