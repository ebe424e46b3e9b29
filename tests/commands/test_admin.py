"""Admin commands: Identify, Get Log Page, Get/Set Features, opcode/PSDT/FUSE checks, dbbuf.

Rules: reference digest sections 2.1 (PSDT, FUSE), 3.1 (supported opcodes), 3.4 (Identify),
3.5 (Get Log Page), 3.6 (features) and 3.9 (Doorbell Buffer Config), checked against QEMU
``nvme_admin_cmd``, ``nvme_identify``, ``nvme_get_log``, ``nvme_get_feature``,
``nvme_set_feature`` and ``nvme_dbbuf_config``.  Expected values are written out here, not
read back from the model's own tables.
"""

from __future__ import annotations

import pytest

from nvmefuzz.host import layout as L
from nvmefuzz.model import features
from nvmefuzz.protocol import regs, structures
from nvmefuzz.protocol.queues import SQE
from nvmefuzz.protocol.spec import (
    BROADCAST_NSID, DNR, AdminOpcode as A, FeatureId as F, IoOpcode as IO, LogId, Status as S,
)

PAGE = 4096
MDTS_BYTES = PAGE << 7
ID_SIZE = 4096

#: Get Features SEL=3: bit 1 namespace specific, bit 2 changeable (QEMU nvme_feature_cap)
CAPS = {0x01: 0, 0x02: 0, 0x04: 4, 0x05: 6, 0x06: 4, 0x07: 4, 0x08: 0, 0x09: 0, 0x0A: 4,
        0x0B: 4, 0x0E: 4, 0x16: 4, 0x19: 4}
#: SEL=1/2 (default, saved) after power-on: Arbitration AB=7, temperature over-threshold
#: 343 K, queues 64/64 (0's based), interrupt vector 0 is the admin vector (CD set)
DEFAULTS = {0x01: 7, 0x02: 0, 0x04: 0x157, 0x05: 0, 0x06: 0, 0x07: 0x3F003F, 0x08: 0,
            0x09: 1 << 16, 0x0A: 0, 0x0B: 0, 0x0E: 0, 0x16: 0, 0x19: 0}
#: SEL=0 at power-on: as DEFAULTS except the volatile write cache, which is enabled
CURRENT = {**DEFAULTS, 0x06: 1}
NS_SPECIFIC = {0x05}
NOT_CHANGEABLE = (0x01, 0x02, 0x08, 0x09)
UNSUPPORTED_FIDS = (0x00, 0x03, 0x0C, 0x0D, 0x0F, 0x10, 0x7F, 0x80, 0xFF)
DATA_LENGTH = {0x0E: 8, 0x16: 512}
LOGS = [(LogId.ERROR_INFORMATION, 64), (LogId.SMART_HEALTH, 512), (LogId.FW_SLOT, 512),
        (LogId.CHANGED_NS_LIST, 4096), (LogId.COMMANDS_SUPPORTED_EFFECTS, 4096)]


def nsid_for(fid: int) -> int:
    return 1 if fid in NS_SPECIFIC else 0


def u32s(data: bytes) -> list[int]:
    return [int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data), 4)]


def timestamp_of(c) -> tuple[int, int, int]:
    """(milliseconds, synch bit, origin) of a Get Features Timestamp completion."""
    raw = int.from_bytes(c.data, "little")
    return raw & ((1 << 48) - 1), raw >> 48 & 1, raw >> 49 & 7


