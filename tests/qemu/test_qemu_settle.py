"""Settling the qemu target without stopping the VM: trace-log accounting, pipelining, cache."""

from __future__ import annotations

import time

import pytest

from nvmefuzz.errors import TargetTimeout
from nvmefuzz.fuzz.actions import ACTIONS, observe
from nvmefuzz.host import layout as L
from nvmefuzz.host.driver import Host, pattern_bytes
from nvmefuzz.protocol import regs
from nvmefuzz.protocol.queues import SQE
from nvmefuzz.protocol.spec import IoOpcode as IO
from nvmefuzz.targets import qemu as Qm, qemu_log as qlog


def _ready(t, depth=16):
    h = Host(t)
    assert ACTIONS["enable"](h, t, {}) == [("reg/CSTS", {"value": 1})]
    assert ACTIONS["create_cq"](h, t, {"qid": 1, "size": depth, "iv": 1})[0][1]["status"] == 0
    assert ACTIONS["create_sq"](h, t, {"qid": 1, "size": depth, "cqid": 1})[0][1]["status"] == 0
    observe(h, t)
    return h


def test_io_settles_from_the_trace_log_without_drain_barriers(make_target):
    """Fifteen writes and reads in flight together all complete; no QMP barrier is used."""
    t = make_target()
    h = _ready(t)
    for j in range(15):
        h.submit(1, SQE(IO.WRITE if j % 2 == 0 else IO.READ, nsid=1, cdw10=8 * j, cdw12=7),
                 data=pattern_bytes(j, 4096), length=4096, returns_data=j % 2 == 1)
    h.ring_sq(1)
    t.advance(0)
    done = h.harvest(1)
    assert len(done) == 15 and all(c.cqe.status == 0 for c in done)
    assert t.inflight.io == 0 and t.stats["drain barriers"] == 0
    assert t.stats["settles"] > 0 and t.stats["count anomalies"] == 0


def test_format_nvm_is_waited_for_by_cid(make_target):
    """Format NVM is the admin command QEMU completes through the block layer."""
    t = make_target()
    h = _ready(t)
    ACTIONS["io"](h, t, {"qid": 1, "opc": int(IO.WRITE), "slba": 0, "nlb": 8, "pattern": 9})
    ACTIONS["consume"](h, t, {"qid": 1})
    [(label, f)] = ACTIONS["admin"](h, t, {"opc": 0x80, "nsid": 1, "cdw10": 0})
    assert label == "cqe/admin/FORMAT_NVM" and f["status"] == 0
    assert not any(t.inflight.admin.values())
    ACTIONS["io"](h, t, {"qid": 1, "opc": int(IO.READ), "slba": 0, "nlb": 8})
    [(_, read)] = ACTIONS["consume"](h, t, {"qid": 1})
    assert read["status"] == 0 and read["data"] == bytes(4096)       # formatted: zeroes


def test_writes_are_queued_until_a_reply_is_needed(make_target):
    """Register and memory writes cost no round trip of their own."""
    t = make_target()
    _ready(t)
    before = t.stats["round trips"]
    t.mem_write(0x20_0000, b"\x11" * 64)
    t.mmio_write(0x0C, 4, 1)                                   # INTMS (ignored with MSI-X)
    assert t.stats["round trips"] == before and len(t._pending) == 2
    assert t.mem_read(0x20_0000, 64) == b"\x11" * 64
    assert t._pending == []


def test_memory_at_rest_is_cached_and_kept_coherent(make_target):
    """A second read of a settled page is free; our own writes update the cached copy."""
    t = make_target()
    _ready(t)
    t.mem_write(0x30_0000, bytes(range(256)) * 16)
    t.drain()
    assert t.mem_read(0x30_0010, 16) == bytes(range(16, 32))
    trips = t.stats["round trips"]
    t.mem_write(0x30_0020, b"\xAA" * 8)
    assert t.mem_read(0x30_0018, 24) == bytes(range(24, 32)) + b"\xAA" * 8 + bytes(range(40, 48))
    assert t.stats["round trips"] == trips
    assert t.mem_read(L.UNMAPPED - 8, 8) == t.mem_read(L.UNMAPPED - 8, 8)   # uncached region


def test_io_that_never_completes_is_a_hang_after_one_drain_barrier(make_target):
    """A command counted in flight that a drain cannot finish ends in TargetTimeout."""
    t = make_target()
    _ready(t)
    t.settle_timeout = 0.05
    t.inflight.io = 1                       # as if QEMU had lost a fetched command
    t.mmio_write(0x0C, 4, 1)
    with pytest.raises(TargetTimeout, match="never completed"):
        t.mmio_read(0x1C, 4)
    assert t.stats["drain barriers"] == 1


