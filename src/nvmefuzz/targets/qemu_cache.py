"""The qemu target's copy of guest memory at rest, in ``BLOCK``-byte blocks.

How it works
------------
Every read of guest memory over qtest is a round trip, and a step reads the same few places
again and again (CQ entries, MSI-X messages, the data buffers of its commands).  While the
device is at rest nothing but the host changes guest RAM, so a block read then stays valid
until the device may run again: the target starts a new *epoch* (``epoch``) at every settle,
which empties the cache.  The host's own writes update the blocks cached (``update``).
Only guest RAM (below ``CACHED_BELOW``) is cached; above it may be MMIO.

Prefetching: the ``PREFETCH_BLOCKS`` blocks most recently touched by short reads (up to
``HOT_READ`` bytes), in this epoch or the ones before, are *hot*, and a settle reads them
after its markers in the same round trip (``epoch`` gives the runs and qtest reads), so what
a step looks at usually costs no round trip of its own.  Recency, not the last epoch alone:
a step may settle twice (an admin command: once after its doorbell, once after consuming
its CQE) and look at little in between, yet after the second it reads the MSI-X messages
and every CQ, as after any step.  A block that has to be fetched between settles brings
the hot blocks not yet cached along (``missing``).  The reads of a set of blocks are
formatted once and remembered (a step's sets repeat).

The cache does no IO: the target sends the reads it names and hands it the replies.
"""

from __future__ import annotations

from typing import Iterable

from nvmefuzz.host import layout as L
from nvmefuzz.targets import qtest_codec as Q

BLOCK = 256                      # guest memory is cached in blocks of this many bytes
CACHED_BELOW = L.RAM_SIZE        # guest RAM; anything above may be MMIO and is never cached
HOT_READ = 512                   # reads up to this long mark their blocks for prefetching
PREFETCH_BLOCKS = 16             # hot blocks carried into the next epoch, at most
MEMO = 64                        # sets of blocks whose formatted reads are remembered

Runs = list[tuple[int, int]]


def runs(blocks: Iterable[int]) -> Runs:
    """Sorted block numbers as (first, count) runs of consecutive blocks."""
    out: list[list[int]] = []
    for b in sorted(blocks):
        if out and out[-1][0] + out[-1][1] == b:
            out[-1][1] += 1
        else:
            out.append([b, 1])
    return [(b, n) for b, n in out]


def block_reads(blocks: Iterable[int]) -> tuple[Runs, list[str]]:
    """The runs of ``blocks`` and one qtest read per run."""
    r = runs(blocks)
    return r, [Q.format_mem_read(b * BLOCK, n * BLOCK) for b, n in r]


def span(addr: int, length: int) -> range:
    """The block numbers ``length`` bytes from ``addr`` touch (``length`` > 0)."""
    return range(addr // BLOCK, (addr + length - 1) // BLOCK + 1)


def cacheable(addr: int, length: int) -> bool:
    return addr + length <= CACHED_BELOW


class BlockCache:
    """Guest RAM blocks read at rest, and which blocks to prefetch at the next settle."""

    def __init__(self) -> None:
        self.blocks: dict[int, bytearray] = {}   # block number -> bytes, valid while at rest
        self.recent: dict[int, None] = {}        # blocks of short reads, least recent first
        self.hot: list[int] = []                 # ... as they were at the last epoch
        self._reads: dict[frozenset, tuple[Runs, list[str]]] = {}

    def epoch(self, blocks: Iterable[int] = ()) -> tuple[Runs, list[str]]:
        """The device may have run: forget every block.  Returns the reads a settle sends
        to refill the cache: ``blocks`` and the hot ones."""
        self.hot = list(self.recent)
        self.blocks.clear()
        want = frozenset((*blocks, *self.hot))
        known = self._reads.get(want)
        if known is None:
            if len(self._reads) > MEMO:
                self._reads.clear()
            known = self._reads[want] = block_reads(want)
        return known

    def missing(self, blocks: Iterable[int]) -> list[int]:
        """The blocks to fetch before ``blocks`` can be read: those not cached, and the hot
        ones not cached with them (none when every block is cached)."""
        need = [b for b in blocks if b not in self.blocks]
        if not need:
            return []
        return need + [b for b in self.hot if b not in self.blocks and b not in need]

    def store(self, got: Runs, replies: list[Q.Reply]) -> None:
        """Cache the replies to ``block_reads(...)`` whose runs were ``got``."""
        for (first, n), r in zip(got, replies):
            raw = r.data(n * BLOCK)
            for i in range(n):
                self.blocks[first + i] = bytearray(raw[i * BLOCK:(i + 1) * BLOCK])

    def read(self, addr: int, length: int) -> bytes:
        """``length`` bytes from ``addr``, every block cached; a short read makes its blocks
        the most recent, hot from the next epoch on."""
        blocks = span(addr, length)
        if length <= HOT_READ:
            recent = self.recent
            for b in blocks:
                recent.pop(b, None)
                recent[b] = None
            while len(recent) > PREFETCH_BLOCKS:
                del recent[next(iter(recent))]
        off = addr - blocks[0] * BLOCK
        if len(blocks) == 1:
            return bytes(self.blocks[blocks[0]][off:off + length])
        return b"".join([self.blocks[b] for b in blocks])[off:off + length]

    def update(self, addr: int, data: bytes) -> None:
        """The host wrote ``data`` at ``addr``: the blocks cached take it."""
        end = addr + len(data)
        for b in span(addr, len(data)):
            block = self.blocks.get(b)
            if block is None:
                continue
            lo, hi = max(addr, b * BLOCK), min(end, (b + 1) * BLOCK)
            block[lo - b * BLOCK:hi - b * BLOCK] = data[lo - addr:hi - addr]