# ---------------------------------------------------------------------- Identify
class TestIdentify:
    def test_identify_controller_reports_qemus_values(self, rig):
        """CNS 01h returns QEMU's controller identity and limits."""
        c = rig.identify(1)
        assert c.cqe.status == S.SUCCESS
        d = structures.parse(structures.ID_CTRL, c.data)
        assert (d["vid"], d["ssvid"]) == (0x1B36, 0x1AF4)
        assert d["sn"] == b"nvmefuzz".ljust(20)
        assert d["mn"] == b"QEMU NVMe Ctrl".ljust(40)
        assert d["fr"] == b"1.0".ljust(8)
        assert d["ieee"] == 0x525400
        assert (d["mdts"], d["ver"], d["cntrltype"]) == (7, 0x00010400, 1)
        assert (d["acl"], d["aerl"]) == (3, 3)
        assert (d["sqes"], d["cqes"]) == (0x66, 0x44)
        assert d["nn"] == 256
        assert (d["wctemp"], d["cctemp"]) == (0x157, 0x175)
        assert d["oacs"] & 1 << 8                         # Doorbell Buffer Config
        assert d["oaes"] & 1 << 8                         # namespace attribute notices
        oncs = d["oncs"]
        assert [oncs >> bit & 1 for bit in (0, 1, 2, 3, 4, 6)] == [1, 0, 1, 1, 1, 1]
        assert d["vwc"] & 1
        assert d["subnqn"].rstrip(b"\0") == b"nqn.2019-08.org.qemu:nvmefuzz"

    @pytest.mark.parametrize("nsid", [0, 1, 5, BROADCAST_NSID])
    def test_identify_controller_ignores_the_nsid(self, rig, nsid):
        """CNS 01h does not look at the NSID."""
        c = rig.admin(SQE(A.IDENTIFY, nsid=nsid, cdw10=1), length=ID_SIZE, returns_data=True)
        assert c.cqe.status == S.SUCCESS
        assert c.data == rig.identify(1).data

    def test_identify_namespace_describes_the_namespace(self, rig):
        """CNS 00h for NSID 1: size, capacity and use equal NSZE; LBA format 0 is 512 B."""
        d = structures.parse(structures.ID_NS, rig.identify(0, nsid=1).data)
        nsze = rig.ctrl.config.nsze
        assert (d["nsze"], d["ncap"], d["nuse"]) == (nsze, nsze, nsze)
        assert d["flbas"] & 0xF == 0
        assert d["lbaf0"] >> 16 & 0xFF == 9

    @pytest.mark.parametrize("cns", [0x00, 0x03, 0x05, 0x08])
    @pytest.mark.parametrize("nsid", [0, 257, 0x10000, BROADCAST_NSID])
    def test_namespace_structures_reject_invalid_nsids(self, rig, cns, nsid):
        """NSID 0, above NN or broadcast is Invalid Namespace (0:0B) with DNR."""
        assert rig.identify(cns, nsid=nsid).cqe.status == S.INVALID_NSID | DNR

    @pytest.mark.parametrize("cns", [0x00, 0x05, 0x08])
    @pytest.mark.parametrize("nsid", [2, 256])
    def test_inactive_namespace_returns_a_zero_structure(self, rig, cns, nsid):
        """A valid NSID with no namespace returns 4096 zero bytes, successfully."""
        c = rig.admin(SQE(A.IDENTIFY, nsid=nsid, cdw10=cns), data=b"\xee" * ID_SIZE,
                      length=ID_SIZE, returns_data=True)
        assert (c.cqe.status, c.data) == (S.SUCCESS, bytes(ID_SIZE))

    @pytest.mark.parametrize("nsid, ids", [(0, [1]), (1, []), (0xFFFFFFFD, [])])
    def test_active_namespace_list_lists_nsids_above_the_given_one(self, rig, nsid, ids):
        """CNS 02h lists active NSIDs greater than NSID, zero-terminated, 4096 bytes."""
        c = rig.admin(SQE(A.IDENTIFY, nsid=nsid, cdw10=2), data=b"\xee" * ID_SIZE,
                      length=ID_SIZE, returns_data=True)
        assert c.cqe.status == S.SUCCESS
        listed = u32s(c.data)
        assert listed[:len(ids)] == ids
        assert set(listed[len(ids):]) == {0}

    @pytest.mark.parametrize("cns", [0x02, 0x07])
    @pytest.mark.parametrize("nsid", [0xFFFFFFFE, BROADCAST_NSID])
    def test_namespace_lists_reject_the_two_highest_nsids(self, rig, cns, nsid):
        """FFFFFFFEh and FFFFFFFFh cannot start a list: Invalid Namespace with DNR."""
        assert rig.identify(cns, nsid=nsid).cqe.status == S.INVALID_NSID | DNR

    def test_namespace_descriptor_list_names_the_nvm_command_set(self, rig):
        """CNS 03h for NSID 1 returns descriptors including CSI = NVM (type 4, length 1)."""
        c = rig.identify(3, nsid=1)
        assert c.cqe.status == S.SUCCESS
        found, pos, data = {}, 0, c.data
        while data[pos]:
            nidt, nidl = data[pos], data[pos + 1]
            found[nidt] = data[pos + 4:pos + 4 + nidl]
            pos += 4 + nidl
        assert found[4] == b"\x00"
        assert set(found) == {4}                          # QEMU 11.1.3: no UUID by default
        assert set(data[pos:]) == {0}

    @pytest.mark.parametrize("nsid", [2, 256])
    def test_namespace_descriptor_list_of_an_inactive_nsid_is_invalid_field(self, rig, nsid):
        """CNS 03h needs an attached namespace: otherwise Invalid Field with DNR."""
        assert rig.identify(3, nsid=nsid).cqe.status == S.INVALID_FIELD | DNR

    @pytest.mark.parametrize("csi, status", [(0, S.SUCCESS), (2, S.INVALID_FIELD | DNR),
                                             (1, S.INVALID_FIELD | DNR),
                                             (0xFF, S.INVALID_FIELD | DNR)])
    def test_command_set_specific_namespace_needs_the_namespace_command_set(
            self, rig, csi, status):
        """CNS 05h answers CSI NVM for an NVM namespace; any other CSI is Invalid Field."""
        assert rig.identify(5, nsid=1, cdw11=csi << 24).cqe.status == status

    @pytest.mark.parametrize("csi, status", [(0, S.SUCCESS), (2, S.SUCCESS),
                                             (1, S.INVALID_FIELD | DNR),
                                             (3, S.INVALID_FIELD | DNR)])
    def test_command_set_specific_controller_knows_nvm_and_zoned(self, rig, csi, status):
        """CNS 06h answers the NVM and Zoned command sets, Invalid Field for the rest."""
        assert rig.identify(6, cdw11=csi << 24).cqe.status == status

    @pytest.mark.parametrize("csi, ids", [(0, [1]), (2, [])])
    def test_command_set_active_namespace_list_filters_by_csi(self, rig, csi, ids):
        """CNS 07h lists active namespaces of the given command set only."""
        c = rig.identify(7, nsid=0, cdw11=csi << 24)
        assert c.cqe.status == S.SUCCESS
        assert u32s(c.data)[:2] == (ids + [0, 0])[:2]

    def test_command_set_active_namespace_list_rejects_unknown_csi(self, rig):
        """CNS 07h with a CSI other than NVM or Zoned is Invalid Field with DNR."""
        assert rig.identify(7, cdw11=1 << 24).cqe.status == S.INVALID_FIELD | DNR

    def test_command_set_independent_namespace_of_the_active_namespace(self, rig):
        """CNS 08h for NSID 1 succeeds with a 4096-byte structure."""
        c = rig.identify(8, nsid=1)
        assert (c.cqe.status, len(c.data)) == (S.SUCCESS, ID_SIZE)

    @pytest.mark.parametrize("cns", [0x04, 0x09, 0x20, 0x80, 0xFF])
    def test_unknown_cns_is_invalid_field_dnr(self, rig, cns):
        """A CNS value the controller does not implement is Invalid Field with DNR."""
        assert rig.identify(cns, nsid=1).cqe.status == S.INVALID_FIELD | DNR


