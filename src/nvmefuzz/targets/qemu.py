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

Settling (``advance``): CQ posting and SQ processing are main-loop bottom halves, which run
before QEMU reads the next qtest request; but I/O goes through the block layer's thread pool
and completes in real time.  QEMU exposes no in-flight count, so after any doorbell, CC or
migration (``dirty``) ``advance`` uses a drain barrier: QMP ``stop`` drains every block
request (``do_vm_stop`` calls ``bdrv_drain_all``; completion callbacks run and schedule the CQ
bottom half), ``query-blockstats`` reads the completed-operation counters while stopped, and
``cont`` resumes; one qtest round trip then lets the scheduled bottom halves post.  Posting can
free request slots and make the SQ fetch more commands, so the barrier repeats until one
completes no operation at all: nothing was in flight, so nothing more can be posted.  The
number of rounds is bounded (``TargetTimeout`` beyond).  ``drain`` is the same barrier.
"""

from __future__ import annotations

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
MAX_SETTLE_ROUNDS = 64
OP_COUNTERS = ("rd_operations", "wr_operations", "flush_operations", "unmap_operations",
               "zone_append_operations", "failed_rd_operations", "failed_wr_operations",
               "failed_flush_operations", "failed_unmap_operations",
               "failed_zone_append_operations", "invalid_rd_operations",
               "invalid_wr_operations", "invalid_flush_operations",
               "invalid_unmap_operations", "invalid_zone_append_operations")


def _cfg_addr(offset: int) -> int:
    return 0x8000_0000 | NVME_SLOT << 11 | (offset & 0xFC)


class QemuTarget:
    name = "qemu"
    deterministic_order = False

    def __init__(self, cfg: TargetConfig, binary: QemuBinary | None = None,
                 pool_size: int = 1, reply_timeout: float = 10.0,
                 device_props: str = "") -> None:
        """``device_props`` are extra ``-device nvme`` properties (tests use it to make QEMU
        add a migration blocker); source and destinations always get the same ones."""
        self.cfg = cfg
        self.binary = binary or find_qemu()
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
        self._dirty = True
        self._ops: int | None = 0
        self._intx_level = 0
        self._intx_line: int | None = None
        self._carry: list[tuple[str, int]] = []    # INTx events seen on a migration source
        self.rounds = 0                      # settle barriers run (for benchmarks)

    # ------------------------------------------------------------------ PCI bring-up
    def cfg_read(self, offset: int) -> int:
        _, r = self.proc.qtest_many([Q.format_outl(0xCF8, _cfg_addr(offset)), Q.format_inl(0xCFC)])
        return r.value("inl") >> 8 * (offset & 3)

    def cfg_write(self, offset: int, value: int) -> None:
        for r in self.proc.qtest_many([Q.format_outl(0xCF8, _cfg_addr(offset)),
                                       Q.format_outl(0xCFC, value)]):
            r.check("outl")

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
            self.proc.qtest(Q.format_irq_intercept_in("ioapic")).check("irq_intercept_in")

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
        lines = []
        for v in range(self.vectors):
            entry = base + 16 * v
            lines += [Q.format_write(4, entry, L.MSIX_MESSAGES + 4 * v),
                      Q.format_write(4, entry + 4, 0), Q.format_write(4, entry + 8, v + 1),
                      Q.format_write(4, entry + 12, 0)]
        lines.append(Q.format_memset(L.MSIX_MESSAGES, 4 * self.vectors, 0))
        for r in self.proc.qtest_many(lines):
            r.check("MSI-X table write")
        self.cfg_write(cap, ctrl | 1 << 31)           # Message Control bit 15: enable

    # ------------------------------------------------------------------ the bus
    def mmio_read(self, offset: int, size: int) -> int:
        return self.proc.qtest(Q.format_read(size, BAR0 + offset)).value("mmio read")

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        self.proc.qtest(Q.format_write(size, BAR0 + offset, value)).check("mmio write")
        if offset >= 0x14:                           # CC, queue bases, doorbells
            self._dirty = True

    def mem_read(self, addr: int, length: int) -> bytes:
        if length <= 0:
            return b""
        if length <= 32:
            return self.proc.qtest(Q.format_mem_read(addr, length)).data(length)
        return self.proc.qtest(Q.format_b64read(addr, length)).b64(length)

    def mem_write(self, addr: int, data: bytes) -> None:
        if not data:
            return
        line = (Q.format_mem_write(addr, data) if len(data) <= 32
                else Q.format_b64write(addr, data))
        self.proc.qtest(line).check("memory write")

    # ------------------------------------------------------------------ time
    def advance(self, ns: int) -> None:
        self.proc.qtest(Q.format_clock_step(max(ns, 1))).check("clock_step")
        if self._dirty:
            self._settle()

    def _settle(self) -> None:
        prev = self._ops
        for _ in range(MAX_SETTLE_ROUNDS):
            _, stats, _ = self.proc.fast.execute([("stop", None), ("query-blockstats", None),
                                                  ("cont", None)])
            self.rounds += 1
            ops = sum(s.get("stats", {}).get(k, 0) for s in stats for k in OP_COUNTERS)
            self.proc.qtest("endianness").check("endianness")    # bottom halves run first
            if ops == prev:
                self._ops, self._dirty = ops, False
                return
            prev = ops
        raise TargetTimeout(f"I/O still completing after {MAX_SETTLE_ROUNDS} drain barriers")

    def drain(self) -> None:
        self._dirty = True
        self._settle()

    # ------------------------------------------------------------------ interrupts
    def irq_events(self) -> list[tuple[str, int]]:
        if self.cfg.msix:
            return self._msix_events()
        self.proc.qtest("endianness").check("endianness")        # collect pending IRQ lines
        carry, self._carry = self._carry, []
        return carry + self._intx_events(self.proc)

    def _msix_events(self) -> list[tuple[str, int]]:
        raw = self.mem_read(L.MSIX_MESSAGES, 4 * self.vectors)
        fired = [v for v in range(self.vectors) if raw[4 * v:4 * v + 4] != b"\0\0\0\0"]
        if fired:
            for r in self.proc.qtest_many([Q.format_write(4, L.MSIX_MESSAGES + 4 * v, 0)
                                           for v in fired]):
                r.check("clear MSI-X message")
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
        carry = [] if self.cfg.msix else self._intx_events(self.proc)
        self.timings: dict = {}
        outcome, dst = migrate(self.proc, self.pool, timings=self.timings)
        if dst is not None:
            old, self.proc = self.proc, dst
            old.close()
            if not self.cfg.msix:
                dst.qtest(Q.format_irq_intercept_in("ioapic")).check("irq_intercept_in")
            self._ops, self._dirty = None, True      # fresh counters; post_load schedules BHs
        self._carry += carry
        return outcome

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
