"""Processes started ahead of time (``qemu_spares``), targets that never migrate, and the
collection of killed processes off the caller's path."""

from __future__ import annotations

import os
import signal
import time

import pytest

from nvmefuzz.fuzz.actions import ACTIONS
from nvmefuzz.host.driver import Host, pattern_bytes
from nvmefuzz.targets import open_target
from nvmefuzz.targets.base import COMPLETED, TargetConfig
from nvmefuzz.targets.qemu import QemuTarget
from nvmefuzz.targets.qemu_spares import DEPTH, RECYCLED, SPARES


@pytest.fixture(autouse=True)
def no_stock():
    """Each test starts with no spares (targets closed by earlier tests leave some)."""
    SPARES.close()
    yield


def _queue_pair(t) -> Host:
    h = Host(t)
    ACTIONS["enable"](h, t, {})
    ACTIONS["create_cq"](h, t, {"qid": 1, "size": 8, "iv": 1})
    ACTIONS["create_sq"](h, t, {"qid": 1, "size": 8, "cqid": 1})
    return h


def _read_block_0(h, t) -> bytes:
    ACTIONS["io"](h, t, {"qid": 1, "opc": 2, "slba": 0, "nlb": 8})
    return ACTIONS["consume"](h, t, {"qid": 1})[-1][1]["data"]


def _write_then_read(t, pattern: int) -> bytes:
    h = _queue_pair(t)
    ACTIONS["io"](h, t, {"qid": 1, "opc": 1, "slba": 0, "nlb": 8, "pattern": pattern})
    return _read_block_0(h, t)


def test_a_target_starts_on_a_spare_started_before_it_was_asked_for(make_target):
    make_target()                                  # the first of a configuration fills the stock
    assert len(SPARES.slots) == DEPTH
    asked = time.monotonic()
    t = make_target()
    assert t.proc.started < asked
    assert t.proc.proc.poll() is None
    assert len(SPARES.slots) == DEPTH              # a replacement was started


def test_targets_from_spares_share_no_files_and_start_blank(make_target):
    a, b = make_target(), make_target()
    assert a.ws.dir != b.ws.dir and a.ws.image != b.ws.image
    assert _write_then_read(a, 7) == pattern_bytes(7, 4096)
    assert _read_block_0(_queue_pair(b), b) == bytes(4096)     # b's image never saw a's write


def test_another_configuration_gets_its_own_process_and_replaces_the_stock(make_target):
    make_target()
    old = [s.source for s in SPARES.slots]
    t = make_target(device_props="mdts=5")
    assert any("mdts=5" in part for part in t.proc.argv)
    assert all(b.proc is None or b.proc.closed for b in old)      # the other stock is gone
    assert SPARES.slots and all(s.source not in old for s in SPARES.slots)


def test_a_spare_that_died_while_it_waited_is_not_handed_out(make_target):
    make_target()
    for spare in SPARES.slots:
        os.killpg(spare.source.result().proc.pid, signal.SIGKILL)
        spare.source.result().proc.wait(timeout=10)
    t = make_target()
    assert t.proc.proc.poll() is None
    assert t.cfg_read(0) == 0x00101B36


def test_a_target_that_never_migrates_keeps_no_destination_and_can_still_migrate(qemu_binary):
    t = open_target(TargetConfig(kind="qemu"), migrates=False)
    try:
        assert t.pool.size == 0 and t.pool.ready == []
        assert t.migrate().kind == COMPLETED         # a destination is started on demand
        assert _write_then_read(t, 3) == pattern_bytes(3, 4096)
    finally:
        t.close()


def test_a_closed_process_is_killed_and_collected_in_the_background(qemu_binary):
    t = QemuTarget(TargetConfig(kind="qemu"), qemu_binary, pool_size=0)   # nothing recycled
    proc = t.proc
    t.close()
    assert proc.closed and not os.path.exists(t.ws.dir)
    assert proc.proc.wait(timeout=10) == -signal.SIGKILL


