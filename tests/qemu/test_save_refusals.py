"""Which completion waiting in a full CQ QEMU 11.1 refuses to save, and the ``qemu-11.1``
profile agreeing case by case.

Every case is the same trace: a 2-entry I/O CQ (one slot) behind a 3-entry SQ, a Write that
completes and takes the slot, then the command under test, whose completion must wait, then a
migration.  QEMU's ``pre_save`` validates each waiting request: one that found its namespace
refuses ("req->ns != NULL"), a Flush to a namespace or to all of them still holds its AIO
control block ("req->aiocb != NULL"); a command that failed before finding a namespace is
carried.  The model half runs without QEMU.
"""

from __future__ import annotations

import time

import pytest

from nvmefuzz.errors import TargetTimeout
from nvmefuzz.fuzz.session import replay
from nvmefuzz.protocol.spec import BROADCAST_NSID, IoOpcode as IO
from nvmefuzz.targets.base import TargetConfig
from nvmefuzz.targets.qemu_migration import _wait_migration
from nvmefuzz.trace.schema import PASS, Step, Trace

NS, AIOCB = ("refused:pre-save for nvme failed: req->ns != NULL",
             "refused:pre-save for nvme failed: req->aiocb != NULL")
INACTIVE = 7

#: name -> (the waiting command's io arguments, the verdict's signature; "" is a pass)
CASES = {
    "read": ({"opc": IO.READ}, NS),
    "write": ({"opc": IO.WRITE, "pattern": 3}, NS),
    "compare": ({"opc": IO.COMPARE}, NS),
    "write-zeroes": ({"opc": IO.WRITE_ZEROES}, NS),
    "dataset-management": ({"opc": IO.DATASET_MANAGEMENT}, NS),
    "write-uncorrectable": ({"opc": IO.WRITE_UNCORRECTABLE}, NS),
    "lba-out-of-range": ({"opc": IO.READ, "slba": 1 << 40}, NS),
    "invalid-opcode": ({"opc": 0x7E}, NS),
    "flush": ({"opc": IO.FLUSH}, AIOCB),
    "flush-broadcast": ({"opc": IO.FLUSH, "nsid": BROADCAST_NSID}, AIOCB),
    "flush-inactive": ({"opc": IO.FLUSH, "nsid": INACTIVE}, ""),
    "flush-nsid-0": ({"opc": IO.FLUSH, "nsid": 0}, ""),
    "read-inactive": ({"opc": IO.READ, "nsid": INACTIVE}, ""),
    "read-nsid-0": ({"opc": IO.READ, "nsid": 0}, ""),
    "read-broadcast": ({"opc": IO.READ, "nsid": BROADCAST_NSID}, ""),
    "invalid-opcode-inactive": ({"opc": 0x7E, "nsid": INACTIVE}, ""),
}


def _trace(kind: str, waiting: dict) -> Trace:
    args = {"qid": 1, "slba": 0, "nlb": 1, **{k: int(v) for k, v in waiting.items()}}
    steps = (Step("enable", {"asqs": 7, "acqs": 7}),
             Step("create_cq", {"qid": 1, "size": 2, "ien": 0}),
             Step("create_sq", {"qid": 1, "cqid": 1, "size": 3}),
             Step("io", {"qid": 1, "opc": int(IO.WRITE), "slba": 0, "nlb": 1, "pattern": 1}),
             Step("advance", {"ns": 1_000_000}),
             Step("io", args),
             Step("migrate", {}))
    cfg = TargetConfig(kind=kind, profile="qemu-11.1")
    return Trace(target=cfg.to_plain(), campaign="hand", seed=0, steps=steps)


def _check(kind: str, name: str) -> None:
    waiting, signature = CASES[name]
    verdict, stats = replay(_trace(kind, waiting))
    if signature:
        assert (verdict.kind, verdict.signature, verdict.step) == ("refused", signature, 6)
    else:
        assert verdict.kind == PASS and stats["migrations"] == 1, verdict.detail


@pytest.mark.parametrize("name", CASES)
def test_the_qemu_11_1_profile_refuses_what_qemu_refuses(name):
    _check("model", name)


@pytest.mark.parametrize("name", CASES)
def test_qemu_refuses_a_waiting_completion_that_holds_a_namespace_or_aio(name, qemu_binary):
    _check("qemu", name)


class _Asleep:
    """A QMP connection whose MIGRATION events are ``events`` (None: none comes within the
    wait) and whose ``query-migrate`` answers ``statuses`` in turn."""

    def __init__(self, *statuses: str, events: tuple = ()) -> None:
        self.statuses, self.events, self.asked = list(statuses), list(events), 0

    def wait_event(self, name, done, timeout):
        event = self.events.pop(0) if self.events else None
        if event is not None and done(event):
            return {"event": name, "data": event}
        time.sleep(timeout)
        raise TargetTimeout(f"no QMP {name} event within {timeout}s")

    def execute(self, cmds):
        assert cmds == [("query-migrate", None)]
        self.asked += 1
        return [{"status": self.statuses.pop(0)}]


class _Proc:
    def __init__(self, fast) -> None:
        self.fast = fast


def test_a_migration_that_ended_without_its_event_is_seen_by_asking():
    """QEMU's main loop may sleep on with the MIGRATION event unsent; asking wakes it, and
    the status it answers ends the wait."""
    fast = _Asleep("active", "active", "failed")
    assert _wait_migration(_Proc(fast), timeout=5)["status"] == "failed"
    assert fast.asked == 3


def test_a_migration_that_never_ends_is_still_a_timeout():
    fast = _Asleep(*["active"] * 1000)
    with pytest.raises(TargetTimeout):
        _wait_migration(_Proc(fast), timeout=0.1)


def test_a_late_event_of_an_earlier_migration_does_not_end_the_wait():
    """The event a previous (refused) migration never sent in time comes first: the status
    QEMU answers decides, and this migration is still running."""
    fast = _Asleep("active", "completed", events=({"status": "failed"},))
    assert _wait_migration(_Proc(fast), timeout=5)["status"] == "completed"
    assert fast.asked == 2