# ---------------------------------------------------------------------- Get Log Page
class TestGetLogPage:
    @pytest.mark.parametrize("lid, size", LOGS)
    def test_a_log_transfers_at_most_its_own_size(self, rig, lid, size):
        """Asking for more than the log holds transfers exactly the log."""
        c = rig.get_log(lid, size + 64, fill=0xEE)
        assert c.cqe.status == S.SUCCESS
        assert c.data[size:] == b"\xee" * 64
        assert rig.get_log(lid, size).data == c.data[:size]

    @pytest.mark.parametrize("lid, size", LOGS)
    def test_the_last_dword_of_a_log_can_be_read(self, rig, lid, size):
        """Offset size-4 with a one-dword length is valid and transfers four bytes."""
        c = rig.get_log(lid, 8, offset=size - 4, fill=0xEE, rae=True)
        assert c.cqe.status == S.SUCCESS
        assert c.data[4:] == b"\xee" * 4

    @pytest.mark.parametrize("lid, size", LOGS)
    @pytest.mark.parametrize("extra", [0, 4, 1 << 32])
    def test_offset_at_or_beyond_the_log_is_invalid_field_dnr(self, rig, lid, size, extra):
        """An offset at or past the end of the log (LPOU included) is Invalid Field|DNR."""
        c = rig.get_log(lid, 64, offset=size + extra)
        assert c.cqe.status == S.INVALID_FIELD | DNR

    @pytest.mark.parametrize("lid", [lid for lid, _ in LOGS])
    @pytest.mark.parametrize("offset", [1, 2, 3, 6, 0x101])
    def test_offset_not_dword_aligned_is_invalid_field_dnr(self, rig, lid, offset):
        """LPOL must be dword aligned."""
        assert rig.get_log(lid, 64, offset=offset).cqe.status == S.INVALID_FIELD | DNR

    @pytest.mark.parametrize("lid", [lid for lid, _ in LOGS])
    def test_length_beyond_mdts_is_invalid_field_dnr(self, rig, lid):
        """NUMD (NUMDU:NUMDL) describing more than 2^MDTS pages is Invalid Field|DNR."""
        assert rig.get_log(lid, MDTS_BYTES + 4).cqe.status == S.INVALID_FIELD | DNR
        assert rig.get_log(lid, MDTS_BYTES).cqe.status == S.SUCCESS

    @pytest.mark.parametrize("lid", [0x00, 0x06, 0x07, 0x08, 0x0C, 0x70, 0x80, 0xC0, 0xFF])
    def test_unknown_log_identifier_is_invalid_field_dnr(self, rig, lid):
        """QEMU answers an unsupported LID with Invalid Field (not Invalid Log Page)."""
        assert rig.get_log(lid, 512).cqe.status == S.INVALID_FIELD | DNR

    @pytest.mark.parametrize("nsid, status", [(1, S.SUCCESS), (BROADCAST_NSID, S.SUCCESS),
                                              (0, S.INVALID_NSID | DNR),
                                              (2, S.INVALID_NSID | DNR),
                                              (257, S.INVALID_NSID | DNR)])
    def test_smart_log_nsid_must_be_active_or_broadcast(self, rig, nsid, status):
        """SMART / Health needs an active namespace or FFFFFFFFh, else Invalid Namespace."""
        assert rig.get_log(LogId.SMART_HEALTH, 512, nsid=nsid).cqe.status == status

    @pytest.mark.parametrize("lid", [LogId.ERROR_INFORMATION, LogId.FW_SLOT,
                                     LogId.CHANGED_NS_LIST, LogId.COMMANDS_SUPPORTED_EFFECTS])
    @pytest.mark.parametrize("nsid", [0, 2, 257])
    def test_controller_logs_ignore_the_nsid(self, rig, lid, nsid):
        """Logs other than SMART do not check the NSID."""
        assert rig.get_log(lid, 64, nsid=nsid).cqe.status == S.SUCCESS

    def test_error_log_is_one_zero_entry(self, rig):
        """QEMU's Error Information log is a single all-zero 64-byte entry."""
        assert rig.get_log(LogId.ERROR_INFORMATION, 64, fill=0xEE).data == bytes(64)

    @pytest.mark.parametrize("offset", [4, 32, 60])
    def test_error_log_transfer_is_64_minus_offset_bytes_from_the_entry_start(
            self, rig, offset):
        """QEMU copies min(64 - offset, length) bytes taken from the entry's start."""
        c = rig.get_log(LogId.ERROR_INFORMATION, 64, offset=offset, fill=0xEE)
        assert c.cqe.status == S.SUCCESS
        assert c.data == bytes(64 - offset) + b"\xee" * offset

    def test_smart_log_offset_selects_fields(self, rig, pattern):
        """A SMART read at an offset returns the log from that byte (Host Read Commands)."""
        rig.read(0, 1)
        rig.read(0, 1)
        c = rig.get_log(LogId.SMART_HEALTH, 16, offset=64)
        assert c.cqe.status == S.SUCCESS
        assert int.from_bytes(c.data, "little") == 2

    def test_smart_log_reports_temperature_and_no_warning_at_power_on(self, rig):
        """Composite temperature is 323 K; no critical warning with default thresholds."""
        smart = rig.smart()
        assert (smart["temperature"], smart["critical_warning"]) == (0x143, 0)

    def test_firmware_slot_log_reports_slot_1_active(self, rig):
        """AFI = 1 and FRS1 = "1.0" padded with spaces."""
        d = structures.parse(structures.FW_SLOT_LOG, rig.get_log(LogId.FW_SLOT, 512).data)
        assert (d["afi"], d["frs1"]) == (1, b"1.0     ")

    def test_commands_supported_and_effects_log(self, rig):
        """ACS/IOCS list the implemented commands with CSUPP, data-changing I/O with LBCC."""
        data = rig.get_log(LogId.COMMANDS_SUPPORTED_EFFECTS, 4096).data
        acs, iocs = u32s(data[:1024]), u32s(data[1024:2048])
        for op in (0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x08, 0x09, 0x0A, 0x0C, 0x7C):
            assert acs[op] & 1, hex(op)
        for op in (0x10, 0x11, 0x18):
            assert acs[op] == 0, hex(op)
        assert [iocs[op] for op in (IO.FLUSH, IO.WRITE, IO.READ, IO.WRITE_UNCORRECTABLE,
                                    IO.COMPARE, IO.WRITE_ZEROES, IO.DATASET_MANAGEMENT)] == [
            3, 3, 1, 0, 1, 3, 3]


