"""Wire formats: SQE/CQE codecs, the register map and fields, doorbells, host structures.

Byte vectors are written out by hand from the layouts in the NVMe Base specification (digest
sections 1.1-1.4, 2.1, 2.2), never produced with the codec under test.
"""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from nvmefuzz.errors import FormatError, IllegalCommand
from nvmefuzz.protocol import regs, spec, structures
from nvmefuzz.protocol.queues import CQE, CQE_SIZE, SQE, SQE_SIZE, phase_of


def u(bits: int) -> st.SearchStrategy[int]:
    return st.integers(min_value=0, max_value=(1 << bits) - 1)


SQES = st.builds(
    SQE, opc=u(8), cid=u(16), nsid=u(32), fuse=u(2), psdt=u(2), cdw2=u(32), cdw3=u(32),
    mptr=u(64), prp1=u(64), prp2=u(64), cdw10=u(32), cdw11=u(32), cdw12=u(32), cdw13=u(32),
    cdw14=u(32), cdw15=u(32),
)
CQES = st.builds(CQE, cid=u(16), status=u(15), sqid=u(16), sqhd=u(16), dw0=u(32), dw1=u(32),
                 phase=u(1))

# ---------------------------------------------------------------------------- SQE vectors
#: Every field distinct: OPC 06, FUSE 01b + PSDT 10b (byte 1 = 81h), CID BEEFh, NSID,
#: CDW2/3, MPTR, PRP1, PRP2 and CDW10..15 each with its own byte pattern.
SQE_ALL_FIELDS = (
    "06" "81" "efbe" "44332211" "88776655" "ccbbaa99" "0807060504030201"
    "1817161514131211" "2827262524232221" "a3a2a1a0" "b3b2b1b0" "c3c2c1c0" "d3d2d1d0"
    "e3e2e1e0" "f3f2f1f0"
)
SQE_ALL_FIELDS_VALUE = SQE(
    opc=0x06, fuse=1, psdt=2, cid=0xBEEF, nsid=0x11223344, cdw2=0x55667788, cdw3=0x99AABBCC,
    mptr=0x0102030405060708, prp1=0x1112131415161718, prp2=0x2122232425262728,
    cdw10=0xA0A1A2A3, cdw11=0xB0B1B2B3, cdw12=0xC0C1C2C3, cdw13=0xD0D1D2D3, cdw14=0xE0E1E2E3,
    cdw15=0xF0F1F2F3,
)
#: Create I/O CQ 1, QSIZE 3Fh, PC|IEN, IV 2, PRP1 0x120000, CID 1.
SQE_CREATE_CQ = (
    "05" "00" "0100" "00000000" "00000000" "00000000" "0000000000000000"
    "0000120000000000" "0000000000000000" "01003f00" "03000200" "00000000" "00000000"
    "00000000" "00000000"
)
SQE_CREATE_CQ_VALUE = SQE(opc=0x05, cid=1, prp1=0x120000, cdw10=0x003F0001, cdw11=0x00020003)
#: All zero except FUSE=11b and PSDT=11b: byte 1 = C3h.
SQE_FLAGS_ONLY = "00" "c3" + "00" * 62
SQE_FLAGS_ONLY_VALUE = SQE(opc=0, fuse=3, psdt=3)

SQE_VECTORS = [
    pytest.param(SQE_ALL_FIELDS, SQE_ALL_FIELDS_VALUE, id="all-fields"),
    pytest.param(SQE_CREATE_CQ, SQE_CREATE_CQ_VALUE, id="create-io-cq"),
    pytest.param(SQE_FLAGS_ONLY, SQE_FLAGS_ONLY_VALUE, id="fuse-psdt"),
]

# ---------------------------------------------------------------------------- CQE vectors
#: DW0 04030201h, DW1 08070605h, SQHD 0A09h, SQID 0C0Bh, CID BEEFh, status 4102h (DNR,
#: SCT 1, SC 02h) with P=1: the halfword at bytes 14-15 is 4102h << 1 | 1 = 8205h.
CQE_ALL_FIELDS = "01020304" "05060708" "090a" "0b0c" "efbe" "0582"
CQE_ALL_FIELDS_VALUE = CQE(cid=0xBEEF, status=0x4102, sqid=0x0C0B, sqhd=0x0A09,
                           dw0=0x04030201, dw1=0x08070605, phase=1)
