"""Holding QEMU's block backend: I/O the device fetched stays in flight until released.

How it works
------------
Under ``-accel qtest`` a command reaches the block layer's thread pool and completes at once,
so the device is at rest after every step and a migration never starts with backend I/O in
flight.  ``hold`` makes the guest's I/O wait: QMP ``block_set_io_throttle`` limits drive
``drv0`` to 1 byte per second of QEMU's virtual clock, which under qtest moves only when the
target steps it.  A throttle's bucket starts empty and lets the next request through whole,
so ``hold`` sends that request itself: an HMP ``qemu-io`` read of ``PRIME_BYTES`` through the
same BlockBackend fills the bucket for about twelve days of virtual time, far beyond any
trace (its longest clock step is an hour).  Every read or write of the guest's (Read, Write,
Compare, Write Zeroes) then waits in the throttle.  Dataset Management (a discard) and Write
Uncorrectable complete as usual.  A Flush completes at once in a process that has not written
to the drive since it started (a fresh migration destination); after a Write it waits in most
processes but not in all (QEMU 11.1.3: 1 test run in 6 held none of three).  That is why the
state machine sends no Flush while holding.  ``release`` turns the
limits off, which restarts the queued requests, and a later ``hold`` starts a new bucket.

QEMU lets throttled requests through when it drains a drive (``bdrv_drained_begin`` lifts the
limits meanwhile): when it stops the VM for a migration and on a controller reset, exactly
where it waits for in-flight I/O anyway.  Delete SQ does not drain: it cancels the SQ's
requests and waits for each, so deleting an SQ with a held command blocks QEMU for good (the
state machine does not do it).  A migration destination starts without limits.
"""

from __future__ import annotations

from typing import Any, Callable

DRIVE = "drv0"
#: the limits block_set_io_throttle requires, all off
OFF = {"bps": 0, "bps_rd": 0, "bps_wr": 0, "iops": 0, "iops_rd": 0, "iops_wr": 0}
#: what the guest's reads and writes wait for: a 1 byte/s budget for all of them together
HELD = {**OFF, "bps": 1}
#: the request that spends the throttle's first free pass: 1 MiB, 2^20 s to leak at 1 B/s
PRIME_BYTES = 1 << 20
PRIME = f'qemu-io {DRIVE} "read -q 0 {PRIME_BYTES}"'  # -q: no statistics on stdout

Execute = Callable[[list[tuple[str, dict | None]]], list[Any]]


def hold(execute: Execute) -> None:
    """Throttle the drive to a standstill and spend the request it would let through."""
    execute([("block_set_io_throttle", {"device": DRIVE, **HELD}),
             ("human-monitor-command", {"command-line": PRIME})])


def release(execute: Execute) -> None:
    """Lift the limits: requests waiting in the throttle go on."""
    execute([("block_set_io_throttle", {"device": DRIVE, **OFF})])
