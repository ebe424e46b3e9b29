"""The ``qemu`` target: QEMU's migratable nvme device driven over qtest, migrated over QMP.

How it works
------------
Bring-up configures the PCI device by hand (``qemu_pci``).  ``irq_events`` reports
``("msix", v)`` for every non-zero word of the MSI-X message array (then clears it) or,
without MSI-X, the INTx level changes QEMU reported as ``IRQ`` lines (``qemu_pci.IntxPin``).

Registers are ``readl/writel/readq/writeq`` at BAR0 + offset, guest memory is qtest
``read/write`` (short) or ``b64read/b64write``.

Settling: CQ posting and SQ processing are main-loop bottom halves (BHs); I/O goes through
the block layer's thread pool and completes in real time.  Every step must end with "nothing
more can happen", so that twin and migrated copy are compared at rest.  QEMU's trace log tells
what is in flight, and *markers* (register reads too long for one main-loop iteration) show
where each iteration ran (``qemu_log``): once two marker intervals in a row logged nothing and
nothing is in flight, the device is at rest.

``_settle`` sends the queued writes, the request the caller needs answered first (the clock
step of ``advance``), markers, then the reads that are only valid at rest, and repeats until
nothing is in flight and ``QUIET_ROUNDS`` marker intervals in a row were quiet (the first
interval runs from the writes to the first marker), with nothing logged after the last
marker.  The first round trip carries ``QUIET_ROUNDS`` markers, or ``IO_MARKERS`` after an SQ
tail doorbell, enough for the common step (a command fetched, completed by the thread pool,
its CQE posted) to settle in one round trip; later ones carry the markers still needed, or
``BUSY_MARKERS`` while I/O is in flight.  If I/O stays in flight longer than
``settle_timeout`` the old drain barrier is tried (QMP ``stop`` drains every block request,
``cont`` resumes); I/O still counted in flight after that is a hang (``TargetTimeout``).
``drain`` is a settle.

Requests are pipelined: writes (registers, guest memory) are queued and sent together with
the next request that needs an answer, and their replies are checked then.  MMIO writes,
clock steps and migrations make the device "unsettled"; any read first settles, so reads only
ever see a device at rest, and a read that finds the device unsettled rides in the settle's
round trip, after the markers.  Guest memory read at rest is cached (``qemu_cache``) until
the device is unsettled again, and each settle's round trips prefetch the blocks the steps
before looked at, so what a step looks at (CQ entries, MSI-X messages) usually costs no round
trip of its own; data buffers are read when asked for.

A target starts on a spare source process booted ahead of time (``qemu_spares``), and
closing one that migrates hands its workspace and idle destination back to be used again.
Migration (``qemu_migration``): after a completed one the target continues on the destination
with fresh trace accounting and sets its virtual clock to the source's (under ``-accel
qtest`` the clock is the qtest client's and is not migrated; see ``_carry_clock``).

``tap`` (if set, or made by ``QemuTarget.tap_factory``) is told, for every bus operation, the
qtest request that expresses it on its own -- one per read, uncached and unpipelined -- plus
``@settle`` where the target settles and ``@migrate`` where it migrates: a replay that needs
neither this cache nor Python.  ``targets.qtest_script`` records and renders it.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Callable, Iterable

from nvmefuzz.errors import DeviceProtocolError, TargetTimeout
from nvmefuzz.host import layout as L
from nvmefuzz.targets import qtest_codec as Q
from nvmefuzz.targets.qemu_cache import BlockCache, block_reads, cacheable, span
from nvmefuzz.targets.qemu_log import Inflight, marker
from nvmefuzz.targets.base import QEMU_EVENTS, MigrationOutcome, TargetConfig
from nvmefuzz.targets.discovery import QemuBinary, find_qemu
from nvmefuzz.targets.qemu_backend import hold, release
from nvmefuzz.targets.qemu_migration import WarmPool, migrate
from nvmefuzz.targets.qemu_argv import PLAIN, Drive
from nvmefuzz.targets.qemu_pci import BAR0, IntxPin, bring_up, cfg_addr
from nvmefuzz.targets.qemu_process import QemuProcess
from nvmefuzz.targets.qemu_spares import SPARES

QUIET_ROUNDS = 2                 # marker intervals with nothing in flight and nothing logged
IO_MARKERS = 8                   # markers in the first round trip after an SQ doorbell
BUSY_MARKERS = 2                 # ... in a round trip while I/O is in flight
MARKER = marker(BAR0)


class QemuTarget:
    name = "qemu"
    deterministic_order = False

    def __init__(self, cfg: TargetConfig, binary: QemuBinary | None = None,
                 pool_size: int = 1, reply_timeout: float = 10.0,
                 device_props: str = "", tap: Callable[..., None] | None = None,
                 drive: Drive = PLAIN) -> None:
        """``device_props`` are extra ``-device nvme`` properties (tests use it to make QEMU
        add a migration blocker), ``drive`` block-layer options and injected faults; source
        and destinations always get the same ones.  ``pool_size`` destinations are kept
        booting ahead of a migration (0 for a target that never migrates: one is then
        started when needed)."""
        self.cfg = cfg
        self.binary = binary or find_qemu()
        self.device_props = device_props
        if tap is None and QemuTarget.tap_factory is not None:
            tap = QemuTarget.tap_factory(self)
        self.tap = tap
        self._quiet = False                      # notes the other side would not make
        self._clock = 0                          # QEMU_CLOCK_VIRTUAL, as the last step said
        self.settle_timeout = reply_timeout
        #: round trips, settles, drain barriers (QMP stop/cont: none unless I/O hangs), ...
        self.stats: Counter = Counter()
        self._pending: list[str] = []            # writes sent with the next request
        self._settled = False
        self._held = False                       # the backend holds I/O (``qemu_backend``)
        self.cache = BlockCache()                # guest RAM read at rest
        self._sq_rung = False                    # an SQ tail doorbell is among the writes
        self.inflight = Inflight(self.stats)     # in flight, from the trace log
        self.pin = IntxPin()                     # the INTx level the guest saw
        self._carry: list[tuple[str, int]] = []  # INTx events seen on a migration source
        self.pool: WarmPool | None = None
        self._closed = False
        self._kw = {"reply_timeout": reply_timeout, "device_props": device_props,
                    "drive": drive}
        self.ws, self.proc, first = SPARES.take(self.binary, cfg.nsze * 512, self._kw,
                                                migrates=pool_size > 0)
        try:
            self.pool = WarmPool(self.ws, pool_size, first, **self._kw)
            self._bring_up()
        except BaseException:
            self.close()
            raise

    #: called with each new target to make its tap (``qtest_script.recording`` sets it)
    tap_factory: Callable[[QemuTarget], Callable[..., None]] | None = None

    def _note(self, *lines: str) -> None:
        if self.tap is not None:
            for line in lines:
                self.tap(line, self._quiet)

    # ------------------------------------------------------------------ transport
    def _exchange(self, lines: list[str], kind: str = "op") -> list[Q.Reply]:
        """Send the queued writes and ``lines`` back to back; the replies to ``lines``."""
        pending, self._pending = self._pending, []
        self.stats["round trips"] += 1
        replies = self.proc.qtest_many(pending + lines if pending else lines)
        if pending:
            for line, reply in zip(pending, replies):
                if not reply.ok:
                    reply.check(line.split(" ", 1)[0])
            del replies[:len(pending)]
        return replies

    def _one(self, line: str, kind: str = "op") -> Q.Reply:
        return self._exchange([line], kind)[0]

    def flush(self) -> None:
        """Send queued writes now (their replies are checked)."""
        if self._pending:
            last = self._pending.pop()
            self._one(last).check(last.split(" ", 1)[0])

    # ------------------------------------------------------------------ PCI configuration
    def cfg_read(self, offset: int) -> int:
        lines = [Q.format_outl(0xCF8, cfg_addr(offset)), Q.format_inl(0xCFC)]
        self._note(*lines)
        _, r = self._exchange(lines)
        return r.value("inl") >> 8 * (offset & 3)

    def cfg_write(self, offset: int, value: int) -> None:
        lines = [Q.format_outl(0xCF8, cfg_addr(offset)), Q.format_outl(0xCFC, value)]
        self._note(*lines)
        for r in self._exchange(lines):
            r.check("outl")
        self._unsettle()

    def post(self, line: str) -> None:
        """A write with no answer needed: noted, and sent with the next request."""
        self._note(line)
        self._pending.append(line)

    def _bring_up(self) -> None:
        self.vectors = bring_up(self, self.cfg.msix)
        if not self.cfg.msix:
            self._intercept()
        self._settle()

    def _intercept(self) -> None:
        line = Q.format_irq_intercept_in("ioapic")
        self._note(line)
        self._one(line).check("irq_intercept_in")

    # ------------------------------------------------------------------ the bus
    def mmio_read(self, offset: int, size: int) -> int:
        line = Q.format_read(size, BAR0 + offset)
        if not self._settled:
            _, [reply] = self._settle(tail=(line,))
            self._note(line)
            return reply.value("mmio read")
        self._note(line)
        return self._one(line).value("mmio read")

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        self.post(Q.format_write(size, BAR0 + offset, value))
        self._unsettle()
        if offset >= 0x1000 and not offset & 4:
            self._sq_rung = True                 # commands may be fetched: I/O likely

    def mem_read(self, addr: int, length: int) -> bytes:
        if length <= 0:
            return b""
        cached = cacheable(addr, length)
        if not self._settled:
            self._settle(blocks=span(addr, length) if cached else ())
        if self.tap is not None:
            self._note(Q.format_mem_read(addr, length) if length <= 32
                       else Q.format_b64read(addr, length))
        if not cached:                           # a data buffer: read as asked
            return (self._one(Q.format_mem_read(addr, length)).data(length) if length <= 32
                    else self._one(Q.format_b64read(addr, length)).b64(length))
        missing = self.cache.missing(span(addr, length))
        if missing:
            runs, lines = block_reads(missing)
            self.cache.store(runs, self._exchange(lines))
        return self.cache.read(addr, length)

    def mem_write(self, addr: int, data: bytes) -> None:
        if not data:
            return
        self.post(Q.format_mem_write(addr, data) if len(data) <= 32
                  else Q.format_b64write(addr, data))
        self.cache.update(addr, data)

    # ------------------------------------------------------------------ time
    def advance(self, ns: int) -> None:
        self._unsettle()
        line = Q.format_clock_step(max(ns, 1))
        self._note(line)
        [reply], _ = self._settle(lead=(line,))
        self._clock = reply.value("clock_step")

    def _unsettle(self) -> None:
        self._settled = False

    def _settle(self, lead: tuple[str, ...] = (), tail: tuple[str, ...] = (),
                blocks: Iterable[int] = ()) -> tuple[list[Q.Reply], list[Q.Reply]]:
        """Round trips of markers until nothing is in flight and ``QUIET_ROUNDS`` marker
        intervals in a row logged nothing; the replies to ``lead`` (sent once, first, after
        the queued writes) and to ``tail`` (sent after the markers of every round trip, so
        the last answer was given at rest).

        The blocks of the short reads since the previous settle, and ``blocks``, are read
        after the markers of every round trip that may end the settle (all but those that
        follow a busy one): from the round trip that ends the settle they go to the cache.
        The first round trip carries two markers, or ``IO_MARKERS`` after an SQ doorbell
        (enough for a command to be fetched, completed and posted, usually); later ones the
        markers still needed, or ``BUSY_MARKERS`` while I/O is in flight.
        """
        self.stats["settles"] += 1
        self._note("@settle")
        runs, reads = self.cache.epoch(blocks)
        deadline = time.monotonic() + self.settle_timeout
        drained = False
        quiet = 0
        markers = IO_MARKERS if self._sq_rung else QUIET_ROUNDS
        self._sq_rung = False
        fetch = True
        lead_replies: list[Q.Reply] = []
        while True:
            lines = [*lead, *(MARKER,) * markers, *(reads if fetch else ()), *tail]
            replies = self._exchange(lines, "settle")
            if lead:
                lead_replies, lead = replies[:len(lead)], ()
                del replies[:len(lead_replies)]
            rounds, after = self.inflight.poll(self.proc.trace_lines(), self._held)
            if len(rounds) > markers:                   # our own reads of the marker dword
                rounds = rounds[len(rounds) - markers:]  # at rest, logged before the batch
            if len(rounds) != markers or not all(r.ok for r in replies[:markers]):
                raise DeviceProtocolError(f"{len(rounds)} of {markers} settle markers in "
                                          f"QEMU's trace log")
            for logged, busy in rounds:
                quiet = 0 if busy or logged else quiet + 1
            busy = self.inflight.busy(self._held)
            if after or busy:
                quiet = 0
            if quiet >= QUIET_ROUNDS:
                if fetch:
                    self.cache.store(runs, replies[markers:])
                break
            markers = BUSY_MARKERS if busy else QUIET_ROUNDS - quiet
            fetch = not busy
            if busy and time.monotonic() > deadline:
                if drained:
                    raise TargetTimeout(
                        f"{self.inflight.io} I/O command(s) fetched by QEMU never "
                        f"completed (after a drain barrier, {self.settle_timeout}s)")
                self._drain_barrier()
                drained, deadline = True, time.monotonic() + self.settle_timeout
        self._settled = True
        return lead_replies, replies[len(replies) - len(tail):] if tail else []

    def _drain_barrier(self) -> None:
        """QMP stop (drains every block request) and cont: the slow path of a settle."""
        self.stats["drain barriers"] += 1
        self.proc.fast.execute([("stop", None), ("cont", None)])

    def drain(self) -> None:
        """Bring the device to rest with nothing in flight: held I/O is released first."""
        if self._held:
            self._hold(False)
        self._at_rest()

    @property
    def held(self) -> bool:
        """Does the backend hold the guest's I/O (``qemu_backend``)?"""
        return self._held

    def _at_rest(self) -> None:
        self.flush()
        if not self._settled:
            self._settle()

    def _hold(self, on: bool) -> None:
        self.flush()
        self._note("@hold" if on else "@release")
        (hold if on else release)(self.proc.fast.execute)
        self._held = on
        self._unsettle()

    # ------------------------------------------------------------------ interrupts
    def irq_events(self) -> list[tuple[str, int]]:
        if not self._settled:
            self._settle()
        if self.cfg.msix:
            return self._msix_events()
        carry, self._carry = self._carry, []
        return carry + self._intx_events(self.proc)

    def _msix_events(self) -> list[tuple[str, int]]:
        raw = self.mem_read(L.MSIX_MESSAGES, 4 * self.vectors)
        if raw.count(0) == len(raw):
            return []
        fired = [v for v in range(self.vectors) if raw[4 * v:4 * v + 4] != b"\0\0\0\0"]
        for v in fired:
            self.mem_write(L.MSIX_MESSAGES + 4 * v, bytes(4))
        return [("msix", v) for v in fired]

    def _intx_events(self, proc: QemuProcess) -> list[tuple[str, int]]:
        """The device's INTx level changes since the last look (``qemu_pci.IntxPin``)."""
        irqs = list(proc.irqs)
        proc.irqs.clear()
        return self.pin.events(irqs, self.cfg_read(0x04))

    # ------------------------------------------------------------------ the rest
    def environment(self, event: str, arg: int) -> bool:
        if event not in QEMU_EVENTS:                 # HOLD_IO
            return False
        if bool(arg) != self._held:
            self._hold(bool(arg))
        return True

    def migrate(self) -> MigrationOutcome:
        self._at_rest()                              # held I/O stays in flight: QEMU drains it
        self._quiet = True                           # a never-migrated twin has none of it
        try:
            carry = [] if self.cfg.msix else self._intx_events(self.proc)
            self.timings: dict = {}
            outcome, dst = migrate(self.proc, self.pool, timings=self.timings)
            self._note(f"@migrate {outcome.kind}")
            self._unsettle()                         # pre_save may have posted CQEs
            if dst is not None:
                self._held = False                   # a destination starts without limits
                old, self.proc = self.proc, dst
                old.close()
                self.inflight = Inflight(self.stats)   # a fresh trace log
                self._carry_clock()
                if not self.cfg.msix:
                    self._intercept()
        finally:
            self._quiet = False
        self._carry += carry
        if self._held:                               # refused: the source carries on, and
            self._hold(False)                        # a migration attempt ends a hold
        return outcome

    def _carry_clock(self) -> None:
        """Under ``-accel qtest`` the virtual clock is the qtest client's counter, which a
        migration does not carry (a destination starts at 0, while the device's migrated
        timestamps -- Timestamp feature, power-on time -- are relative to it); a real
        accelerator migrates its clock, so the destination is set to the source's time."""
        if self._clock > 0:
            line = f"clock_set {self._clock:#x}"
            self._note(line)
            self._one(line).check("clock_set")

    def close(self) -> None:
        """Stop the processes and remove the workspace, or hand the workspace and an idle
        destination to ``SPARES`` for a later target (``qemu_spares``)."""
        if not self._closed:                         # the workspace may be a spare's now
            self._closed = True
            SPARES.give_back(self.binary, self.cfg.nsze * 512, self._kw, self.ws,
                             self.proc, self.pool)

    def __enter__(self) -> QemuTarget:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