#: An AER completion: DW0 = type 0 | info 01h << 8 | log page 01h << 16, SQHD 3, CID 7, P=0.
CQE_AER = "00010100" "00000000" "0300" "0000" "0700" "0000"
CQE_AER_VALUE = CQE(cid=7, sqhd=3, dw0=0x00010100)

CQE_VECTORS = [
    pytest.param(CQE_ALL_FIELDS, CQE_ALL_FIELDS_VALUE, id="all-fields"),
    pytest.param(CQE_AER, CQE_AER_VALUE, id="aer"),
]


class TestSQE:
    @pytest.mark.parametrize(("hexdata", "value"), SQE_VECTORS)
    def test_sqe_encodes_to_spec_byte_layout(self, hexdata, value):
        """An SQE encodes to the exact 64 bytes of the Common Command Format."""
        assert value.encode() == bytes.fromhex(hexdata)

    @pytest.mark.parametrize(("hexdata", "value"), SQE_VECTORS)
    def test_sqe_decodes_spec_byte_layout(self, hexdata, value):
        """64 bytes in the Common Command Format decode to the same field values."""
        assert SQE.decode(bytes.fromhex(hexdata)) == value

    def test_sqe_size_is_64(self):
        """The submission queue entry size is 64 bytes (CC.IOSQES = 6)."""
        assert SQE_SIZE == 64 == len(SQE(opc=0).encode())

    def test_sqe_decode_drops_reserved_flag_bits(self):
        """FLAGS bits 5:2 are reserved: decode ignores them, FUSE and PSDT survive."""
        raw = bytearray(64)
        raw[1] = 0b1011_1101          # PSDT 10b, reserved 1111b, FUSE 01b
        sqe = SQE.decode(bytes(raw))
        assert (sqe.fuse, sqe.psdt) == (1, 2)
        assert sqe.encode()[1] == 0b1000_0001

    @given(SQES)
    def test_sqe_encode_decode_round_trip(self, sqe):
        """decode(encode(x)) == x for every representable SQE."""
        raw = sqe.encode()
        assert len(raw) == SQE_SIZE
        assert SQE.decode(raw) == sqe

    @given(st.binary(min_size=SQE_SIZE, max_size=SQE_SIZE))
    def test_sqe_decode_encode_keeps_every_non_reserved_bit(self, raw):
        """encode(decode(b)) == b except the reserved FLAGS bits 5:2, which read as zero."""
        expected = bytearray(raw)
        expected[1] &= 0b1100_0011
        assert SQE.decode(raw).encode() == bytes(expected)

    @pytest.mark.parametrize("length", range(SQE_SIZE))
    def test_sqe_decode_of_truncated_input_is_format_error(self, length):
        """Any input shorter than 64 bytes is refused with FormatError."""
        with pytest.raises(FormatError):
            SQE.decode(bytes.fromhex(SQE_ALL_FIELDS)[:length])

    @pytest.mark.parametrize("extra", [1, 2, 15, 64])
    def test_sqe_decode_with_trailing_garbage_is_format_error(self, extra):
        """An SQE followed by extra bytes is refused: decode takes exactly one entry."""
        with pytest.raises(FormatError):
            SQE.decode(bytes.fromhex(SQE_ALL_FIELDS) + b"\xff" * extra)

    @pytest.mark.parametrize(("field", "bad"), [
        ("opc", 0x100), ("opc", -1), ("cid", 0x10000), ("nsid", 1 << 32), ("fuse", 4),
        ("psdt", 4), ("cdw2", 1 << 32), ("cdw3", 1 << 32), ("mptr", 1 << 64),
        ("prp1", 1 << 64), ("prp2", 1 << 64), ("cdw10", 1 << 32), ("cdw11", -1),
        ("cdw12", 1 << 32), ("cdw13", 1 << 32), ("cdw14", 1 << 32), ("cdw15", 1 << 32),
        ("opc", "1"), ("cdw10", 1.0), ("prp1", None),
    ])
    def test_sqe_field_outside_its_width_is_illegal_command(self, field, bad):
        """Every SQE field is checked against its spec width at construction."""
        kwargs = {"opc": 0, field: bad}
        with pytest.raises(IllegalCommand):
            SQE(**kwargs)

    @pytest.mark.parametrize(("field", "top"), [
        ("opc", 0xFF), ("cid", 0xFFFF), ("nsid", 0xFFFFFFFF), ("fuse", 3), ("psdt", 3),
        ("mptr", (1 << 64) - 1), ("cdw15", 0xFFFFFFFF),
    ])
    def test_sqe_field_at_its_maximum_is_accepted(self, field, top):
        """The largest value of each width is representable and survives a round trip."""
        kwargs = {"opc": 0, field: top}
        sqe = SQE(**kwargs)
        assert getattr(SQE.decode(sqe.encode()), field) == top