# ---------------------------------------------------------------------- Get/Set Features
class TestFeatureSelect:
    def test_tables_cover_every_supported_feature(self):
        """The expectations below name exactly the FIDs the model supports."""
        assert set(CAPS) == set(features.SUPPORTED)

    @pytest.mark.parametrize("fid", sorted(CAPS))
    def test_sel3_reports_the_capabilities(self, rig, fid):
        """SEL=3: DW0 bit 1 namespace specific, bit 2 changeable, never saveable."""
        c = rig.get_feature(fid, sel=3, nsid=nsid_for(fid))
        assert (c.cqe.status, c.cqe.dw0) == (S.SUCCESS, CAPS[fid])

    @pytest.mark.parametrize("fid", sorted(DEFAULTS))
    @pytest.mark.parametrize("sel", [1, 2])
    def test_sel1_and_sel2_report_the_default(self, rig, fid, sel):
        """SEL=1 (default) and SEL=2 (saved, none saveable) report the default value."""
        c = rig.get_feature(fid, sel=sel, nsid=nsid_for(fid))
        assert (c.cqe.status, c.cqe.dw0) == (S.SUCCESS, DEFAULTS[fid])

    @pytest.mark.parametrize("fid", sorted(CURRENT))
    def test_sel0_reports_the_current_value(self, rig, fid):
        """SEL=0 after power-on reports the current values."""
        c = rig.get_feature(fid, nsid=nsid_for(fid), length=DATA_LENGTH.get(fid, 0))
        assert (c.cqe.status, c.cqe.dw0) == (S.SUCCESS, CURRENT[fid])

    def test_defaults_do_not_follow_set_values(self, rig):
        """After Set Features, SEL=0 reports the new value and SEL=1/2 still the default."""
        rig.set_feature(F.ASYNC_EVENT_CONFIG, 0x3)
        rig.set_feature(F.VOLATILE_WRITE_CACHE, 0)
        rig.set_feature(F.TEMPERATURE_THRESHOLD, 0x160)
        rig.set_feature(F.ERROR_RECOVERY, 0x1_0007, nsid=1)
        for fid, new, nsid in ((F.ASYNC_EVENT_CONFIG, 3, 0), (F.VOLATILE_WRITE_CACHE, 0, 0),
                               (F.TEMPERATURE_THRESHOLD, 0x160, 0),
                               (F.ERROR_RECOVERY, 0x1_0007, 1)):
            assert rig.get_feature(fid, nsid=nsid).cqe.dw0 == new
            for sel in (1, 2):
                assert rig.get_feature(fid, sel=sel, nsid=nsid).cqe.dw0 == DEFAULTS[fid]

    @pytest.mark.parametrize("sel", [4, 5, 6, 7])
    def test_reserved_sel_values_read_the_current_value(self, rig, sel):
        """SEL 4-7 match no case in QEMU's switch and fall through to the current value."""
        rig.set_feature(F.ASYNC_EVENT_CONFIG, 0x2)
        c = rig.get_feature(F.ASYNC_EVENT_CONFIG, sel=sel)
        assert (c.cqe.status, c.cqe.dw0) == (S.SUCCESS, 0x2)

    @pytest.mark.parametrize("sel", [0, 1, 2])
    def test_write_atomicity_reports_the_current_dn_for_every_sel(self, rig, sel):
        """QEMU reports the live DN bit for SEL 0, 1 and 2 alike."""
        rig.set_feature(F.WRITE_ATOMICITY, 1)
        assert rig.get_feature(F.WRITE_ATOMICITY, sel=sel).cqe.dw0 == 1


