"""Guest memory, the namespace's backing store, and PRP walking.

Both stores are sparse: guest memory keeps 4 KiB pages that were ever written (unwritten bytes
read as zero), the namespace keeps written logical blocks.  Neither is controller state: in a
migration they travel like VM RAM and a shared disk, so the twin and the migrated controller
each get their own copy and a snapshot never contains them.  Guest memory can mark a point
in time (``checkpoint``) and later take back every write since (``rollback``): a precopy
migration's final RAM pass, after which what the source writes never arrives.

``map_prp`` turns (PRP1, PRP2, length) into a list of (address, length) segments following the
NVMe PRP rules QEMU enforces; a violation returns a status instead of raising, because a bad
PRP is a command error the guest must see, not a bug of ours.
"""

from __future__ import annotations

from nvmefuzz.protocol.spec import DNR, Status

PAGE = 4096
_ZERO_PAGE = bytes(PAGE)


class GuestMemory:
    """Byte-addressed sparse memory (guest RAM as the device sees it through DMA)."""

    __slots__ = ("pages", "limit", "_before")

    def __init__(self, limit: int = 1 << 40) -> None:
        self.pages: dict[int, bytearray] = {}
        self.limit = limit
        #: since ``checkpoint``: each page written, as it was then (None: it did not exist)
        self._before: dict[int, bytes | None] | None = None

    def valid(self, addr: int, length: int) -> bool:
        return 0 <= addr and addr + length <= self.limit

    def read(self, addr: int, length: int) -> bytes:
        out = bytearray()
        while length:
            page, off = divmod(addr, PAGE)
            n = min(length, PAGE - off)
            data = self.pages.get(page)
            out += data[off:off + n] if data is not None else _ZERO_PAGE[:n]
            addr += n
            length -= n
        return bytes(out)

    def write(self, addr: int, data: bytes) -> None:
        pos = 0
        while pos < len(data):
            page, off = divmod(addr + pos, PAGE)
            n = min(len(data) - pos, PAGE - off)
            buf = self.pages.get(page)
            if self._before is not None and page not in self._before:
                self._before[page] = None if buf is None else bytes(buf)
            if buf is None:
                buf = self.pages[page] = bytearray(PAGE)
            buf[off:off + n] = data[pos:pos + n]
            pos += n

    def read_u32(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 4), "little")

    def write_u32(self, addr: int, value: int) -> None:
        self.write(addr, (value & 0xFFFFFFFF).to_bytes(4, "little"))

    def checkpoint(self) -> None:
        """Remember the memory as it is now, for ``rollback`` (``commit`` forgets it)."""
        self._before = {}

    def rollback(self) -> None:
        """Take back every write since ``checkpoint``."""
        for page, old in (self._before or {}).items():
            if old is None:
                del self.pages[page]
            else:
                self.pages[page] = bytearray(old)
        self._before = None

    def commit(self) -> None:
        """Keep the writes since ``checkpoint``."""
        self._before = None

    def copy(self) -> GuestMemory:
        other = GuestMemory(self.limit)
        other.pages = {k: bytearray(v) for k, v in self.pages.items()}
        return other


class NamespaceStore:
    """Logical blocks of one namespace; unwritten or deallocated blocks read as zeroes."""

    __slots__ = ("blocks", "lba_size", "nsze")

    def __init__(self, nsze: int, lba_size: int = 512) -> None:
        self.blocks: dict[int, bytes] = {}
        self.lba_size = lba_size
        self.nsze = nsze

    def read(self, slba: int, nlb: int) -> bytes:
        zero = bytes(self.lba_size)
        return b"".join(self.blocks.get(lba, zero) for lba in range(slba, slba + nlb))

    def write(self, slba: int, data: bytes) -> None:
        size = self.lba_size
        for i in range(len(data) // size):
            block = data[i * size:(i + 1) * size]
            if block.count(0) == size:
                self.blocks.pop(slba + i, None)
            else:
                self.blocks[slba + i] = block

    def deallocate(self, slba: int, nlb: int) -> None:
        for lba in range(slba, slba + nlb):
            self.blocks.pop(lba, None)

    def copy(self) -> NamespaceStore:
        other = NamespaceStore(self.nsze, self.lba_size)
        other.blocks = dict(self.blocks)
        return other


PRP_ERROR = Status.INVALID_PRP_OFFSET | DNR
DMA_ERROR = int(Status.DATA_TRANSFER_ERROR)


def map_prp(mem: GuestMemory, prp1: int, prp2: int, length: int,
            page_size: int) -> list[tuple[int, int]] | int:
    """Segments for a ``length``-byte transfer, or the status a controller completes with."""
    mask = page_size - 1
    first = min(length, page_size - (prp1 & mask))
    segments = [(prp1, first)]
    remaining = length - first
    if remaining <= 0:
        return segments
    if remaining <= page_size:
        if prp2 & mask:
            return PRP_ERROR
        segments.append((prp2, remaining))
        return segments
    # PRP2 is a PRP list; the last entry of a full list page chains to the next list page.
    entries_per_page = page_size // 8
    list_addr = prp2
    index = (list_addr & mask) // 8
    while remaining > 0:
        if not mem.valid(list_addr, 8):
            return DMA_ERROR
        entry = int.from_bytes(mem.read(list_addr + 0, 8), "little")
        if index == entries_per_page - 1 and remaining > page_size:
            if entry & mask:                  # QEMU: the chain pointer is page aligned too
                return PRP_ERROR
            list_addr, index = entry, (entry & mask) // 8
            continue
        if entry & mask:
            return PRP_ERROR
        n = min(remaining, page_size)
        segments.append((entry, n))
        remaining -= n
        list_addr += 8
        index += 1
    return segments


def gather(mem: GuestMemory, segments: list[tuple[int, int]]) -> bytes | None:
    """Host memory covered by ``segments``, or None when a segment is outside guest RAM."""
    if not all(mem.valid(a, n) for a, n in segments):
        return None
    return b"".join(mem.read(a, n) for a, n in segments)


def scatter(mem: GuestMemory, segments: list[tuple[int, int]], data: bytes) -> bool:
    """Write ``data`` over ``segments``; False (nothing written) when one is outside RAM."""
    if not all(mem.valid(a, n) for a, n in segments):
        return False
    pos = 0
    for addr, n in segments:
        mem.write(addr, data[pos:pos + n])
        pos += n
    return True
