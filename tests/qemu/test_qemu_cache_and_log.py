"""The qemu target's pure parts: its guest-memory block cache and its trace-log accounting.
No QEMU: a bytearray stands in for guest RAM, hand-written lines for the trace log."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, strategies as st

from nvmefuzz.errors import DeviceProtocolError
from nvmefuzz.targets import qtest_codec as Q
from nvmefuzz.targets.qemu_cache import (
    BLOCK, HOT_READ, PREFETCH_BLOCKS, BlockCache, block_reads, runs, span,
)
from nvmefuzz.targets.qemu_log import (
    MARKER_LINE, MARKER_OFFSET, QTEST_CHUNK, Inflight, marker,
)

RAM = 64 * BLOCK


def _serve(ram: bytearray, lines: list[str]) -> list[Q.Reply]:
    """Answer qtest reads as QEMU would, from ``ram``."""
    out = []
    for line in lines:
        _, addr, size = line.split()
        a, n = int(addr, 16), int(size, 16)
        out.append(Q.Reply(True, "0x" + ram[a:a + n].hex()))
    return out


def _fill(cache: BlockCache, ram: bytearray, blocks) -> None:
    got, lines = block_reads(blocks)
    cache.store(got, _serve(ram, lines))


def test_runs_join_consecutive_blocks():
    assert runs([7, 1, 2, 3, 9, 8]) == [(1, 3), (7, 3)]
    assert runs([]) == []
    assert list(span(BLOCK - 1, 2)) == [0, 1] and list(span(BLOCK, BLOCK)) == [1]


ops = st.lists(st.tuples(st.sampled_from(["read", "write", "epoch"]),
                         st.integers(0, RAM - 1), st.integers(1, 3 * BLOCK)), max_size=40)


@given(ops)
def test_the_cache_reads_what_ram_holds(script):
    """Reads through the cache (fetching what it says is missing) equal guest RAM, across
    the host's own writes and new epochs; nothing missing is ever reported twice."""
    ram = bytearray(i % 251 for i in range(RAM))
    cache = BlockCache()
    for op, addr, length in script:
        length = min(length, RAM - addr)
        if op == "epoch":
            got, lines = cache.epoch()
            cache.store(got, _serve(ram, lines))
        elif op == "write":
            data = bytes((addr + i) % 7 for i in range(length))
            ram[addr:addr + length] = data
            cache.update(addr, data)
        else:
            missing = cache.missing(span(addr, length))
            assert len(missing) == len(set(missing))
            _fill(cache, ram, missing)
            assert cache.missing(span(addr, length)) == []
            assert cache.read(addr, length) == bytes(ram[addr:addr + length])


def test_short_reads_are_prefetched_in_the_next_epoch():
    ram = bytearray(RAM)
    cache = BlockCache()
    _fill(cache, ram, [3, 10, 11, 12])
    cache.read(3 * BLOCK, 16)                      # short: hot next epoch
    cache.read(10 * BLOCK, HOT_READ + 1)           # long: not
    got, lines = cache.epoch(blocks=[20])
    assert got == [(3, 1), (20, 1)] and len(lines) == 2
    assert cache.blocks == {}                      # the device may have run: all forgotten
    # a fetch between settles brings the hot blocks along, once
    assert cache.missing([30]) == [30, 3]
    assert cache.missing([3]) == [3]
    # an epoch with no short reads keeps the hot blocks of the one before
    assert cache.epoch()[0] == [(3, 1)]