def test_migration_resets_the_accounting_to_the_new_process(make_target):
    """The destination's trace log starts empty; I/O after migration is accounted there."""
    t = make_target()
    h = _ready(t)
    ACTIONS["io"](h, t, {"qid": 1, "opc": int(IO.WRITE), "slba": 5, "nlb": 1, "pattern": 3,
                         "ring": False})
    old = t.proc
    assert t.migrate().ok and t.proc is not old
    ACTIONS["ring_sq"](h, t, {"qid": 1})
    [(label, f)] = ACTIONS["consume"](h, t, {"qid": 1})
    assert label == "cqe/io/WRITE" and f["status"] == 0
    assert t.inflight.io == 0 and t.stats["drain barriers"] == 0


def test_the_virtual_clock_is_carried_across_a_migration(make_target):
    """After an hour of virtual time and a migration, SMART power-on hours still say 1."""
    t = make_target()
    h = _ready(t)
    ACTIONS["advance"](h, t, {"ns": 3_600_000_000_000})
    assert t.migrate().ok
    [(_, f)] = ACTIONS["admin"](h, t, {"opc": 2, "cdw10": 2 | 127 << 16, "length": 512,
                                      "nsid": 0xFFFFFFFF})
    assert f["status"] == 0 and int.from_bytes(f["data"][128:144], "little") == 1


def test_trace_options_enable_each_counted_event():
    """One -trace option per event (QEMU keeps only the last enable= of an option)."""
    from nvmefuzz.targets.qemu_argv import TRACE_EVENTS, trace_args

    args = trace_args("/t/x.trace")
    assert args[::2] == ["-trace"] * len(TRACE_EVENTS)
    assert args[-1] == f"enable={TRACE_EVENTS[-1]},file=/t/x.trace"


def _fetch_and_markers(t, h, marker: str) -> list[str]:
    """Ring one Read, send two copies of ``marker`` right behind the doorbell, and return the
    order in which QEMU logged the fetch (F), its completion (C) and the markers (M)."""
    h.submit(1, SQE(IO.READ, nsid=1, cdw12=7), length=4096, returns_data=True)
    h.ring_sq(1)
    t._exchange([marker, marker])
    seen: list[str] = []
    deadline = time.monotonic() + 5
    while "C" not in seen and time.monotonic() < deadline:
        for line in t.proc.trace_lines():
            event, _, rest = line.partition(" ")
            if event == "pci_nvme_mmio_read" and rest == "addr 0xffc size 4":
                seen.append("M")
            elif event == "pci_nvme_io_cmd":
                seen.append("F")
            elif event == "pci_nvme_enqueue_req_completion":
                seen.append("C")
    t._unsettle()
    t.drain()
    h.harvest(1)
    h.ring_cq(1)
    t.advance(0)
    return seen


def test_a_marker_runs_after_the_bottom_halves_of_the_requests_before_it(make_target):
    """The settle's premise, checked on this QEMU: a request line longer than the qtest read
    chunk runs in a later main-loop iteration than the requests before it, after the bottom
    halves they scheduled (the doorbell's fetch is logged before the first marker); a short
    read runs in the same iteration as the doorbell, before the fetch."""
    t = make_target()
    h = _ready(t)
    short = f"readl {Qm.BAR0 + qlog.MARKER_OFFSET:#x}"
    assert len(Qm.MARKER) > qlog.QTEST_CHUNK and Qm.MARKER.endswith(short[8:])
    for _ in range(3):
        assert _fetch_and_markers(t, h, Qm.MARKER)[:2] == ["F", "M"]
        assert _fetch_and_markers(t, h, short)[:3] == ["M", "M", "F"]


def test_a_step_without_io_settles_in_one_round_trip(make_target):
    """A CQ head doorbell and a clock step: one round trip, markers and all; a register read
    that finds the device unsettled rides in the settle's round trip."""
    t = make_target()
    h = _ready(t)
    ACTIONS["io"](h, t, {"qid": 1, "opc": int(IO.WRITE), "slba": 0, "nlb": 1, "pattern": 1})
    observe(h, t)
    assert len(h.harvest(1)) == 1
    trips = t.stats["round trips"]
    h.ring_cq(1)
    t.advance(0)
    assert t.stats["round trips"] == trips + 1
    t.mmio_write(regs.cq_head_doorbell(1), 4, h.cqs[1].head)
    assert t.mmio_read(0x1C, 4) & 1 == 1                      # CSTS.RDY
    assert t.stats["round trips"] == trips + 2
    assert t.stats["drain barriers"] == 0
