"""The ``qemu`` target: QEMU's migratable nvme device driven over qtest, migrated over QMP.

How it works
------------
Bring-up does by hand what firmware would: through the PCI configuration ports (0xcf8/0xcfc)
it checks the controller at bus 0 device 4 (1b36:0010), places the 64-bit BAR0 at
0xC0000000 and sets the command register to 0x6 (memory space + bus master).  With MSI-X
(``TargetConfig.msix``) every table entry gets the message address
``host.layout.MSIX_MESSAGES + 4*vector`` and data ``vector + 1`` and the capability is
enabled, so each interrupt message is a DMA write of a non-zero dword into guest RAM;
``irq_events`` reads that array in one request and reports ``("msix", v)`` for every
non-zero word, then clears it.  Without MSI-X the controller uses its INTx pin:
``irq_intercept_in ioapic`` makes QEMU report level changes as asynchronous ``IRQ`` lines,
reported as ``("intx", level)``; the PCI status register's Interrupt Status bit (part of the
migrated config space) reconciles the level after a migration, when the destination's qtest
starts from "all lines low".

Registers are ``readl/writel/readq/writeq`` at BAR0 + offset, guest memory is qtest
``read/write`` (short) or ``b64read/b64write``.

Settling: CQ posting and SQ processing are main-loop bottom halves (BHs); I/O goes through
the block layer's thread pool and completes in real time.  Every step must end with "nothing
more can happen", so that twin and migrated copy are compared at rest.  Two facts make that
cheap:

* QEMU logs, into this process's private trace file, every command the controller fetches
  (``pci_nvme_io_cmd`` / ``pci_nvme_admin_cmd``) and every completion it queues
  (``pci_nvme_enqueue_req_completion``).  Every fetched I/O command queues exactly one
  completion on an I/O CQ (also when cancelled by Delete SQ or a reset, which wait for it), so
  *fetched I/O minus queued I/O completions* is the number in flight; of the admin commands
  only Format NVM (``ASYNC_ADMIN``) goes to the block layer, and it is matched by CID.
* A qtest request is read only after the BHs scheduled before the main-loop iteration that
  reads it have run (the main AioContext is dispatched before the qtest socket in every
  iteration), and we send a request only after the previous reply arrived, so each round
  trip is at least one iteration.  A BH chain (doorbell -> SQ BH -> CQ BH -> SQ BH restarted
  by freed slots -> ...) shows itself in the log whenever it fetches a command, so after two
  consecutive round trips with nothing in flight and no new log line, no BH is pending.

``_settle`` therefore polls with trivial round trips until nothing is in flight and two rounds
were quiet (``QUIET_ROUNDS``).  If I/O stays in flight longer than ``settle_timeout`` the old
drain barrier is tried (QMP ``stop`` drains every block request, ``cont`` resumes); I/O still
counted in flight after that is a hang (``TargetTimeout``).  ``drain`` is a settle.

Requests are pipelined: writes (registers, guest memory) are queued and sent together with
the next request that needs an answer, and their replies are checked then.  MMIO writes,
clock steps and migrations make the device "unsettled"; any read first settles, so reads only
ever see a device at rest.  Guest memory read at rest is cached by page until the device is
unsettled again (our own writes update the cache).  The round trip that ends a settle also
reads the pages read between the two settles before (a miss fetches them too), so the pages
a step looks at (CQs, MSI-X messages) usually cost no round trip of their own.

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
from typing import Callable

from nvmefuzz.errors import DeviceProtocolError, TargetTimeout
from nvmefuzz.host import layout as L
from nvmefuzz.targets import qtest_codec as Q
from nvmefuzz.targets.base import MigrationOutcome, TargetConfig
from nvmefuzz.targets.discovery import QemuBinary, find_qemu
from nvmefuzz.targets.qemu_migration import WarmPool, migrate
from nvmefuzz.targets.qemu_process import NVME_SLOT, QemuProcess, Workspace

BAR0 = 0xC000_0000
PCI_ID = 0x0010_1B36
CMD_MEM_BUS_MASTER = 0x6
PCI_STATUS_INTERRUPT = 1 << 3
CAP_MSIX = 0x11
QUIET_ROUNDS = 2                 # round trips with nothing in flight and no new log line
ASYNC_ADMIN = frozenset({0x80})  # admin opcodes QEMU completes through the block layer
PAGE = 4096
CACHED_BELOW = L.RAM_SIZE        # guest RAM; anything above may be MMIO and is never cached
PREFETCH_PAGES = 8


def _cfg_addr(offset: int) -> int:
    return 0x8000_0000 | NVME_SLOT << 11 | (offset & 0xFC)


class QemuTarget:
    name = "qemu"
    deterministic_order = False

    def __init__(self, cfg: TargetConfig, binary: QemuBinary | None = None,
                 pool_size: int = 1, reply_timeout: float = 10.0,
                 device_props: str = "", tap: Callable[..., None] | None = None) -> None:
        """``device_props`` are extra ``-device nvme`` properties (tests use it to make QEMU
        add a migration blocker); source and destinations always get the same ones."""
        self.cfg = cfg
        self.binary = binary or find_qemu()
        self.device_props = device_props
        if tap is None and QemuTarget.tap_factory is not None:
            tap = QemuTarget.tap_factory(self)
        self.tap = tap
        self._quiet = False                      # notes the other side would not make
        self._clock = 0                          # QEMU_CLOCK_VIRTUAL, as the last step said
        self.settle_timeout = reply_timeout
        self.stats: Counter = Counter()          # round trips, settles, ... (benchmarks)
        self._pending: list[str] = []            # writes sent with the next request
        self._settled = False
        self._cache: dict[int, bytearray] = {}   # page number -> bytes, valid while settled
        self._seen: dict[int, None] = {}         # pages read since the last settle
        self._hot: list[int] = []                # pages read in the settle epoch before
        self._reset_counts()
        self._intx_level = 0
        self._intx_line: int | None = None
        self._carry: list[tuple[str, int]] = []  # INTx events seen on a migration source
        self.ws = Workspace(self.binary, cfg.nsze * 512)
        self.pool: WarmPool | None = None
        self.proc: QemuProcess | None = None
        try:
            kw = {"reply_timeout": reply_timeout, "device_props": device_props}
            self.proc = QemuProcess(self.ws, **kw).connect()
            self.pool = WarmPool(self.ws, pool_size, **kw)
            self.vectors = 0
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

    @property
    def rounds(self) -> int:
        """Drain barriers (QMP stop/cont) run; the settle needs none unless I/O hangs."""
        return self.stats["drain barriers"]

    # ------------------------------------------------------------------ transport
    def _exchange(self, lines: list[str], kind: str = "op") -> list[Q.Reply]:
        """Send the queued writes and ``lines`` back to back; the replies to ``lines``."""
        pending, self._pending = self._pending, []
        everything = pending + lines
        self.stats["round trips"] += 1
        replies = self.proc.qtest_many(everything)
        for line, reply in zip(pending, replies):
            reply.check(line.split(" ", 1)[0])
        return replies[len(pending):]

    def _one(self, line: str, kind: str = "op") -> Q.Reply:
        return self._exchange([line], kind)[0]

    def _queue(self, line: str) -> None:
        self._pending.append(line)

    def flush(self) -> None:
        """Send queued writes now (their replies are checked)."""
        if self._pending:
            last = self._pending.pop()
            self._one(last).check(last.split(" ", 1)[0])

    # ------------------------------------------------------------------ PCI bring-up
    def cfg_read(self, offset: int) -> int:
        lines = [Q.format_outl(0xCF8, _cfg_addr(offset)), Q.format_inl(0xCFC)]
        self._note(*lines)
        _, r = self._exchange(lines)
        return r.value("inl") >> 8 * (offset & 3)

    def cfg_write(self, offset: int, value: int) -> None:
        lines = [Q.format_outl(0xCF8, _cfg_addr(offset)), Q.format_outl(0xCFC, value)]
        self._note(*lines)
        for r in self._exchange(lines):
            r.check("outl")
        self._unsettle()

    def _bring_up(self) -> None:
        ident = self.cfg_read(0x00)
        if ident != PCI_ID:
            raise DeviceProtocolError(f"no QEMU nvme at 00:{NVME_SLOT:02x}.0 (id {ident:#010x})")
        self.cfg_write(0x10, BAR0)
        self.cfg_write(0x14, 0)
        self.cfg_write(0x04, CMD_MEM_BUS_MASTER)
        if self.cfg.msix:
            self._enable_msix()
        else:
            self._intercept()
        self._settle()

    def _intercept(self) -> None:
        line = Q.format_irq_intercept_in("ioapic")
        self._note(line)
        self._one(line).check("irq_intercept_in")

    def _find_cap(self, cap_id: int) -> int:
        ptr, seen = self.cfg_read(0x34) & 0xFC, 0
        while ptr and seen < 48:
            word = self.cfg_read(ptr)
            if word & 0xFF == cap_id:
                return ptr
            ptr, seen = (word >> 8) & 0xFC, seen + 1
        raise DeviceProtocolError(f"PCI capability {cap_id:#x} not found")

    def _enable_msix(self) -> None:
        cap = self._find_cap(CAP_MSIX)
        ctrl = self.cfg_read(cap)
        self.vectors = ((ctrl >> 16) & 0x7FF) + 1
        table = self.cfg_read(cap + 4)
        if table & 7 != 0:
            raise DeviceProtocolError(f"MSI-X table in BAR{table & 7}, expected BAR0")
        base = BAR0 + (table & ~7)
        for v in range(self.vectors):
            entry = base + 16 * v
            for line in (Q.format_write(4, entry, L.MSIX_MESSAGES + 4 * v),
                         Q.format_write(4, entry + 4, 0), Q.format_write(4, entry + 8, v + 1),
                         Q.format_write(4, entry + 12, 0)):
                self._note(line)
                self._queue(line)
        line = Q.format_memset(L.MSIX_MESSAGES, 4 * self.vectors, 0)
        self._note(line)
        self._queue(line)
        self.flush()
        self.cfg_write(cap, ctrl | 1 << 31)           # Message Control bit 15: enable

    # ------------------------------------------------------------------ the bus
    def mmio_read(self, offset: int, size: int) -> int:
        if not self._settled:
            self._settle()
        line = Q.format_read(size, BAR0 + offset)
        self._note(line)
        return self._one(line).value("mmio read")

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        line = Q.format_write(size, BAR0 + offset, value)
        self._note(line)
        self._queue(line)
        self._unsettle()

    def mem_read(self, addr: int, length: int) -> bytes:
        if length <= 0:
            return b""
        if not self._settled:
            self._settle()
        self._note(Q.format_mem_read(addr, length) if length <= 32
                   else Q.format_b64read(addr, length))
        if addr + length > CACHED_BELOW:
            return self._read_direct(addr, length)
        first, last = addr // PAGE, (addr + length - 1) // PAGE
        pages = range(first, last + 1)
        missing = [p for p in pages if p not in self._cache]
        if missing:
            extra = [p for p in self._hot if p not in self._cache and p not in missing]
            self._fetch(missing + extra[:max(0, PREFETCH_PAGES - len(missing))])
        for p in pages:
            self._seen[p] = None
        if first == last:
            off = addr - first * PAGE
            return bytes(self._cache[first][off:off + length])
        blob = b"".join(self._cache[p] for p in pages)
        off = addr - first * PAGE
        return blob[off:off + length]

    def _fetch(self, pages: list[int]) -> None:
        replies = self._exchange([Q.format_b64read(p * PAGE, PAGE) for p in pages])
        for p, r in zip(pages, replies):
            self._cache[p] = bytearray(r.b64(PAGE))

    def _read_direct(self, addr: int, length: int) -> bytes:
        if length <= 32:
            return self._one(Q.format_mem_read(addr, length)).data(length)
        return self._one(Q.format_b64read(addr, length)).b64(length)

    def mem_write(self, addr: int, data: bytes) -> None:
        if not data:
            return
        line = (Q.format_mem_write(addr, data) if len(data) <= 32
                else Q.format_b64write(addr, data))
        self._note(line)
        self._queue(line)
        self._update_cache(addr, data)

    def _update_cache(self, addr: int, data: bytes) -> None:
        end = addr + len(data)
        for p in range(addr // PAGE, (end - 1) // PAGE + 1):
            page = self._cache.get(p)
            if page is None:
                continue
            lo, hi = max(addr, p * PAGE), min(end, (p + 1) * PAGE)
            page[lo - p * PAGE:hi - p * PAGE] = data[lo - addr:hi - addr]

    # ------------------------------------------------------------------ time
    def advance(self, ns: int) -> None:
        # the clock step may share a main-loop iteration with the queued writes sent with
        # it, so it never counts as one of the quiet rounds
        self._unsettle()
        line = Q.format_clock_step(max(ns, 1))
        self._note(line)
        self._clock = self._one(line).value("clock_step")
        self._poll_log()
        self._settle()

    def _unsettle(self) -> None:
        self._settled = False

    def _reset_counts(self) -> None:
        self._inflight_io = 0
        self._inflight_admin: Counter = Counter()      # CID -> count (Format NVM)

    def _poll_log(self) -> bool:
        """Account the trace lines logged since the last look; True if there were any."""
        lines = self.proc.trace_lines()
        for line in lines:
            event, _, rest = line.partition(" ")
            f = rest.split()
            try:
                if event == "pci_nvme_io_cmd":
                    self._inflight_io += 1
                elif event == "pci_nvme_admin_cmd":
                    if int(f[f.index("opc") + 1], 16) in ASYNC_ADMIN:
                        self._inflight_admin[int(f[f.index("cid") + 1])] += 1
                elif event == "pci_nvme_enqueue_req_completion":
                    cid, cqid = int(f[f.index("cid") + 1]), int(f[f.index("cqid") + 1])
                    if cqid:
                        self._inflight_io -= 1
                    elif self._inflight_admin[cid] > 0:
                        self._inflight_admin[cid] -= 1
            except (ValueError, IndexError):
                raise DeviceProtocolError(f"unexpected QEMU trace line {line[:100]!r}") from None
        if self._inflight_io < 0:                        # cannot happen; never wait on it
            self.stats["count anomalies"] += 1
            self._inflight_io = 0
        return bool(lines)

    def _busy(self) -> bool:
        return self._inflight_io > 0 or any(v > 0 for v in self._inflight_admin.values())

    def _settle(self) -> None:
        """Round trips until nothing is in flight and ``QUIET_ROUNDS`` in a row were quiet.

        The round trip that can end the settle also reads the pages read before the previous
        settle: if it is quiet, the device was at rest when it ran, so they go to the cache.
        """
        self.stats["settles"] += 1
        self._note("@settle")
        self._hot = list(self._seen)[-PREFETCH_PAGES:] or self._hot
        self._seen = {}
        self._cache.clear()
        deadline = time.monotonic() + self.settle_timeout
        drained = False
        quiet = 0
        while True:
            last = quiet == QUIET_ROUNDS - 1
            pages = self._hot if last else []
            probe = [Q.format_b64read(p * PAGE, PAGE) for p in pages] or ["endianness"]
            replies = self._exchange(probe, "settle")
            active = self._poll_log()
            if self._busy():
                quiet = 0
                if time.monotonic() > deadline:
                    if drained:
                        raise TargetTimeout(
                            f"{self._inflight_io} I/O command(s) fetched by QEMU never "
                            f"completed (after a drain barrier, {self.settle_timeout}s)")
                    self._drain_barrier()
                    drained, deadline = True, time.monotonic() + self.settle_timeout
                continue
            quiet = 0 if active else quiet + 1
            if quiet >= QUIET_ROUNDS:
                for p, r in zip(pages, replies):
                    self._cache[p] = bytearray(r.b64(PAGE))
                break
        self._settled = True

    def _drain_barrier(self) -> None:
        """QMP stop (drains every block request) and cont: the slow path of a settle."""
        self.stats["drain barriers"] += 1
        self.proc.fast.execute([("stop", None), ("cont", None)])

    def drain(self) -> None:
        self.flush()
        if not self._settled:
            self._settle()

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
        fired = [v for v in range(self.vectors) if raw[4 * v:4 * v + 4] != b"\0\0\0\0"]
        for v in fired:
            self.mem_write(L.MSIX_MESSAGES + 4 * v, bytes(4))
        return [("msix", v) for v in fired]

    def _intx_events(self, proc: QemuProcess) -> list[tuple[str, int]]:
        out = []
        for irq in proc.irqs:
            if self._intx_line is None and irq.level:
                self._intx_line = irq.line           # the first line the device raises
            if irq.line == self._intx_line and irq.level != self._intx_level:
                self._intx_level = irq.level
                out.append(("intx", irq.level))
        proc.irqs.clear()
        status = (self.cfg_read(0x04) >> 16) & PCI_STATUS_INTERRUPT
        level = 1 if status else 0
        if level != self._intx_level:                # e.g. lowered after a migration
            self._intx_level = level
            out.append(("intx", level))
        return out

    # ------------------------------------------------------------------ the rest
    def environment(self, event: str, arg: int) -> bool:
        return False

    def migrate(self) -> MigrationOutcome:
        self.drain()
        self._quiet = True                           # a never-migrated twin has none of it
        try:
            carry = [] if self.cfg.msix else self._intx_events(self.proc)
            self.timings: dict = {}
            outcome, dst = migrate(self.proc, self.pool, timings=self.timings)
            self._note(f"@migrate {outcome.kind}")
            self._unsettle()                         # pre_save may have posted CQEs
            if dst is not None:
                old, self.proc = self.proc, dst
                old.close()
                self._reset_counts()                 # a fresh trace log
                self._carry_clock()
                if not self.cfg.msix:
                    self._intercept()
        finally:
            self._quiet = False
        self._carry += carry
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
        if self.pool is not None:
            self.pool.close()
        if self.proc is not None:
            self.proc.close()
        self.ws.remove()

    def __enter__(self) -> QemuTarget:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
