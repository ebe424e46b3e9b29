"""The qemu target against a real QEMU: bring-up, I/O, interrupts, migration, failures."""

from __future__ import annotations

import os
import signal

import pytest

from nvmefuzz.errors import TargetCrashed, TargetTimeout
from nvmefuzz.fuzz.actions import ACTIONS, observe
from nvmefuzz.host.driver import Host, pattern_bytes
from nvmefuzz.protocol.queues import CQE, SQE
from nvmefuzz.protocol.spec import AdminOpcode as A
from nvmefuzz.targets.base import COMPLETED, CRASHED, REFUSED
from nvmefuzz.targets.qemu_spares import SPARES

IDENTIFY_CTRL = {"opc": int(A.IDENTIFY), "cdw10": 1, "length": 4096}


def _enabled(t, **kw):
    h = Host(t)
    assert ACTIONS["enable"](h, t, kw) == [("reg/CSTS", {"value": 1})]
    return h


def _io_queue(h, t, qid=1, size=16):
    assert ACTIONS["create_cq"](h, t, {"qid": qid, "size": size, "iv": qid})[0][1]["status"] == 0
    assert ACTIONS["create_sq"](h, t, {"qid": qid, "size": size, "cqid": qid})[0][1]["status"] == 0


def test_enable_and_identify_through_the_host_driver(make_target):
    t = make_target()
    assert t.cfg_read(0) == 0x00101B36
    h = _enabled(t)
    cap = h.read_reg("CAP")
    assert cap & 0xFFFF == 0x7FF                          # MQES as QEMU 11.1 reports it
    [(label, fields)] = ACTIONS["admin"](h, t, IDENTIFY_CTRL)
    assert label == "cqe/admin/IDENTIFY/cns=0x01" and fields["status"] == 0
    data = fields["data"]
    assert data[0:2] == b"\x36\x1b" and data[4:12] == b"nvmefuzz"
    assert observe(h, t) == [("irq", {"events": (("msix", 0),)})]
    assert observe(h, t) == []                            # messages are consumed


def test_io_write_read_round_trip_and_msix_vector(make_target):
    t = make_target()
    h = _enabled(t)
    _io_queue(h, t, qid=2)
    observe(h, t)
    assert ACTIONS["io"](h, t, {"qid": 2, "opc": 1, "slba": 9, "nlb": 8, "pattern": 42}) == []
    assert ACTIONS["io"](h, t, {"qid": 2, "opc": 2, "slba": 9, "nlb": 8}) == []
    seen = observe(h, t)
    assert seen[0] == ("irq", {"events": (("msix", 2),)})
    assert [c.cid for c in seen[1][1]["cqes"]] == [0, 1]
    done = ACTIONS["consume"](h, t, {"qid": 2})
    assert [label for label, _ in done] == ["cqe/io/WRITE", "cqe/io/READ"]
    assert all(f["status"] == 0 for _, f in done)
    assert done[1][1]["data"] == pattern_bytes(42, 4096)


def test_full_admin_cq_survives_migration_in_order(make_target):
    """QEMU's own nvme-test migration case: a 2-entry admin CQ, 3 Identify outstanding."""
    t = make_target()
    h = _enabled(t, asqs=3, acqs=1)
    assert ACTIONS["admin"](h, t, IDENTIFY_CTRL)[0][1]["cid"] == 0
    cids = [h.submit(0, SQE(A.IDENTIFY, cdw10=1), length=4096, returns_data=True)
            for _ in range(3)]
    h.ring_sq(0)
    t.advance(0)
    assert [CQE.decode(r).cid for r in h.peek(0)] == [cids[0]]   # the rest wait in QEMU
    outcome = t.migrate()
    assert outcome.kind == COMPLETED and outcome.size > 0
    got = []
    for _ in range(3):
        t.advance(0)
        done = h.harvest(0)
        assert len(done) == 1                  # the CQ holds one entry at a time
        h.ring_cq(0)
        got += done
    assert [c.cqe.cid for c in got] == cids
    assert all(c.cqe.status == 0 and c.data[4:12] == b"nvmefuzz" for c in got)


def test_refused_migration_keeps_the_source_running(make_target):
    t = make_target(device_props="cmb_size_mb=1")           # QEMU blocks migration (CMB)
    h = _enabled(t)
    outcome = t.migrate()
    assert outcome.kind == REFUSED and "CMB" in outcome.detail
    [(label, fields)] = ACTIONS["admin"](h, t, IDENTIFY_CTRL)
    assert fields["status"] == 0 and fields["data"][4:12] == b"nvmefuzz"