class TestSetFeatureChecks:
    @pytest.mark.parametrize("fid", sorted(CAPS) + list(UNSUPPORTED_FIDS))
    def test_save_bit_is_feature_not_saveable(self, rig, fid):
        """SV=1 fails with 1:0D|DNR for every FID (none is saveable), checked first."""
        c = rig.set_feature(fid, 0, nsid=nsid_for(fid), save=True)
        assert c.cqe.status == S.FEATURE_NOT_SAVEABLE | DNR

    @pytest.mark.parametrize("fid", NOT_CHANGEABLE)
    def test_not_changeable_features_are_rejected(self, rig, fid):
        """Arbitration, Power Management, Interrupt Coalescing/Vector Config: 1:0E|DNR."""
        before = rig.get_feature(fid).cqe.dw0
        assert rig.set_feature(fid, 0x1234).cqe.status == S.FEATURE_NOT_CHANGEABLE | DNR
        assert rig.get_feature(fid).cqe.dw0 == before

    @pytest.mark.parametrize("fid", UNSUPPORTED_FIDS)
    def test_unsupported_fids_are_invalid_field_for_get_and_set(self, rig, fid):
        """A FID outside the supported set is Invalid Field with DNR."""
        assert rig.get_feature(fid).cqe.status == S.INVALID_FIELD | DNR
        assert rig.set_feature(fid, 1).cqe.status == S.INVALID_FIELD | DNR

    @pytest.mark.parametrize("nsid, status", [(0, S.SUCCESS), (BROADCAST_NSID, S.SUCCESS),
                                              (1, S.FEATURE_NOT_NS_SPECIFIC | DNR),
                                              (256, S.FEATURE_NOT_NS_SPECIFIC | DNR),
                                              (257, S.INVALID_NSID | DNR)])
    def test_set_of_a_controller_feature_with_an_nsid(self, rig, nsid, status):
        """A controller-wide feature takes NSID 0 or broadcast; a namespace gets 1:0F."""
        assert rig.set_feature(F.ASYNC_EVENT_CONFIG, 0x2, nsid=nsid).cqe.status == status

    def test_nsid_is_checked_before_changeability(self, rig):
        """A not-changeable FID with a namespace NSID reports Feature Not NS Specific."""
        c = rig.set_feature(F.ARBITRATION, 0, nsid=1)
        assert c.cqe.status == S.FEATURE_NOT_NS_SPECIFIC | DNR

    @pytest.mark.parametrize("nsid, status", [(1, S.SUCCESS), (BROADCAST_NSID, S.SUCCESS),
                                              (0, S.INVALID_NSID | DNR),
                                              (257, S.INVALID_NSID | DNR),
                                              (2, S.INVALID_FIELD | DNR)])
    def test_set_of_a_namespace_feature_needs_a_namespace(self, rig, nsid, status):
        """Error Recovery: an attached NSID or broadcast; 0/too big 0:0B, inactive 0:02."""
        assert rig.set_feature(F.ERROR_RECOVERY, 5, nsid=nsid).cqe.status == status

    @pytest.mark.parametrize("nsid, status", [(1, S.SUCCESS),
                                              (BROADCAST_NSID, S.INVALID_NSID | DNR),
                                              (0, S.INVALID_NSID | DNR),
                                              (257, S.INVALID_NSID | DNR),
                                              (2, S.INVALID_FIELD | DNR)])
    def test_get_of_a_namespace_feature_needs_one_namespace(self, rig, nsid, status):
        """Get Error Recovery needs one attached namespace: broadcast is invalid here."""
        assert rig.get_feature(F.ERROR_RECOVERY, nsid=nsid).cqe.status == status

    @pytest.mark.parametrize("nsid", [1, 2, 257, 0x12345, BROADCAST_NSID])
    def test_get_of_a_controller_feature_ignores_the_nsid(self, rig, nsid):
        """QEMU's Get Features checks the NSID only for namespace-specific features."""
        rig.set_feature(F.ASYNC_EVENT_CONFIG, 0x2)
        c = rig.get_feature(F.ASYNC_EVENT_CONFIG, nsid=nsid)
        assert (c.cqe.status, c.cqe.dw0) == (S.SUCCESS, 0x2)


class TestFeatureValues:
    def test_temperature_thresholds_round_trip(self, rig):
        """THSEL 0 is the over-, THSEL 1 the under-temperature threshold of sensor 0."""
        assert rig.set_feature(F.TEMPERATURE_THRESHOLD, 0x160).cqe.status == S.SUCCESS
        assert rig.set_feature(F.TEMPERATURE_THRESHOLD, 0x10 | 1 << 20).cqe.status == 0
        assert rig.get_feature(F.TEMPERATURE_THRESHOLD).cqe.dw0 == 0x160
        assert rig.get_feature(F.TEMPERATURE_THRESHOLD, cdw11=1 << 20).cqe.dw0 == 0x10

    @pytest.mark.parametrize("thsel", [2, 3])
    def test_reserved_threshold_select_is_invalid_field(self, rig, thsel):
        """THSEL 2/3 fails Set and current Get; the default Get still answers 0."""
        assert rig.set_feature(F.TEMPERATURE_THRESHOLD,
                               0x100 | thsel << 20).cqe.status == S.INVALID_FIELD | DNR
        assert rig.get_feature(F.TEMPERATURE_THRESHOLD,
                               cdw11=thsel << 20).cqe.status == S.INVALID_FIELD | DNR
        c = rig.get_feature(F.TEMPERATURE_THRESHOLD, sel=1, cdw11=thsel << 20)
        assert (c.cqe.status, c.cqe.dw0) == (S.SUCCESS, 0)
        assert rig.get_feature(F.TEMPERATURE_THRESHOLD).cqe.dw0 == 0x157

    @pytest.mark.parametrize("tmpsel", [1, 8, 15])
    def test_other_temperature_sensors_are_accepted_and_ignored(self, rig, tmpsel):
        """Another sensor: Set succeeds, changes nothing and raises no event (QEMU breaks out)."""
        rig.set_feature(F.TEMPERATURE_THRESHOLD, 0x100)       # crossed, events still off
        rig.set_feature(F.ASYNC_EVENT_CONFIG, 0x2)
        rig.aer()
        c = rig.set_feature(F.TEMPERATURE_THRESHOLD, 0x120 | tmpsel << 16 | 3 << 20)
        assert (c.cqe.status, rig.others) == (S.SUCCESS, [])
        assert rig.ctrl.aer_queue == []
        assert rig.get_feature(F.TEMPERATURE_THRESHOLD).cqe.dw0 == 0x100
        assert rig.get_feature(F.TEMPERATURE_THRESHOLD, cdw11=tmpsel << 16).cqe.dw0 == 0

    def test_error_recovery_is_stored_per_namespace(self, rig):
        """Error Recovery (TLER, DULBE) set for NSID 1 or broadcast reads back for NSID 1."""
        rig.set_feature(F.ERROR_RECOVERY, 0x1_0020, nsid=1)
        assert rig.get_feature(F.ERROR_RECOVERY, nsid=1).cqe.dw0 == 0x1_0020
        rig.set_feature(F.ERROR_RECOVERY, 0x30, nsid=BROADCAST_NSID)
        assert rig.get_feature(F.ERROR_RECOVERY, nsid=1).cqe.dw0 == 0x30

    @pytest.mark.parametrize("dw11, expect", [(0, 0), (1, 1), (0xFFFFFFFE, 0), (3, 1)])
    def test_volatile_write_cache_keeps_only_wce(self, rig, dw11, expect):
        """Only bit 0 (WCE) of Volatile Write Cache is kept."""
        rig.set_feature(F.VOLATILE_WRITE_CACHE, dw11)
        assert rig.get_feature(F.VOLATILE_WRITE_CACHE).cqe.dw0 == expect

    def test_async_event_config_is_stored_raw(self, rig):
        """QEMU stores DW11 of Async Event Configuration as given."""
        rig.set_feature(F.ASYNC_EVENT_CONFIG, 0xFFFFFFFF)
        assert rig.get_feature(F.ASYNC_EVENT_CONFIG).cqe.dw0 == 0xFFFFFFFF

    def test_write_atomicity_keeps_only_dn(self, rig):
        """Only bit 0 (DN) of Write Atomicity Normal is kept."""
        rig.set_feature(F.WRITE_ATOMICITY, 0xFFFFFFFF)
        assert rig.get_feature(F.WRITE_ATOMICITY).cqe.dw0 == 1

    @pytest.mark.parametrize("iv, dw0", [(0, 1 << 16), (1, 1), (64, 64)])
    def test_interrupt_vector_config_reports_cd_for_the_admin_vector(self, rig, iv, dw0):
        """Get Interrupt Vector Config: IV echoed, CD set only for vector 0 (admin CQ)."""
        c = rig.get_feature(F.INTERRUPT_VECTOR_CONFIG, cdw11=iv)
        assert (c.cqe.status, c.cqe.dw0) == (S.SUCCESS, dw0)

    def test_interrupt_vector_beyond_the_queues_is_invalid_field(self, rig):
        """IV above the number of I/O queue pairs is Invalid Field with DNR."""
        c = rig.get_feature(F.INTERRUPT_VECTOR_CONFIG, cdw11=65)
        assert c.cqe.status == S.INVALID_FIELD | DNR

    @pytest.mark.parametrize("dw11, status", [(0, S.SUCCESS), (1, S.IOCS_COMBINATION_REJECTED),
                                              (0x100, S.IOCS_COMBINATION_REJECTED),
                                              (0x1FF, S.IOCS_COMBINATION_REJECTED),
                                              (0x200, S.SUCCESS)])
    def test_command_set_profile_accepts_only_index_zero(self, rig, dw11, status):
        """IOCSCI (bits 8:0) other than 0 is I/O Command Set Combination Rejected (1:2B)|DNR."""
        expect = status if status == S.SUCCESS else status | DNR
        assert rig.set_feature(F.COMMAND_SET_PROFILE, dw11).cqe.status == expect