class TestCQE:
    @pytest.mark.parametrize(("hexdata", "value"), CQE_VECTORS)
    def test_cqe_encodes_to_spec_byte_layout(self, hexdata, value):
        """A CQE encodes to the exact 16 bytes of the Completion Queue Entry layout."""
        assert value.encode() == bytes.fromhex(hexdata)

    @pytest.mark.parametrize(("hexdata", "value"), CQE_VECTORS)
    def test_cqe_decodes_spec_byte_layout(self, hexdata, value):
        """16 bytes in the Completion Queue Entry layout decode to the same fields."""
        assert CQE.decode(bytes.fromhex(hexdata)) == value

    def test_cqe_size_is_16(self):
        """The completion queue entry size is 16 bytes (CC.IOCQES = 4)."""
        assert CQE_SIZE == 16 == len(CQE(cid=0).encode())

    @pytest.mark.parametrize(("status", "sc", "sct", "crd", "more", "dnr"), [
        (0x0000, 0x00, 0, 0, 0, 0),
        (0x0002, 0x02, 0, 0, 0, 0),                 # Invalid Field
        (0x4101, 0x01, 1, 0, 0, 1),                 # Invalid QID | DNR
        (0x010C, 0x0C, 1, 0, 0, 0),                 # Invalid Queue Deletion, no DNR
        (0x6285, 0x85, 2, 0, 1, 1),                 # Compare Failure | More | DNR
        (0x1800, 0x00, 0, 3, 0, 0),                 # CRD = 3
        (0x7FFF, 0xFF, 7, 3, 1, 1),
    ])
    def test_cqe_status_packs_into_dw3_bits_31_17(self, status, sc, sct, crd, more, dnr):
        """DW3 = CID 15:0 | P 16 | SC 24:17 | SCT 27:25 | CRD 29:28 | M 30 | DNR 31."""
        raw = CQE(cid=0x1234, status=status, phase=1).encode()
        dw3 = int.from_bytes(raw[12:16], "little")
        assert dw3 & 0xFFFF == 0x1234
        assert (dw3 >> 16) & 1 == 1
        assert (dw3 >> 17) & 0xFF == sc == spec.sc(status)
        assert (dw3 >> 25) & 0x7 == sct == spec.sct(status)
        assert (dw3 >> 28) & 0x3 == crd
        assert (dw3 >> 30) & 1 == more
        assert dw3 >> 31 == dnr

    @pytest.mark.parametrize("phase", [0, 1])
    def test_cqe_phase_tag_is_byte_14_bit_0(self, phase):
        """The phase tag sits alone in bit 0 of byte 14, below the status field."""
        raw = CQE(cid=0xFFFF, status=0x7FFF, phase=phase).encode()
        assert raw[14] & 1 == phase == phase_of(raw)
        assert int.from_bytes(raw[14:16], "little") == 0x7FFF << 1 | phase

    def test_status_constants_match_spec_sct_sc(self):
        """Status numbers are SCT << 8 | SC with DNR 4000h and More 2000h."""
        assert (spec.DNR, spec.MORE) == (0x4000, 0x2000)
        assert spec.Status.CQ_INVALID == 0x100
        assert spec.Status.INVALID_QID == 0x101
        assert spec.Status.INVALID_QSIZE == 0x102
        assert spec.Status.INVALID_IRQ_VECTOR == 0x108
        assert spec.Status.INVALID_QUEUE_DELETION == 0x10C
        assert spec.Status.ABORTED_SQ_DELETION == 0x008
        assert spec.Status.INVALID_PRP_OFFSET == 0x013

    @given(CQES)
    def test_cqe_encode_decode_round_trip(self, cqe):
        """decode(encode(x)) == x for every representable CQE."""
        raw = cqe.encode()
        assert len(raw) == CQE_SIZE
        assert CQE.decode(raw) == cqe

    @given(st.binary(min_size=CQE_SIZE, max_size=CQE_SIZE))
    def test_cqe_decode_encode_is_identity_on_bytes(self, raw):
        """Every one of the 128 CQE bits is significant: encode(decode(b)) == b."""
        assert CQE.decode(raw).encode() == raw

    @pytest.mark.parametrize("length", range(CQE_SIZE))
    def test_cqe_decode_of_truncated_input_is_format_error(self, length):
        """Any input shorter than 16 bytes is refused with FormatError."""
        with pytest.raises(FormatError):
            CQE.decode(bytes.fromhex(CQE_ALL_FIELDS)[:length])

    @pytest.mark.parametrize("extra", [1, 2, 16, 48])
    def test_cqe_decode_with_trailing_garbage_is_format_error(self, extra):
        """A CQE followed by extra bytes is refused: decode takes exactly one entry."""
        with pytest.raises(FormatError):
            CQE.decode(bytes.fromhex(CQE_ALL_FIELDS) + b"\x00" * extra)

    @pytest.mark.parametrize(("field", "bad"), [
        ("cid", 0x10000), ("cid", -1), ("status", 0x8000), ("sqid", 0x10000),
        ("sqhd", 0x10000), ("dw0", 1 << 32), ("dw1", 1 << 32), ("phase", 2), ("status", "0"),
    ])
    def test_cqe_field_outside_its_width_is_illegal_command(self, field, bad):
        """Every CQE field is checked against its width; status is 15 bits, phase 1."""
        kwargs = {"cid": 0, field: bad}
        with pytest.raises(IllegalCommand):
            CQE(**kwargs)

    def test_format_error_is_a_value_error(self):
        """Codec errors can be caught as ValueError (every leaf also derives a builtin)."""
        with pytest.raises(ValueError):
            CQE.decode(b"")
        with pytest.raises(ValueError):
            SQE(opc=256)