def test_pin_based_interrupts_follow_the_cq_across_migration(make_target):
    t = make_target(msix=False)
    h = _enabled(t)
    assert ACTIONS["admin"](h, t, {**IDENTIFY_CTRL, "reap": False}) == []
    assert observe(h, t)[0] == ("irq", {"events": (("intx", 1),)})
    assert t.migrate().kind == COMPLETED
    assert ACTIONS["consume"](h, t, {"qid": 0})[0][0] == "cqe/admin/IDENTIFY/cns=0x01"
    assert observe(h, t) == [("irq", {"events": (("intx", 0),)})]


def test_an_hour_of_virtual_time_raises_no_interrupt_and_keeps_the_device_line(make_target):
    """Whatever ticks while the clock steps an hour (ISA lines such as the RTC's; the PIT is
    off) is not the device's INTx, before or after the device first raises its own line."""
    t = make_target(msix=False)
    h = _enabled(t)
    ACTIONS["advance"](h, t, {"ns": 3_600_000_000_000})
    assert observe(h, t) == []
    assert ACTIONS["admin"](h, t, {**IDENTIFY_CTRL, "reap": False}) == []
    assert observe(h, t)[0] == ("irq", {"events": (("intx", 1),)})
    ACTIONS["advance"](h, t, {"ns": 3_600_000_000_000})
    assert "irq" not in dict(observe(h, t))           # the entry stays posted, the line high
    assert ACTIONS["consume"](h, t, {"qid": 0})[0][0] == "cqe/admin/IDENTIFY/cns=0x01"
    assert observe(h, t) == [("irq", {"events": (("intx", 0),)})]


def test_no_timer_ticks_on_the_ioapic_while_the_clock_steps_an_hour(make_target):
    """The machine has no PIT (``qemu_argv.MACHINE``): an hour of virtual time raises no ISA
    line at all (with the PIT, line 0 changed some 131,000 times)."""
    t = make_target(msix=False)
    _enabled(t)
    t.proc.irqs.clear()
    t.advance(3_600_000_000_000)
    assert t.proc.irqs == []


def test_many_migrations_keep_data(make_target):
    t = make_target()
    h = _enabled(t)
    _io_queue(h, t)
    for i in range(5):
        ACTIONS["io"](h, t, {"qid": 1, "opc": 1, "slba": 8 * i, "nlb": 8, "pattern": i})
        assert t.migrate().kind == COMPLETED
        ACTIONS["io"](h, t, {"qid": 1, "opc": 2, "slba": 8 * i, "nlb": 8})
        done = ACTIONS["consume"](h, t, {"qid": 1})
        assert done[-1][0] == "cqe/io/READ" and done[-1][1]["data"] == pattern_bytes(i, 4096)


def test_a_killed_qemu_is_a_crash_with_its_signal(make_target):
    t = make_target()
    os.kill(t.proc.proc.pid, signal.SIGKILL)
    with pytest.raises(TargetCrashed, match="SIGKILL"):
        t.mmio_read(0x1C, 4)


def test_a_stopped_qemu_is_a_hang_within_the_bound(make_target):
    t = make_target(reply_timeout=0.5)
    os.kill(t.proc.proc.pid, signal.SIGSTOP)
    try:
        with pytest.raises(TargetTimeout):
            t.mmio_read(0x1C, 4)
    finally:
        os.kill(t.proc.proc.pid, signal.SIGCONT)


def test_a_destination_that_dies_is_a_crashed_migration(make_target):
    t = make_target()
    _enabled(t)
    for p in t.pool.ready:
        p.kill()
    outcome = t.migrate()
    assert outcome.kind == CRASHED and "SIGKILL" in outcome.detail
    assert t.mmio_read(0x1C, 4) == 1                      # the source still answers


def test_close_removes_processes_and_files(make_target):
    t = make_target()
    procs = [t.proc.proc, *(p.proc for p in t.pool.ready)]
    folder = t.ws.dir
    assert os.path.exists(t.ws.image)
    t.close()                    # the folder and idle destination go to the spares ...
    assert procs[0].wait(timeout=10) == -signal.SIGKILL
    SPARES.close()               # ... which are closed in their turn
    assert not os.path.exists(folder)
    # killed at once, their exits collected in the background (``qemu_life.reap``)
    assert all(p.wait(timeout=10) == -signal.SIGKILL for p in procs)