class TestNumberOfQueues:
    @pytest.mark.parametrize("dw11", [0, 3 | 5 << 16, 0xFFFE | 0xFFFE << 16])
    def test_allocation_ignores_the_request(self, make_rig, dw11):
        """Before any I/O queue exists, the answer is always 64 SQs and 64 CQs (0's based)."""
        rig = make_rig(io_queue=False)
        c = rig.set_feature(F.NUMBER_OF_QUEUES, dw11)
        assert (c.cqe.status, c.cqe.dw0) == (S.SUCCESS, 0x3F003F)

    @pytest.mark.parametrize("dw11", [0xFFFF, 0xFFFF << 16, 0xFFFFFFFF])
    def test_ffff_requests_are_invalid_field(self, make_rig, dw11):
        """NSQR or NCQR of FFFFh is Invalid Field with DNR."""
        rig = make_rig(io_queue=False)
        assert rig.set_feature(F.NUMBER_OF_QUEUES, dw11).cqe.status == S.INVALID_FIELD | DNR

    def test_after_a_queue_was_created_it_is_a_command_sequence_error(self, rig):
        """Once an I/O queue exists, Set Number of Queues is Command Sequence Error|DNR."""
        c = rig.set_feature(F.NUMBER_OF_QUEUES, 0)
        assert c.cqe.status == S.COMMAND_SEQUENCE_ERROR | DNR

    def test_deleting_the_queues_does_not_reopen_it(self, rig):
        """Only a controller reset allows Number of Queues again, not deleting the queues."""
        assert rig.admin(SQE(A.DELETE_IO_SQ, cdw10=1)).cqe.status == S.SUCCESS
        assert rig.admin(SQE(A.DELETE_IO_CQ, cdw10=1)).cqe.status == S.SUCCESS
        c = rig.set_feature(F.NUMBER_OF_QUEUES, 0)
        assert c.cqe.status == S.COMMAND_SEQUENCE_ERROR | DNR
        rig.reset()
        rig.enable()
        assert rig.set_feature(F.NUMBER_OF_QUEUES, 0).cqe.status == S.SUCCESS