# ---------------------------------------------------------------------------- registers
class TestRegisterMap:
    @pytest.mark.parametrize(("name", "offset", "size"), [
        ("CAP", 0x00, 8), ("VS", 0x08, 4), ("INTMS", 0x0C, 4), ("INTMC", 0x10, 4),
        ("CC", 0x14, 4), ("CSTS", 0x1C, 4), ("NSSR", 0x20, 4), ("AQA", 0x24, 4),
        ("ASQ", 0x28, 8), ("ACQ", 0x30, 8), ("CMBLOC", 0x38, 4), ("CMBSZ", 0x3C, 4),
    ])
    def test_register_offsets_and_sizes_match_spec_map(self, name, offset, size):
        """BAR0 register offsets and sizes are the ones of the spec register map."""
        assert (regs.BY_NAME[name].offset, regs.BY_NAME[name].size) == (offset, size)
        assert regs.OFFSET[name] == offset

    @pytest.mark.parametrize(("reg", "name", "lo", "width"), [
        ("CAP", "MQES", 0, 16), ("CAP", "CQR", 16, 1), ("CAP", "AMS", 17, 2),
        ("CAP", "TO", 24, 8), ("CAP", "DSTRD", 32, 4), ("CAP", "NSSRS", 36, 1),
        ("CAP", "CSS", 37, 8), ("CAP", "MPSMIN", 48, 4), ("CAP", "MPSMAX", 52, 4),
        ("CC", "EN", 0, 1), ("CC", "CSS", 4, 3), ("CC", "MPS", 7, 4), ("CC", "AMS", 11, 3),
        ("CC", "SHN", 14, 2), ("CC", "IOSQES", 16, 4), ("CC", "IOCQES", 20, 4),
        ("CSTS", "RDY", 0, 1), ("CSTS", "CFS", 1, 1), ("CSTS", "SHST", 2, 2),
        ("CSTS", "NSSRO", 4, 1), ("CSTS", "PP", 5, 1),
        ("AQA", "ASQS", 0, 12), ("AQA", "ACQS", 16, 12),
    ])
    def test_register_field_positions_match_spec(self, reg, name, lo, width):
        """Each register field sits at the spec's bit range (CAP.NSSRS at 36, not 33)."""
        assert regs.FIELDS[(reg, name)] == (lo, width)
        all_ones = (1 << 64) - 1
        assert regs.field(reg, name, all_ones) == (1 << width) - 1
        assert regs.field(reg, name, 1 << lo) == 1
        assert regs.field(reg, name, all_ones ^ (1 << lo)) == (1 << width) - 2

    @pytest.mark.parametrize(("reg", "value", "name", "expected"), [
        ("CAP", 0x0040_1820_0F01_07FF, "MQES", 0x7FF),
        ("CAP", 0x0040_1820_0F01_07FF, "TO", 0x0F),
        ("CAP", 0x0040_1820_0F01_07FF, "CSS", 0xC1),
        ("CAP", 0x0040_1820_0F01_07FF, "MPSMAX", 4),
        ("CAP", 0x0040_1820_0F01_07FF, "DSTRD", 0),
        ("CC", 0x0046_4201, "EN", 1),
        ("CC", 0x0046_4201, "MPS", 4),
        ("CC", 0x0046_4201, "SHN", 1),
        ("CC", 0x0046_4201, "IOSQES", 6),
        ("CC", 0x0046_4201, "IOCQES", 4),
        ("CSTS", 0x9, "SHST", 2),
        ("AQA", 0x001F_003F, "ASQS", 0x3F),
        ("AQA", 0x001F_003F, "ACQS", 0x1F),
    ])
    def test_field_reads_named_field(self, reg, value, name, expected):
        """field() extracts a named field from a whole register value."""
        assert regs.field(reg, name, value) == expected

    def test_with_field_replaces_only_that_field(self):
        """with_field() changes the field's bits and keeps every other bit."""
        assert regs.with_field("CC", "MPS", 0xFFFF_FFFF, 0) == 0xFFFF_F87F
        assert regs.with_field("CC", "SHN", 0, 2) == 0x8000
        assert regs.with_field("CSTS", "SHST", 0x1, 2) == 0x9

    @pytest.mark.parametrize(("reg", "name", "bad"), [
        ("CC", "EN", 2), ("CC", "MPS", 16), ("CC", "SHN", -1), ("AQA", "ASQS", 0x1000),
        ("CAP", "MQES", 0x10000),
    ])
    def test_with_field_value_too_wide_is_illegal_command(self, reg, name, bad):
        """A value that does not fit the field's width is refused."""
        with pytest.raises(IllegalCommand):
            regs.with_field(reg, name, 0, bad)

    def test_pack_builds_register_from_fields(self):
        """pack() ORs named fields into an otherwise zero register value."""
        assert regs.pack("CC", EN=1, IOSQES=6, IOCQES=4) == 0x0046_0001
        assert regs.pack("AQA", ASQS=31, ACQS=31) == 0x001F_001F
        assert regs.pack("CAP", MQES=0x7FF, CQR=1, TO=0x0F, CSS=0xC1, MPSMAX=4) == \
            0x0040_1820_0F01_07FF
        assert regs.pack("CSTS") == 0

    def test_pack_field_too_wide_is_illegal_command(self):
        """pack() checks every field width like with_field()."""
        with pytest.raises(IllegalCommand):
            regs.pack("AQA", ASQS=0x1000)