def _recycled(ws) -> object:
    """The spare made from workspace ``ws``, once its new source has booted."""
    spare = next(s for s in SPARES.slots if s.ws is ws)
    spare.source.result()
    return spare


def test_a_migrating_targets_idle_destination_serves_the_next_one_on_a_blank_image(
        make_target):
    t = make_target()
    assert _write_then_read(t, 9) == pattern_bytes(9, 4096)
    assert t.migrate().kind == COMPLETED               # a new destination boots meanwhile
    idle, last = t.pool.ready[0], t.proc
    t.close()
    assert last.closed and os.path.isdir(t.ws.dir)      # the workspace stays, with ``idle``
    spare = _recycled(t.ws)
    assert spare.destination.result() is idle and idle.proc.poll() is None
    assert last.proc.poll() is not None                 # gone before the image was blanked

    u = make_target()
    assert u.ws is t.ws and u.pool.ready == [idle] and u.proc is spare.source.proc
    h = _queue_pair(u)
    assert _read_block_0(h, u) == bytes(4096)           # t's write is gone
    ACTIONS["io"](h, u, {"qid": 1, "opc": 1, "slba": 0, "nlb": 8, "pattern": 4})
    assert u.migrate().kind == COMPLETED and u.proc is idle
    assert _read_block_0(h, u) == pattern_bytes(4, 4096)


def test_a_target_that_never_migrates_takes_a_plain_spare(qemu_binary, make_target):
    t = make_target()
    t.close()
    recycled = _recycled(t.ws)
    twin = QemuTarget(TargetConfig(kind="qemu"), qemu_binary, pool_size=0)
    try:
        assert twin.ws is not t.ws and recycled in SPARES.slots
        SPARES.slots[:] = [recycled]                    # nothing else left: it takes this
        other = QemuTarget(TargetConfig(kind="qemu"), qemu_binary, pool_size=0)
        other.close()
        assert other.ws is t.ws and recycled.destination is None     # its destination closed
    finally:
        twin.close()


def test_a_recycled_destination_that_died_is_replaced(make_target):
    t = make_target()
    t.close()
    idle = _recycled(t.ws).destination.result()
    os.killpg(idle.proc.pid, signal.SIGKILL)
    idle.proc.wait(timeout=10)
    u = make_target()
    assert u.ws is t.ws and idle not in u.pool.ready
    assert u.migrate().kind == COMPLETED
    assert _write_then_read(u, 5) == pattern_bytes(5, 4096)


def test_recycling_keeps_at_most_a_few_and_a_second_close_keeps_the_workspace(make_target):
    targets = [make_target() for _ in range(RECYCLED + 1)]
    for t in targets:
        t.close()
        t.close()                                       # the spare's workspace stays
    kept = [s for s in SPARES.slots if s.destination is not None]
    assert [s.ws for s in kept] == [t.ws for t in targets[:RECYCLED]]
    assert all(os.path.isdir(s.ws.dir) for s in kept)
    assert not os.path.exists(targets[-1].ws.dir)


def test_a_target_of_an_earlier_configuration_is_not_recycled(make_target):
    t = make_target()
    idle = t.pool.ready[0]
    make_target(device_props="mdts=5")                  # the spares are for this one now
    t.close()
    assert not os.path.exists(t.ws.dir) and idle.closed
    assert all(s.destination is None for s in SPARES.slots)


def test_a_recycled_workspace_that_cannot_be_readied_gives_way_to_a_fresh_one(make_target):
    t = make_target()

    def broken() -> None:
        raise OSError("image cannot be blanked")

    t.ws.blank = broken
    t.close()
    spare = next(s for s in SPARES.slots if s.ws is t.ws)
    spare.source.thread.join()
    assert spare.source.failed
    u = make_target()                                    # not the error: a fresh spare
    assert u.ws is not t.ws and not os.path.exists(t.ws.dir)
    assert _write_then_read(u, 6) == pattern_bytes(6, 4096)
