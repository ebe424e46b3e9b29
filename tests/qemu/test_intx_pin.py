"""The INTx level the guest sees, from qtest's IRQ reports and the PCI status bit: pure, runs
everywhere."""

from __future__ import annotations

from nvmefuzz.targets.qemu_pci import PCI_STATUS_INTERRUPT, IntxPin
from nvmefuzz.targets.qtest_codec import Irq

HIGH = PCI_STATUS_INTERRUPT << 16       # configuration dword 0x04 with Interrupt Status set
LOW = 0


def test_the_device_line_is_the_first_pci_line_raised_and_isa_lines_are_ignored():
    pin = IntxPin()
    assert pin.events([Irq(2, 1), Irq(8, 0), Irq(17, 1)], HIGH) == [("intx", 1)]
    assert pin.line == 17
    assert pin.events([Irq(18, 1), Irq(17, 0)], LOW) == [("intx", 0)]   # another PCI line


def test_a_report_of_the_level_the_pin_has_means_a_swallowed_change_before_it():
    """A destination's qtest starts with every line low: the migrated pin's first drop is not
    reported, so the next raise comes as a raise of a pin that is already high."""
    pin = IntxPin(line=17, level=1)
    assert pin.events([Irq(17, 1)], HIGH) == [("intx", 0), ("intx", 1)]
    assert pin.level == 1


def test_the_status_bit_settles_the_level_after_the_reports():
    pin = IntxPin(line=17, level=1)
    assert pin.events([], LOW) == [("intx", 0)]          # e.g. lowered by a migration
    assert pin.events([], LOW) == []
    assert pin.events([Irq(17, 1)], LOW) == [("intx", 1), ("intx", 0)]
    assert IntxPin().events([], HIGH) == [("intx", 1)]