class TestDoorbells:
    @pytest.mark.parametrize(("qid", "sq", "cq"), [
        (0, 0x1000, 0x1004), (1, 0x1008, 0x100C), (2, 0x1010, 0x1014), (64, 0x1200, 0x1204),
        (0xFFFF, 0x1000 + 0xFFFF * 8, 0x1000 + 0xFFFF * 8 + 4),
    ])
    def test_doorbell_offsets_with_dstrd_0(self, qid, sq, cq):
        """DSTRD 0: SQ y tail at 1000h + 8y, CQ y head at 1000h + 8y + 4."""
        assert regs.sq_tail_doorbell(qid) == sq
        assert regs.cq_head_doorbell(qid) == cq
        assert regs.decode_doorbell(sq) == (qid, False)
        assert regs.decode_doorbell(cq) == (qid, True)

    @pytest.mark.parametrize(("dstrd", "stride", "sq1", "cq1"), [
        (1, 8, 0x1010, 0x1018), (2, 16, 0x1020, 0x1030), (3, 32, 0x1040, 0x1060),
        (15, 4 << 15, 0x1000 + 2 * (4 << 15), 0x1000 + 3 * (4 << 15)),
    ])
    def test_doorbell_offsets_with_dstrd_above_0(self, dstrd, stride, sq1, cq1):
        """Stride is 4 << CAP.DSTRD: SQ y at 1000h + 2y*stride, CQ y at (2y+1)*stride."""
        cap = 0x0040_1820_0F01_07FF | dstrd << 32
        assert regs.doorbell_stride(cap) == stride
        assert regs.sq_tail_doorbell(0, cap) == 0x1000
        assert regs.cq_head_doorbell(0, cap) == 0x1000 + stride
        assert regs.sq_tail_doorbell(1, cap) == sq1
        assert regs.cq_head_doorbell(1, cap) == cq1
        assert regs.decode_doorbell(sq1, cap) == (1, False)
        assert regs.decode_doorbell(cq1, cap) == (1, True)

    @pytest.mark.parametrize(("offset", "dstrd"), [
        (0x1001, 0), (0x1002, 0), (0x1007, 0), (0x0FFC, 0), (0x0000, 0), (0x1004, 1),
        (0x100C, 1), (0x1008, 2),
    ])
    def test_decode_doorbell_rejects_misaligned_or_below_block(self, offset, dstrd):
        """Offsets off the stride grid or below 1000h are not doorbells."""
        assert regs.decode_doorbell(offset, dstrd << 32) is None

    @given(qid=u(16), dstrd=u(4))
    def test_decode_doorbell_inverts_both_doorbell_offsets(self, qid, dstrd):
        """decode_doorbell() maps every SQ/CQ doorbell offset back to (qid, is_cq)."""
        cap = dstrd << 32
        assert regs.decode_doorbell(regs.sq_tail_doorbell(qid, cap), cap) == (qid, False)
        assert regs.decode_doorbell(regs.cq_head_doorbell(qid, cap), cap) == (qid, True)


