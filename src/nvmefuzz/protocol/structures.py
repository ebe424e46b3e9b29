"""Data structures the controller writes into host memory: Identify data and log pages.

Each structure is a layout table of ``(name, offset, size)`` in bytes, little-endian integers
or byte strings, over a fixed total size.  ``build`` fills a zeroed buffer from keyword values
and ``parse`` reads every field back, so tests and the host driver never index raw offsets.
Offsets come from the NVMe Base specification (cross-checked with libnvme ``struct
nvme_id_ctrl``, ``nvme_id_ns``, ``nvme_smart_log``).
"""

from __future__ import annotations

from nvmefuzz.errors import FormatError, IllegalCommand

Layout = tuple[tuple[str, int, int], ...]

IDENTIFY_SIZE = 4096

ID_CTRL: Layout = (
    ("vid", 0, 2), ("ssvid", 2, 2), ("sn", 4, 20), ("mn", 24, 40), ("fr", 64, 8),
    ("rab", 72, 1), ("ieee", 73, 3), ("cmic", 76, 1), ("mdts", 77, 1), ("cntlid", 78, 2),
    ("ver", 80, 4), ("oaes", 92, 4), ("ctratt", 96, 4), ("cntrltype", 111, 1),
    ("oacs", 256, 2), ("acl", 258, 1), ("aerl", 259, 1), ("frmw", 260, 1), ("lpa", 261, 1),
    ("elpe", 262, 1), ("npss", 263, 1), ("wctemp", 266, 2), ("cctemp", 268, 2),
    ("kas", 320, 2), ("sqes", 512, 1), ("cqes", 513, 1), ("maxcmd", 514, 2), ("nn", 516, 4),
    ("oncs", 520, 2), ("fuses", 522, 2), ("vwc", 525, 1), ("sgls", 536, 4),
    ("subnqn", 768, 256),
)

#: Identify Controller data specific to the NVM command set (CNS 06h, CSI 0)
ID_CTRL_NVM: Layout = (
    ("vsl", 0, 1), ("wzsl", 1, 1), ("wusl", 2, 1), ("dmrl", 3, 1), ("dmrsl", 4, 4),
    ("dmsl", 8, 8),
)

ID_NS: Layout = (
    ("nsze", 0, 8), ("ncap", 8, 8), ("nuse", 16, 8), ("nsfeat", 24, 1), ("nlbaf", 25, 1),
    ("flbas", 26, 1), ("mc", 27, 1), ("dpc", 28, 1), ("dps", 29, 1), ("nmic", 30, 1),
    ("dlfeat", 33, 1), ("lbaf0", 128, 4),
)

SMART_LOG_SIZE = 512
SMART_LOG: Layout = (
    ("critical_warning", 0, 1), ("temperature", 1, 2), ("avail_spare", 3, 1),
    ("spare_thresh", 4, 1), ("percent_used", 5, 1), ("data_units_read", 32, 16),
    ("data_units_written", 48, 16), ("host_reads", 64, 16), ("host_writes", 80, 16),
    ("ctrl_busy_time", 96, 16), ("power_cycles", 112, 16), ("power_on_hours", 128, 16),
    ("unsafe_shutdowns", 144, 16), ("media_errors", 160, 16), ("num_err_log_entries", 176, 16),
)

ERROR_LOG_ENTRY_SIZE = 64
FW_SLOT_LOG_SIZE = 512
FW_SLOT_LOG: Layout = (("afi", 0, 1), ("frs1", 8, 8))
CHANGED_NS_LOG_SIZE = 4096
EFFECTS_LOG_SIZE = 4096
TIMESTAMP_SIZE = 8
HOST_BEHAVIOR_SIZE = 512


def build(layout: Layout, size: int, **values: int | bytes) -> bytes:
    """A ``size``-byte structure with the named fields set and everything else zero."""
    out = bytearray(size)
    table = {name: (off, n) for name, off, n in layout}
    for name, value in values.items():
        if name not in table:
            raise IllegalCommand(f"no field {name!r} in this structure")
        off, n = table[name]
        if isinstance(value, bytes):
            if len(value) > n:
                raise IllegalCommand(f"{name} holds {n} bytes, got {len(value)}")
            raw = value.ljust(n, _TEXT.get(name, b"\0"))
        else:
            if not 0 <= value < 1 << (8 * n):
                raise IllegalCommand(f"{name}={value} does not fit {n} bytes")
            raw = value.to_bytes(n, "little")
        out[off:off + n] = raw
    return bytes(out)


def parse(layout: Layout, data: bytes) -> dict[str, int | bytes]:
    """Every field of ``layout`` read from ``data`` (ASCII fields as bytes, others as ints)."""
    end = max(off + n for _, off, n in layout)
    if len(data) < end:
        raise FormatError(f"structure needs {end} bytes, got {len(data)}")
    out: dict[str, int | bytes] = {}
    for name, off, n in layout:
        raw = data[off:off + n]
        out[name] = bytes(raw) if name in _TEXT else int.from_bytes(raw, "little")
    return out


#: Text fields and the byte that pads them.
_TEXT = {"sn": b" ", "mn": b" ", "fr": b" ", "frs1": b" ", "subnqn": b"\0"}
