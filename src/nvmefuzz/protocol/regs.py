"""The controller register map (BAR0) and the bit fields inside registers.

Registers are a table: name -> (offset, size in bytes).  Fields are a second table:
(register, field) -> (low bit, width).  ``field()`` and ``with_field()`` read and replace a
field of an integer register value; nothing else in nvmefuzz shifts register bits by hand.
Doorbells follow the register block at 0x1000 with a stride of ``4 << CAP.DSTRD`` bytes:
SQ y tail at index ``2y``, CQ y head at ``2y + 1``.
"""

from __future__ import annotations

import attrs

REGISTER_BLOCK_SIZE = 0x1000
DOORBELL_BASE = 0x1000
NSSR_MAGIC = 0x4E564D65  # "NVMe"


@attrs.frozen
class Register:
    name: str
    offset: int
    size: int


REGISTERS: tuple[Register, ...] = (
    Register("CAP", 0x00, 8),
    Register("VS", 0x08, 4),
    Register("INTMS", 0x0C, 4),
    Register("INTMC", 0x10, 4),
    Register("CC", 0x14, 4),
    Register("CSTS", 0x1C, 4),
    Register("NSSR", 0x20, 4),
    Register("AQA", 0x24, 4),
    Register("ASQ", 0x28, 8),
    Register("ACQ", 0x30, 8),
    Register("CMBLOC", 0x38, 4),
    Register("CMBSZ", 0x3C, 4),
)
BY_NAME = {r.name: r for r in REGISTERS}
OFFSET = {r.name: r.offset for r in REGISTERS}

CAP, VS, INTMS, INTMC, CC, CSTS, NSSR, AQA, ASQ, ACQ = (
    OFFSET[n] for n in ("CAP", "VS", "INTMS", "INTMC", "CC", "CSTS", "NSSR", "AQA", "ASQ", "ACQ")
)

#: (register, field) -> (low bit, width)
FIELDS: dict[tuple[str, str], tuple[int, int]] = {
    ("CAP", "MQES"): (0, 16),
    ("CAP", "CQR"): (16, 1),
    ("CAP", "AMS"): (17, 2),
    ("CAP", "TO"): (24, 8),
    ("CAP", "DSTRD"): (32, 4),
    ("CAP", "NSSRS"): (36, 1),
    ("CAP", "CSS"): (37, 8),
    ("CAP", "MPSMIN"): (48, 4),
    ("CAP", "MPSMAX"): (52, 4),
    ("CC", "EN"): (0, 1),
    ("CC", "CSS"): (4, 3),
    ("CC", "MPS"): (7, 4),
    ("CC", "AMS"): (11, 3),
    ("CC", "SHN"): (14, 2),
    ("CC", "IOSQES"): (16, 4),
    ("CC", "IOCQES"): (20, 4),
    ("CSTS", "RDY"): (0, 1),
    ("CSTS", "CFS"): (1, 1),
    ("CSTS", "SHST"): (2, 2),
    ("CSTS", "NSSRO"): (4, 1),
    ("CSTS", "PP"): (5, 1),
    ("AQA", "ASQS"): (0, 12),
    ("AQA", "ACQS"): (16, 12),
}

SHN_NONE, SHN_NORMAL, SHN_ABRUPT = 0, 1, 2
SHST_NORMAL, SHST_OCCURRING, SHST_COMPLETE = 0, 1, 2
CSTS_RDY = 1
CSTS_CFS = 2


def field(reg: str, name: str, value: int) -> int:
    """The value of field ``name`` of register ``reg`` inside ``value``."""
    lo, width = FIELDS[(reg, name)]
    return (value >> lo) & ((1 << width) - 1)


def with_field(reg: str, name: str, value: int, new: int) -> int:
    """``value`` with field ``name`` replaced by ``new`` (which must fit)."""
    lo, width = FIELDS[(reg, name)]
    mask = (1 << width) - 1
    if not 0 <= new <= mask:
        from nvmefuzz.errors import IllegalCommand

        raise IllegalCommand(f"{reg}.{name}={new} does not fit {width} bits")
    return (value & ~(mask << lo)) | (new << lo)


def pack(reg: str, **fields: int) -> int:
    """Build a register value from named fields (the rest zero)."""
    value = 0
    for name, v in fields.items():
        value = with_field(reg, name, value, v)
    return value


def doorbell_stride(cap: int) -> int:
    return 4 << field("CAP", "DSTRD", cap)


def sq_tail_doorbell(qid: int, cap: int = 0) -> int:
    return DOORBELL_BASE + 2 * qid * doorbell_stride(cap)


def cq_head_doorbell(qid: int, cap: int = 0) -> int:
    return DOORBELL_BASE + (2 * qid + 1) * doorbell_stride(cap)


def decode_doorbell(offset: int, cap: int = 0) -> tuple[int, bool] | None:
    """(qid, is_cq) for a doorbell offset, or None when misaligned or below the block."""
    stride = doorbell_stride(cap)
    rel = offset - DOORBELL_BASE
    if rel < 0 or rel % stride:
        return None
    index = rel // stride
    return index >> 1, bool(index & 1)