class TestTimestamp:
    def test_timestamp_counts_milliseconds_since_enable_until_set(self, rig):
        """Before any Set, the timestamp is the virtual time since enable, origin 0."""
        rig.target.advance(1_500_000_000)
        c = rig.get_feature(F.TIMESTAMP, length=8)
        assert c.cqe.status == S.SUCCESS
        assert timestamp_of(c) == (1500, 0, 0)

    def test_set_timestamp_advances_with_virtual_time_and_sets_the_origin(self, rig):
        """A host-set timestamp reads back plus elapsed virtual ms, with origin 001b."""
        ts = 1_700_000_000_000
        assert rig.set_feature(F.TIMESTAMP, data=ts.to_bytes(8, "little")).cqe.status == 0
        assert timestamp_of(rig.get_feature(F.TIMESTAMP, length=8)) == (ts, 0, 1)
        rig.target.advance(999_999)
        assert timestamp_of(rig.get_feature(F.TIMESTAMP, length=8)) == (ts, 0, 1)
        rig.target.advance(2_500_000_001)
        assert timestamp_of(rig.get_feature(F.TIMESTAMP, length=8)) == (ts + 2501, 0, 1)

    def test_timestamp_keeps_48_bits(self, rig):
        """Only bits 47:0 are a timestamp: high host bits are dropped, the value wraps."""
        ts = (1 << 48) - 1 | 0xFFFF << 48
        rig.set_feature(F.TIMESTAMP, data=ts.to_bytes(8, "little"))
        rig.target.advance(2_000_000)
        assert timestamp_of(rig.get_feature(F.TIMESTAMP, length=8)) == (1, 0, 1)

    def test_setting_zero_clears_the_origin(self, rig):
        """A zero host timestamp counts as never set: origin 0."""
        rig.set_feature(F.TIMESTAMP, data=(5000).to_bytes(8, "little"))
        rig.set_feature(F.TIMESTAMP, data=bytes(8))
        rig.target.advance(3_000_000)
        assert timestamp_of(rig.get_feature(F.TIMESTAMP, length=8)) == (3, 0, 0)

    def test_enabling_the_controller_restarts_the_timestamp(self, rig):
        """CC.EN 0->1 resets the timestamp to zero at that instant."""
        rig.set_feature(F.TIMESTAMP, data=(10 ** 12).to_bytes(8, "little"))
        rig.reset()
        rig.target.advance(7_000_000)
        rig.enable()
        rig.target.advance(4_000_000)
        assert timestamp_of(rig.get_feature(F.TIMESTAMP, length=8)) == (4, 0, 0)

    def test_default_timestamp_select_transfers_no_data(self, rig):
        """SEL=1 answers DW0=0 and leaves the host buffer alone."""
        c = rig.admin(SQE(A.GET_FEATURES, cdw10=F.TIMESTAMP | 1 << 8), data=b"\xee" * 8,
                      length=8, returns_data=True)
        assert (c.cqe.status, c.cqe.dw0, c.data) == (S.SUCCESS, 0, b"\xee" * 8)


class TestHostBehaviorSupport:
    def test_512_bytes_round_trip(self, rig, pattern):
        """Set Host Behavior Support stores 512 bytes that Get returns unchanged."""
        assert rig.get_feature(F.HOST_BEHAVIOR_SUPPORT, length=512).data == bytes(512)
        data = pattern(60, 512)
        assert rig.set_feature(F.HOST_BEHAVIOR_SUPPORT, data=data).cqe.status == S.SUCCESS
        c = rig.get_feature(F.HOST_BEHAVIOR_SUPPORT, length=512)
        assert (c.cqe.status, c.data) == (S.SUCCESS, data)

    def test_buffer_outside_guest_ram_is_a_data_transfer_error(self, rig, pattern):
        """The 512 bytes are read from host memory; unreadable memory fails the Set."""
        sqe = SQE(A.SET_FEATURES, cdw10=F.HOST_BEHAVIOR_SUPPORT, prp1=rig.unmapped)
        assert rig.admin(sqe).cqe.status == S.DATA_TRANSFER_ERROR
        assert rig.get_feature(F.HOST_BEHAVIOR_SUPPORT, length=512).data == bytes(512)


# ---------------------------------------------------------------------- opcode, PSDT, FUSE
class TestAdminCommandChecks:
    @pytest.mark.parametrize("opc", [A.KEEP_ALIVE, A.FW_COMMIT, A.FW_DOWNLOAD,
                                     A.NS_MANAGEMENT, 0x03, 0x07, 0x7F, 0xC0, 0xFF])
    def test_unsupported_admin_opcode_is_invalid_opcode_dnr(self, rig, opc):
        """Keep Alive, firmware and NS management (among others) are Invalid Opcode|DNR."""
        assert rig.admin(SQE(opc, nsid=1)).cqe.status == S.INVALID_OPCODE | DNR

    @pytest.mark.parametrize("psdt", [1, 2, 3])
    @pytest.mark.parametrize("opc", [A.IDENTIFY, A.GET_FEATURES, A.GET_LOG_PAGE, A.ABORT,
                                     A.ASYNC_EVENT_REQUEST])
    def test_sgl_on_an_admin_command_is_invalid_field_dnr(self, rig, psdt, opc):
        """Admin commands over PCIe use PRPs only: PSDT != 0 is Invalid Field with DNR."""
        assert rig.admin(SQE(opc, psdt=psdt, cdw10=1)).cqe.status == S.INVALID_FIELD | DNR

    @pytest.mark.parametrize("fuse", [1, 2, 3])
    def test_fused_admin_command_is_invalid_field_without_dnr(self, rig, fuse):
        """Fused admin commands are unsupported: Invalid Field, retryable."""
        assert rig.admin(SQE(A.IDENTIFY, fuse=fuse, cdw10=1)).cqe.status == S.INVALID_FIELD

    def test_opcode_is_checked_before_psdt_and_fuse(self, rig):
        """An unsupported opcode reports Invalid Opcode whatever PSDT and FUSE say."""
        c = rig.admin(SQE(A.KEEP_ALIVE, psdt=1, fuse=1))
        assert c.cqe.status == S.INVALID_OPCODE | DNR

    def test_psdt_is_checked_before_fuse(self, rig):
        """PSDT and FUSE both wrong: the PSDT error (with DNR) wins."""
        c = rig.admin(SQE(A.IDENTIFY, psdt=1, fuse=1, cdw10=1))
        assert c.cqe.status == S.INVALID_FIELD | DNR


