"""PCI bring-up of QEMU's nvme device, done by hand as firmware would.

How it works
------------
Through the PCI configuration ports (0xcf8/0xcfc: ``cfg_read``/``cfg_write`` lines)
``bring_up`` checks the controller at bus 0 device 4 (1b36:0010), places the 64-bit BAR0 at
``BAR0`` and sets the command register to 0x6 (memory space + bus master).  With MSI-X
(``TargetConfig.msix``) every table entry gets the message address
``host.layout.MSIX_MESSAGES + 4*vector`` and data ``vector + 1``, the message array is
zeroed and the capability is enabled, so each interrupt message is a DMA write of a non-zero
dword into guest RAM the target can read back.  Without MSI-X the target intercepts the
IOAPIC lines instead (``irq_intercept_in``): the device's is the first PCI line
(``PCI_INTX_GSI`` and up) it raises, and the PCI status register's Interrupt Status bit
(``PCI_STATUS_INTERRUPT``, part of the migrated config space) tells the INTx level.

The functions speak to a ``Bus`` (the qemu target): configuration reads and writes, and
memory writes queued until the next request that needs an answer.  ``IntxPin`` turns
qtest's reports of the intercepted lines, and the status bit, into the device's INTx level
changes.
"""

from __future__ import annotations

from typing import Iterable, Protocol

import attrs

from nvmefuzz.errors import DeviceProtocolError
from nvmefuzz.host import layout as L
from nvmefuzz.targets import qtest_codec as Q
from nvmefuzz.targets.qemu_argv import NVME_SLOT
from nvmefuzz.targets.qtest_codec import Irq

BAR0 = 0xC000_0000               # where the controller's registers are placed
PCI_ID = 0x0010_1B36             # device 0x0010, vendor 0x1b36 (Red Hat, QEMU)
CMD_MEM_BUS_MASTER = 0x6
PCI_STATUS_INTERRUPT = 1 << 3    # in the upper half of config dword 0x04
CAP_MSIX = 0x11
#: q35 routes PCI INTx to IOAPIC inputs 16-23 (PIRQA-H); the ones below are ISA lines (the
#: RTC, ACPI's SCI; the PIT, were it on), never the device's
PCI_INTX_GSI = 16
CAP_CHAIN_LIMIT = 48             # capabilities followed before giving up (a looped chain)


class Bus(Protocol):
    def cfg_read(self, offset: int) -> int: ...
    def cfg_write(self, offset: int, value: int) -> None: ...
    def post(self, line: str) -> None: ...          # a write, sent with the next request
    def flush(self) -> None: ...


def cfg_addr(offset: int) -> int:
    """The CONFIG_ADDRESS dword selecting ``offset`` of the controller's configuration space."""
    return 0x8000_0000 | NVME_SLOT << 11 | (offset & 0xFC)


def bring_up(bus: Bus, msix: bool) -> int:
    """Check the device, map BAR0, enable memory space and bus mastering and, with ``msix``,
    MSI-X.  Returns the number of MSI-X vectors (0 without)."""
    ident = bus.cfg_read(0x00)
    if ident != PCI_ID:
        raise DeviceProtocolError(f"no QEMU nvme at 00:{NVME_SLOT:02x}.0 (id {ident:#010x})")
    bus.cfg_write(0x10, BAR0)
    bus.cfg_write(0x14, 0)
    bus.cfg_write(0x04, CMD_MEM_BUS_MASTER)
    return enable_msix(bus) if msix else 0


def find_cap(bus: Bus, cap_id: int) -> int:
    """The configuration-space offset of capability ``cap_id``."""
    ptr, seen = bus.cfg_read(0x34) & 0xFC, 0
    while ptr and seen < CAP_CHAIN_LIMIT:
        word = bus.cfg_read(ptr)
        if word & 0xFF == cap_id:
            return ptr
        ptr, seen = (word >> 8) & 0xFC, seen + 1
    raise DeviceProtocolError(f"PCI capability {cap_id:#x} not found")


def enable_msix(bus: Bus) -> int:
    """Point every MSI-X table entry at its word of ``MSIX_MESSAGES``, zero the words and
    enable MSI-X.  Returns the number of vectors."""
    cap = find_cap(bus, CAP_MSIX)
    ctrl = bus.cfg_read(cap)
    vectors = ((ctrl >> 16) & 0x7FF) + 1
    table = bus.cfg_read(cap + 4)
    if table & 7 != 0:
        raise DeviceProtocolError(f"MSI-X table in BAR{table & 7}, expected BAR0")
    base = BAR0 + (table & ~7)
    for v in range(vectors):
        entry = base + 16 * v
        for line in (Q.format_write(4, entry, L.MSIX_MESSAGES + 4 * v),
                     Q.format_write(4, entry + 4, 0), Q.format_write(4, entry + 8, v + 1),
                     Q.format_write(4, entry + 12, 0)):
            bus.post(line)
    bus.post(Q.format_memset(L.MSIX_MESSAGES, 4 * vectors, 0))
    bus.flush()
    bus.cfg_write(cap, ctrl | 1 << 31)           # Message Control bit 15: enable
    return vectors


@attrs.define
class IntxPin:
    """The device's INTx level as the guest sees it, from qtest's ``IRQ`` reports.

    qtest reports a line only when it differs from what qtest last saw, and a destination's
    qtest starts with every line low while a migrated pin may be high: its first drop goes
    unreported.  The level is known here (the status bit, read at rest after every look), so
    a report of the level the pin already has means the opposite change before it was
    swallowed."""

    line: int | None = None      # the first PCI line the device raised
    level: int = 0

    def events(self, irqs: Iterable[Irq], status: int) -> list[tuple[str, int]]:
        """``("intx", level)`` for every change in ``irqs`` (the reports since the last look)
        and, last, for the change to the level the status dword ``status`` (configuration
        offset 0x04, read after them) shows, e.g. lowered by a migration."""
        out = []
        for irq in irqs:
            if irq.line < PCI_INTX_GSI:
                continue                             # an ISA line: a timer, not the device
            if self.line is None and irq.level:
                self.line = irq.line
            if irq.line != self.line:
                continue
            if irq.level == self.level:
                out.append(("intx", 1 - irq.level))
            self.level = irq.level
            out.append(("intx", irq.level))
        level = 1 if (status >> 16) & PCI_STATUS_INTERRUPT else 0
        if level != self.level:
            self.level = level
            out.append(("intx", level))
        return out