# ---------------------------------------------------------------------------- structures
ALL_LAYOUTS = [
    pytest.param(structures.ID_CTRL, structures.IDENTIFY_SIZE, id="id-ctrl"),
    pytest.param(structures.ID_NS, structures.IDENTIFY_SIZE, id="id-ns"),
    pytest.param(structures.SMART_LOG, structures.SMART_LOG_SIZE, id="smart"),
    pytest.param(structures.FW_SLOT_LOG, structures.FW_SLOT_LOG_SIZE, id="fw-slot"),
]


class TestStructures:
    @pytest.mark.parametrize(("layout", "name", "offset", "size"), [
        (structures.ID_CTRL, "vid", 0, 2), (structures.ID_CTRL, "sn", 4, 20),
        (structures.ID_CTRL, "mn", 24, 40), (structures.ID_CTRL, "fr", 64, 8),
        (structures.ID_CTRL, "mdts", 77, 1), (structures.ID_CTRL, "ver", 80, 4),
        (structures.ID_CTRL, "oacs", 256, 2), (structures.ID_CTRL, "aerl", 259, 1),
        (structures.ID_CTRL, "sqes", 512, 1), (structures.ID_CTRL, "cqes", 513, 1),
        (structures.ID_CTRL, "nn", 516, 4), (structures.ID_CTRL, "oncs", 520, 2),
        (structures.ID_CTRL, "vwc", 525, 1), (structures.ID_CTRL, "subnqn", 768, 256),
        (structures.ID_NS, "nsze", 0, 8), (structures.ID_NS, "flbas", 26, 1),
        (structures.ID_NS, "dlfeat", 33, 1), (structures.ID_NS, "lbaf0", 128, 4),
        (structures.SMART_LOG, "temperature", 1, 2),
        (structures.SMART_LOG, "data_units_read", 32, 16),
        (structures.SMART_LOG, "num_err_log_entries", 176, 16),
        (structures.FW_SLOT_LOG, "frs1", 8, 8),
    ])
    def test_structure_field_offsets_match_spec(self, layout, name, offset, size):
        """Identify and log page fields sit at the spec's byte offsets."""
        assert (name, offset, size) in layout

    @pytest.mark.parametrize(("layout", "size"), ALL_LAYOUTS)
    def test_layout_fields_fit_and_do_not_overlap(self, layout, size):
        """Every field lies inside the structure and no two fields share a byte."""
        used = bytearray(size)
        for _name, off, n in layout:
            assert 0 <= off and off + n <= size
            assert not any(used[off:off + n])
            used[off:off + n] = b"\x01" * n

    def test_build_writes_little_endian_ints_at_their_offsets(self):
        """build() places integers little-endian at their offsets and zeroes the rest."""
        data = structures.build(structures.ID_CTRL, 4096, vid=0x1B36, sqes=0x66, nn=256,
                                ver=0x00010400)
        assert len(data) == 4096
        assert data[0:2] == bytes.fromhex("361b")
        assert data[80:84] == bytes.fromhex("00040100")
        assert data[512] == 0x66
        assert data[516:520] == bytes.fromhex("00010000")
        assert data.count(0) == 4096 - 6

    def test_build_pads_text_fields_with_spaces_and_nqn_with_zeros(self):
        """ASCII fields (SN, MN, FR) pad with spaces; SUBNQN pads with NUL."""
        data = structures.build(structures.ID_CTRL, 4096, sn=b"abc", mn=b"QEMU", fr=b"1.0",
                                subnqn=b"nqn.x")
        assert data[4:24] == b"abc" + b" " * 17
        assert data[24:64] == b"QEMU" + b" " * 36
        assert data[64:72] == b"1.0     "
        assert data[768:1024] == b"nqn.x" + bytes(251)

    def test_parse_reads_back_what_build_wrote(self):
        """parse(build(values)) gives the values back, zero (or padding) elsewhere."""
        data = structures.build(structures.ID_CTRL, 4096, vid=0x1B36, sn=b"serial",
                                aerl=3, subnqn=b"nqn")
        out = structures.parse(structures.ID_CTRL, data)
        assert out["vid"] == 0x1B36
        assert out["aerl"] == 3
        assert out["sn"] == b"serial" + b" " * 14
        assert out["subnqn"] == b"nqn" + bytes(253)
        assert out["nn"] == 0
        assert out["mn"] == bytes(40)          # unset text fields stay zero

    @given(st.fixed_dictionaries({
        name: u(8 * n) for name, _off, n in structures.SMART_LOG
    }))
    def test_smart_log_build_parse_round_trip(self, values):
        """Every SMART log integer field survives build then parse unchanged."""
        data = structures.build(structures.SMART_LOG, structures.SMART_LOG_SIZE, **values)
        assert len(data) == structures.SMART_LOG_SIZE
        assert structures.parse(structures.SMART_LOG, data) == values

    def test_build_unknown_field_is_illegal_command(self):
        """Naming a field the layout does not have is refused."""
        with pytest.raises(IllegalCommand):
            structures.build(structures.ID_NS, 4096, nope=1)

    @pytest.mark.parametrize(("name", "value"), [
        ("vid", 0x10000), ("vid", -1), ("aerl", 256), ("sn", b"x" * 21), ("fr", b"123456789"),
    ])
    def test_build_value_too_large_is_illegal_command(self, name, value):
        """An integer or byte string that does not fit its field is refused."""
        with pytest.raises(IllegalCommand):
            structures.build(structures.ID_CTRL, 4096, **{name: value})

    @pytest.mark.parametrize("length", range(16))
    def test_parse_of_truncated_structure_is_format_error(self, length):
        """parse() refuses data shorter than the last field's end (FW slot log: 16 bytes)."""
        with pytest.raises(FormatError):
            structures.parse(structures.FW_SLOT_LOG, bytes(length))

    def test_parse_accepts_exactly_the_last_field_end(self):
        """Data that ends exactly at the last field parses; a longer buffer parses too."""
        data = bytes([1]) + bytes(7) + b"1.0     "
        assert structures.parse(structures.FW_SLOT_LOG, data) == {"afi": 1, "frs1": b"1.0     "}
        assert structures.parse(structures.FW_SLOT_LOG, data + bytes(496))["afi"] == 1
        with pytest.raises(FormatError):
            structures.parse(structures.SMART_LOG, bytes(191))