# ---------------------------------------------------------------------- Doorbell Buffer Config
class TestDoorbellBufferConfig:
    def _config(self, rig, dbs=L.SHADOW_DB, eis=L.EVENTIDX, effect=()):
        return rig.admin(SQE(A.DOORBELL_BUFFER_CONFIG, prp1=dbs, prp2=eis), effect=effect)

    @pytest.mark.parametrize("dbs, eis", [(L.SHADOW_DB + 8, L.EVENTIDX),
                                          (L.SHADOW_DB, L.EVENTIDX + 0x800),
                                          (L.SHADOW_DB + 4, L.EVENTIDX + 4)])
    def test_misaligned_buffers_are_invalid_field_dnr(self, rig, dbs, eis):
        """Both buffers must be page aligned; a refused config leaves dbbuf off."""
        rig.mem.write(L.SHADOW_DB, b"\xff" * PAGE)
        assert self._config(rig, dbs, eis).cqe.status == S.INVALID_FIELD | DNR
        rig.identify(1)
        assert rig.mem.read(L.SHADOW_DB, 8) == b"\xff" * 8   # no admin doorbell mirroring

    def test_alignment_follows_the_configured_page_size(self, make_rig):
        """With 8 KiB pages a 4 KiB-aligned buffer is misaligned."""
        rig = make_rig(mps=1)
        assert self._config(rig, L.SHADOW_DB, L.SHADOW_DB + 0x1000).cqe.status == (
            S.INVALID_FIELD | DNR)
        assert self._config(rig, L.SHADOW_DB, L.SHADOW_DB + 0x2000).cqe.status == 0

    def test_config_writes_current_doorbells_of_existing_queues(self, rig):
        """Existing queues' SQ tails and CQ heads are copied into the shadow buffer."""
        for _ in range(3):
            rig.io(SQE(IO.FLUSH, nsid=1))
        rig.mem.write(L.SHADOW_DB, b"\xff" * PAGE)
        admin_cq_head = rig.host.cqs[0].head
        rig.admin_submit(SQE(A.DOORBELL_BUFFER_CONFIG, prp1=L.SHADOW_DB, prp2=L.EVENTIDX))
        shadow = u32s(rig.mem.read(L.SHADOW_DB, 24))   # read before the CQE is consumed
        assert shadow[0] == rig.host.sqs[0].tail       # admin SQ tail, this command included
        assert shadow[1] == admin_cq_head
        assert shadow[2:4] == [3, 3]                   # SQ 1 tail, CQ 1 head
        assert shadow[4:6] == [0xFFFFFFFF, 0xFFFFFFFF]  # no queue 2: untouched
        assert [c.cqe.status for c in rig.reap(0)] == [S.SUCCESS]

    def test_admin_doorbells_are_mirrored_into_the_shadow_buffer(self, rig):
        """After config, MMIO writes to queue 0 doorbells land in the shadow slots too."""
        self._config(rig)
        rig.identify(1)
        shadow = u32s(rig.mem.read(L.SHADOW_DB, 8))
        assert shadow == [rig.host.sqs[0].tail, rig.host.cqs[0].head]

    def test_controller_reads_the_sq_tail_from_the_shadow_buffer(self, rig):
        """With dbbuf on, the shadow tail decides how far the controller fetches."""
        self._config(rig)
        cids = [rig.io_submit(SQE(IO.FLUSH, nsid=1), ring=False) for _ in range(3)]
        rig.mem.write_u32(L.SHADOW_DB + 8, 3)
        rig.target.mmio_write(regs.sq_tail_doorbell(1), 4, 1)     # a stale MMIO value
        assert rig.ctrl.sqs[1].head == 3
        rig.target.advance(rig.latency)
        assert [c.cqe.cid for c in rig.reap(1)] == cids

    def test_controller_writes_the_sq_event_index_after_fetching(self, rig):
        """After each fetched command the controller sets the SQ EventIdx to the tail."""
        self._config(rig)
        rig.mem.write(L.EVENTIDX + 8, b"\xff" * 4)
        for _ in range(2):
            rig.io_submit(SQE(IO.FLUSH, nsid=1), ring=False)
        rig.mem.write_u32(L.SHADOW_DB + 8, 2)
        rig.target.mmio_write(regs.sq_tail_doorbell(1), 4, 2)
        assert rig.mem.read_u32(L.EVENTIDX + 8) == 2

    def test_controller_reads_the_cq_head_from_the_shadow_buffer(self, rig):
        """Before posting, the controller takes the CQ head from the shadow slot."""
        self._config(rig)
        rig.io_submit(SQE(IO.FLUSH, nsid=1), ring=False)
        rig.mem.write_u32(L.SHADOW_DB + 8, 1)
        rig.target.mmio_write(regs.sq_tail_doorbell(1), 4, 1)
        rig.target.advance(rig.latency)
        assert len(rig.host.harvest(1)) == 1
        rig.mem.write_u32(L.SHADOW_DB + 12, 1)         # consumed: shadow head only, no MMIO
        rig.io_submit(SQE(IO.FLUSH, nsid=1), ring=False)
        rig.mem.write_u32(L.SHADOW_DB + 8, 2)
        rig.target.mmio_write(regs.sq_tail_doorbell(1), 4, 2)
        rig.target.advance(rig.latency)
        assert rig.ctrl.cqs[1].head == 1
        assert rig.ctrl.cqs[1].tail == 2

    def test_io_runs_through_shadow_doorbells_end_to_end(self, rig, pattern):
        """A host using shadow doorbells and EventIdx keeps I/O working, new queues included."""
        assert self._config(rig, effect=("dbbuf", 0)).cqe.status == S.SUCCESS
        assert rig.host.shadow
        data = pattern(61, 1024)
        assert rig.write(3, data).cqe.status == S.SUCCESS
        assert rig.read(3, 2).data == data
        rig.mem.write(L.SHADOW_DB + 16, bytes(8))
        rig.create_io_pair(2, 8)
        for i in range(10):                            # wraps the 8-entry queue
            assert rig.write(i, pattern(62 + i, 512), qid=2).cqe.status == S.SUCCESS
        assert rig.read(9, 1, qid=2).data == pattern(71, 512)