def test_hot_blocks_are_the_most_recent_across_epochs():
    """A step that settles twice and looks at one block in between (an admin command: its
    CQE) still gets everything a step looks at afterwards (MSI-X, every CQ) prefetched."""
    ram = bytearray(RAM)
    cache = BlockCache()
    msix, admin_cq, io_cq = 40, 3, 7
    _fill(cache, ram, [msix, admin_cq, io_cq])
    for b in (msix, admin_cq, io_cq):
        cache.read(b * BLOCK, 16)
    got, lines = cache.epoch()
    cache.store(got, _serve(ram, lines))
    cache.read(admin_cq * BLOCK, 16)               # between the settles: the CQE only
    assert cache.epoch()[0] == [(admin_cq, 1), (io_cq, 1), (msix, 1)]
    # at most PREFETCH_BLOCKS of them, the least recently read dropped first
    _fill(cache, ram, range(10, 10 + PREFETCH_BLOCKS))
    for b in range(10, 10 + PREFETCH_BLOCKS):
        cache.read(b * BLOCK, 16)
    assert cache.epoch()[0] == [(10, PREFETCH_BLOCKS)]


def test_a_marker_is_longer_than_a_qtest_chunk_and_reads_the_marker_dword():
    line = marker(0xC000_0000)
    assert len(line) > QTEST_CHUNK
    assert int(line.split()[1], 16) == 0xC000_0000 + MARKER_OFFSET


IO_CMD = "pci_nvme_io_cmd cid 4 nsid 0x1 sqid 1 opc 0x1 opname 'NVME_NVM_CMD_WRITE'"
ADMIN_FORMAT = "pci_nvme_admin_cmd cid 9 sqid 0 opc 0x80 opname 'NVME_ADM_CMD_FORMAT_NVM'"
ADMIN_IDENTIFY = "pci_nvme_admin_cmd cid 8 sqid 0 opc 0x6 opname 'NVME_ADM_CMD_IDENTIFY'"


def _done(cid: int, cqid: int) -> str:
    return f"pci_nvme_enqueue_req_completion cid {cid} cqid {cqid} dw0 0x0 dw1 0x0 status 0x0"


def test_inflight_counts_fetched_io_and_format_until_their_completions():
    log = Inflight(Counter())
    rounds, after = log.poll([IO_CMD, MARKER_LINE, IO_CMD, ADMIN_FORMAT, ADMIN_IDENTIFY,
                              MARKER_LINE, "pci_nvme_mmio_read addr 0x1c size 4", MARKER_LINE],
                             held=False)
    assert rounds == [(True, True), (True, True), (False, True)] and not after
    assert (log.io, log.admin[9], log.admin[8]) == (2, 1, 0)
    assert log.busy(held=False) and not log.busy(held=True)
    rounds, after = log.poll([_done(4, 1), _done(4, 1), _done(8, 0), MARKER_LINE,
                              _done(9, 0)], held=False)
    assert rounds == [(True, True)] and after          # Format NVM still out at the marker
    assert log.io == 0 and not log.busy(held=False)


def test_while_held_only_what_the_hold_lets_through_is_waited_for():
    """A discard passes a held backend and completes in the block layer's own time: a settle
    waits for it; the held Write it waits behind is nothing to wait for."""
    dsm = IO_CMD.replace("cid 4", "cid 5").replace("opc 0x1", "opc 0x9")
    log = Inflight(Counter())
    rounds, _ = log.poll([IO_CMD, dsm, MARKER_LINE], held=True)
    assert rounds == [(True, True)] and log.io == 2
    assert log.busy(held=True)
    log.poll([_done(5, 1), MARKER_LINE], held=True)
    assert not log.busy(held=True) and log.busy(held=False) and log.io == 1
    log.poll([_done(4, 1)], held=False)
    assert log.io == 0 and not log.busy(held=False)


def test_more_completions_than_fetches_is_counted_and_never_waited_on():
    stats: Counter = Counter()
    log = Inflight(stats)
    log.poll([_done(1, 1)], held=False)
    assert log.io == 0 and stats["count anomalies"] == 1


def test_a_trace_line_without_its_fields_is_a_protocol_error():
    with pytest.raises(DeviceProtocolError, match="unexpected QEMU trace line"):
        Inflight(Counter()).poll(["pci_nvme_enqueue_req_completion cid"], held=False)
