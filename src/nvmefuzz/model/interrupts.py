"""The controller's interrupts: asserting, deasserting and the INTx level (QEMU's
``nvme_irq_assert``, ``nvme_irq_deassert``, ``nvme_irq_check``).

How it works
------------
With MSI-X every assertion of a CQ with interrupts enabled (IEN) is a message on its vector,
logged as ``("msix", vector)``; there is nothing to deassert.  Without MSI-X the controller
keeps one status bit per vector (``irq_status``): asserting sets the CQ's, deasserting clears
it once no CQ with IEN has entries the host has not consumed (``cq_pending``), and the INTx
pin is high while a status bit is set that INTMS does not mask.  Each change of the pin is
logged as ``("intx", level)``.  The controller calls these after posting completions, on a
CQ head doorbell, on an INTMS/INTMC write and when a CQ is deleted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nvmefuzz.model.state import CompletionQueue

if TYPE_CHECKING:
    from nvmefuzz.model.controller import Controller


def irq_assert(ctrl: Controller, cq: CompletionQueue) -> None:
    if not cq.ien:
        return
    if ctrl.config.msix:
        ctrl.irq_log.append(("msix", cq.vector))
    else:
        ctrl.irq_status |= 1 << cq.vector
        irq_check(ctrl)


def irq_deassert(ctrl: Controller, cq: CompletionQueue) -> None:
    if not cq.ien or ctrl.config.msix:
        return
    if ctrl.cq_pending == 0:
        ctrl.irq_status &= ~(1 << cq.vector)
    irq_check(ctrl)


def irq_check(ctrl: Controller) -> None:
    """Set the INTx pin to what the status bits and INTMS say."""
    if ctrl.config.msix:
        return
    level = int((~ctrl.intms & ctrl.irq_status & 0xFFFFFFFF) != 0)
    if level != ctrl.intx:
        ctrl.intx = level
        ctrl.irq_log.append(("intx", level))


def cq_deleted(ctrl: Controller, cq: CompletionQueue) -> None:
    """Interrupt bookkeeping when a CQ is deleted."""
    if cq.head != cq.tail and cq.ien:
        ctrl.cq_pending -= 1
    irq_deassert(ctrl, cq)
