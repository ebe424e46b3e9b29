"""Submission and completion queue entries: exact 64- and 16-byte little-endian codecs.

``SQE`` and ``CQE`` are frozen values that check every field's width at construction, so an
entry that exists can always be encoded.  ``decode`` accepts exactly one entry: short input and
trailing bytes are both ``FormatError`` (a caller that has a longer buffer slices it).

Layouts (NVMe Base, "Common Command Format" and "Completion Queue Entry"):

    SQE  DW0 OPC 7:0 | FUSE 9:8 | PSDT 15:14 | CID 31:16, DW1 NSID, DW2-3, MPTR, PRP1, PRP2,
         CDW10..CDW15
    CQE  DW0, DW1, SQHD 15:0 | SQID 31:16, CID 15:0 | P 16 | status 31:17
"""

from __future__ import annotations

import struct

import attrs

from nvmefuzz.errors import FormatError, IllegalCommand

SQE_SIZE = 64
CQE_SIZE = 16

_SQE = struct.Struct("<BBHIIIQQQIIIIII")
_CQE = struct.Struct("<IIHHHH")


def _width(bits: int):
    limit = 1 << bits

    def check(inst, attribute, value):
        if not isinstance(value, int) or not 0 <= value < limit:
            raise IllegalCommand(f"{attribute.name}={value!r} does not fit {bits} bits")

    return check


@attrs.frozen
class SQE:
    """A 64-byte submission queue entry."""

    opc: int = attrs.field(validator=_width(8))
    cid: int = attrs.field(default=0, validator=_width(16))
    nsid: int = attrs.field(default=0, validator=_width(32))
    fuse: int = attrs.field(default=0, validator=_width(2))
    psdt: int = attrs.field(default=0, validator=_width(2))
    cdw2: int = attrs.field(default=0, validator=_width(32))
    cdw3: int = attrs.field(default=0, validator=_width(32))
    mptr: int = attrs.field(default=0, validator=_width(64))
    prp1: int = attrs.field(default=0, validator=_width(64))
    prp2: int = attrs.field(default=0, validator=_width(64))
    cdw10: int = attrs.field(default=0, validator=_width(32))
    cdw11: int = attrs.field(default=0, validator=_width(32))
    cdw12: int = attrs.field(default=0, validator=_width(32))
    cdw13: int = attrs.field(default=0, validator=_width(32))
    cdw14: int = attrs.field(default=0, validator=_width(32))
    cdw15: int = attrs.field(default=0, validator=_width(32))

    @property
    def lba_range(self) -> tuple[int, int]:
        """An NVM command's (SLBA, blocks): CDW10-11, and NLB (CDW12 15:0, 0's based) + 1."""
        return self.cdw10 | self.cdw11 << 32, (self.cdw12 & 0xFFFF) + 1

    @property
    def lpo(self) -> int:
        """Get Log Page's Log Page Offset: LPOL (CDW12) and LPOU (CDW13), in bytes."""
        return self.cdw12 | self.cdw13 << 32

    def encode(self) -> bytes:
        return _SQE.pack(
            self.opc, self.fuse | (self.psdt << 6), self.cid, self.nsid, self.cdw2, self.cdw3,
            self.mptr, self.prp1, self.prp2, self.cdw10, self.cdw11, self.cdw12, self.cdw13,
            self.cdw14, self.cdw15,
        )

    @classmethod
    def decode(cls, data: bytes) -> SQE:
        if len(data) != SQE_SIZE:
            raise FormatError(f"an SQE is {SQE_SIZE} bytes, got {len(data)}")
        (opc, flags, cid, nsid, cdw2, cdw3, mptr, prp1, prp2,
         c10, c11, c12, c13, c14, c15) = _SQE.unpack(data)
        # Reserved FLAGS bits 5:2 are dropped, as a controller ignores them.
        return cls(opc=opc, cid=cid, nsid=nsid, fuse=flags & 3, psdt=flags >> 6, cdw2=cdw2,
                   cdw3=cdw3, mptr=mptr, prp1=prp1, prp2=prp2, cdw10=c10, cdw11=c11,
                   cdw12=c12, cdw13=c13, cdw14=c14, cdw15=c15)


@attrs.frozen
class CQE:
    """A 16-byte completion queue entry; ``status`` is the 15-bit SCT/SC/CRD/M/DNR field."""

    cid: int = attrs.field(validator=_width(16))
    status: int = attrs.field(default=0, validator=_width(15))
    sqid: int = attrs.field(default=0, validator=_width(16))
    sqhd: int = attrs.field(default=0, validator=_width(16))
    dw0: int = attrs.field(default=0, validator=_width(32))
    dw1: int = attrs.field(default=0, validator=_width(32))
    phase: int = attrs.field(default=0, validator=_width(1))

    def encode(self) -> bytes:
        return _CQE.pack(self.dw0, self.dw1, self.sqhd, self.sqid, self.cid,
                         (self.status << 1) | self.phase)

    @classmethod
    def decode(cls, data: bytes) -> CQE:
        if len(data) != CQE_SIZE:
            raise FormatError(f"a CQE is {CQE_SIZE} bytes, got {len(data)}")
        dw0, dw1, sqhd, sqid, cid, sf = _CQE.unpack(data)
        return cls(cid=cid, status=sf >> 1, sqid=sqid, sqhd=sqhd, dw0=dw0, dw1=dw1,
                   phase=sf & 1)


def phase_of(raw: bytes) -> int:
    """The phase tag of a raw CQE (byte 14 bit 0), without decoding the rest."""
    return raw[14] & 1
