"""The controller's state as values: configuration, queues, requests, events, features.

``Config`` is what a controller is built with (QEMU's device properties); it is identical on
both sides of a migration and never part of a snapshot.  Everything else here is runtime state
that a migration design may or may not carry.  The live state is mutable (attrs ``define`` with
slots) because the model's step loop is hot; snapshots are built from it by ``snapshot.py``.
"""

from __future__ import annotations

import attrs

from nvmefuzz.protocol.queues import SQE


@attrs.frozen
class Config:
    """Power-on parameters, named after QEMU's nvme device properties where one exists."""

    mqes: int = 0x7FF            # CAP.MQES (0's based)
    max_ioqpairs: int = 64       # conf_ioqpairs
    msix_qsize: int = 65         # conf_msix_qsize
    msix: bool = True            # MSI-X enabled by the guest (False: pin-based INTx)
    aerl: int = 3                # Identify AERL (0's based)
    aer_max_queued: int = 64
    nsze: int = 1 << 14          # namespace size in 512-byte blocks (8 MiB)
    nn: int = 256                # Identify NN
    mdts: int = 7
    io_latency_ns: int = 20_000  # backend latency of every I/O command, in virtual time
    temperature: int = 0x143     # composite temperature, Kelvin
    serial: str = "nvmefuzz"

    def to_plain(self) -> dict:
        return attrs.asdict(self)

    @classmethod
    def from_plain(cls, plain: dict) -> Config:
        return cls(**plain)


@attrs.define(slots=True, eq=True)
class Request:
    """A command the controller fetched and has not posted a completion for yet.

    ``due`` is the virtual time (ns) at which an I/O command's backend finishes; None once the
    command has a final status (waiting on its CQ, or an outstanding AER).
    """

    sqid: int
    sqe: SQE
    status: int = 0
    dw0: int = 0
    dw1: int = 0
    due: int | None = None


@attrs.define(slots=True, eq=True)
class SubmissionQueue:
    sqid: int
    cqid: int
    base: int
    size: int
    head: int = 0
    tail: int = 0
    #: request objects in use (in flight, AER, waiting on a full CQ); derived, rebuilt on load
    used: int = 0


@attrs.define(slots=True, eq=True)
class CompletionQueue:
    cqid: int
    base: int
    size: int
    ien: bool
    vector: int
    head: int = 0
    tail: int = 0
    phase: int = 1
    #: finished requests that could not be posted because the queue was full, in order
    waiting: list[Request] = attrs.Factory(list)

    def full(self) -> bool:
        return (self.tail + 1) % self.size == self.head

    def empty(self) -> bool:
        return self.head == self.tail


@attrs.define(slots=True, eq=True)
class AsyncEvent:
    type: int
    info: int
    log_page: int


@attrs.define(slots=True, eq=True)
class Features:
    """Current feature values QEMU keeps (the rest are constants or derived)."""

    temp_thresh_hi: int = 0x157
    temp_thresh_lo: int = 0
    async_config: int = 0
    err_rec: int = 0
    write_cache: bool = True
    write_atomicity_dn: int = 0
    host_behavior: bytes = bytes(512)
    host_timestamp: int = 0
    timestamp_set_ms: int = 0
