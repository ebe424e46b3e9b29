"""Processes started ahead of time (``qemu_spares``), targets that never migrate, and the
collection of killed processes off the caller's path."""

from __future__ import annotations

import os
import signal
import time

from nvmefuzz.fuzz.actions import ACTIONS
from nvmefuzz.host.driver import Host, pattern_bytes
from nvmefuzz.targets import open_target
from nvmefuzz.targets.base import COMPLETED, TargetConfig
from nvmefuzz.targets.qemu_spares import DEPTH, SPARES


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
    old = [booting for _, booting in SPARES.slots]
    t = make_target(device_props="mdts=5")
    assert any("mdts=5" in part for part in t.proc.argv)
    assert all(b.proc is None or b.proc.closed for b in old)      # the other stock is gone
    assert SPARES.slots and all(b not in old for _, b in SPARES.slots)


def test_a_spare_that_died_while_it_waited_is_not_handed_out(make_target):
    make_target()
    for _, booting in SPARES.slots:
        os.killpg(booting.result().proc.pid, signal.SIGKILL)
        booting.result().proc.wait(timeout=10)
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


def test_a_closed_process_is_killed_and_collected_in_the_background(make_target):
    t = make_target()
    proc = t.proc
    t.close()
    assert proc.closed and not os.path.exists(t.ws.dir)
    assert proc.proc.wait(timeout=10) == -signal.SIGKILL
