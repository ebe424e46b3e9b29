"""Reading QEMU's trace log: what is in flight, and the markers a settle counts on.

How it works
------------
A QEMU process of the qemu target logs, into its private trace file, every command the
controller fetches (``pci_nvme_io_cmd`` / ``pci_nvme_admin_cmd``), every completion it
queues (``pci_nvme_enqueue_req_completion``) and every register read (``pci_nvme_mmio_read``),
in the order the main loop does them.  Every fetched I/O command queues exactly one
completion on an I/O CQ (also when cancelled by Delete SQ or a reset, which wait for it), so
*fetched I/O minus queued I/O completions* is the number in flight; of the admin commands
only Format NVM (``ASYNC_ADMIN``) goes to the block layer, and it is matched by CID.

QEMU's qtest server takes at most ``QTEST_CHUNK`` (1024) bytes from its socket per main-loop
iteration and runs a request once its whole line has arrived; each iteration runs the bottom
halves (BHs) scheduled in the one before, and only then reads the socket.  A *marker* -- a
read of a reserved register dword, ``MARKER_OFFSET``, padded with leading zeros to more than
``QTEST_CHUNK`` bytes (``marker``) -- therefore runs in a later iteration than every request
before it, after the BHs those scheduled, and its ``pci_nvme_mmio_read`` line
(``MARKER_LINE``) shows in the log exactly where it ran.

A BH chain (doorbell -> SQ BH -> CQ BH -> SQ BH restarted by freed slots -> ...) shows itself
in the log whenever it fetches a command; the one silent link, a CQ BH posting, can only start
an SQ BH, which logs if it fetches anything.  So once two marker intervals in a row logged
nothing and nothing is in flight, no BH is pending and no I/O can finish: the device is at
rest.  ``Inflight.poll`` accounts the lines and reports, per marker, whether anything was
logged in the interval before it and whether anything was in flight when it ran.
(``tests/qemu/test_qemu_settle.py`` checks these facts on the QEMU at hand.)
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable

from nvmefuzz.errors import DeviceProtocolError

QTEST_CHUNK = 1024               # bytes QEMU's qtest server reads per main-loop iteration
MARKER_OFFSET = 0xFFC            # a reserved dword of the register page (read as 0)
MARKER_LINE = f"pci_nvme_mmio_read addr {MARKER_OFFSET:#x} size 4"   # as QEMU logs it
ASYNC_ADMIN = frozenset({0x80})  # admin opcodes QEMU completes through the block layer
#: I/O opcodes a held backend (``qemu_backend``) lets through: Dataset Management (a discard)
#: and Write Uncorrectable complete as usual, in the block layer's own time
PASS_HOLD = frozenset({0x09, 0x04})


def marker(bar0: int) -> str:
    """``readl`` of ``MARKER_OFFSET`` in a BAR at ``bar0``, its line longer than
    ``QTEST_CHUNK`` bytes."""
    head, addr = "readl 0x", f"{bar0 + MARKER_OFFSET:x}"
    return head + "0" * (QTEST_CHUNK + 1 - len(head) - len(addr)) + addr


def _field(fields: list[str], name: str, base: int = 10) -> int:
    return int(fields[fields.index(name) + 1], base)


class Inflight:
    """Commands one QEMU process fetched and has not queued a completion for, from its log.

    ``held`` (to ``busy`` and ``poll``): the backend holds the guest's I/O on purpose
    (``qemu_backend``); held I/O is in flight but nothing to wait for, unlike what the hold
    lets through (``PASS_HOLD``, matched by CID: while held nothing else completes).  A count
    that would go below zero (cannot happen) is counted in ``stats["count anomalies"]`` and
    never waited on."""

    def __init__(self, stats: Counter) -> None:
        self.io = 0
        self.admin: Counter = Counter()          # CID -> count (Format NVM)
        self.unheld: Counter = Counter()         # CID -> count (I/O a hold lets through)
        self.stats = stats

    def busy(self, held: bool) -> bool:
        """Is anything in flight worth waiting for?  While the backend holds I/O, only
        what the hold lets through (``PASS_HOLD``): it completes in its own time."""
        if held:
            return any(v > 0 for v in self.unheld.values())
        return self.io > 0 or any(v > 0 for v in self.admin.values())

    def poll(self, lines: Iterable[str], held: bool) -> tuple[list[tuple[bool, bool]], bool]:
        """Account ``lines`` (the trace lines logged since the last look).

        Returns one (logged, busy) pair per marker among them -- whether anything was logged
        since the marker before it, whether anything was in flight when it ran -- and whether
        anything was logged after the last marker.  Other register reads are ours and count
        for nothing."""
        rounds: list[tuple[bool, bool]] = []
        logged = False
        for line in lines:
            if line == MARKER_LINE:
                rounds.append((logged, self.busy(held)))
                logged = False
                continue
            event, _, rest = line.partition(" ")
            if event == "pci_nvme_mmio_read":
                continue
            logged = True
            try:
                self._account(event, rest)
            except (ValueError, IndexError):
                raise DeviceProtocolError(f"unexpected QEMU trace line {line[:100]!r}") from None
        if self.io < 0:                                  # cannot happen; never wait on it
            self.stats["count anomalies"] += 1
            self.io = 0
        return rounds, logged

    def _account(self, event: str, rest: str) -> None:
        if event == "pci_nvme_io_cmd":
            self.io += 1
            f = rest.split()
            if _field(f, "opc", 16) in PASS_HOLD:
                self.unheld[_field(f, "cid")] += 1
        elif event == "pci_nvme_enqueue_req_completion":
            f = rest.split()
            cid, cqid = _field(f, "cid"), _field(f, "cqid")
            if cqid:
                self.io -= 1
                if self.unheld[cid] > 0:          # while held, only these complete
                    self.unheld[cid] -= 1
            elif self.admin[cid] > 0:
                self.admin[cid] -= 1
        elif event == "pci_nvme_admin_cmd":
            f = rest.split()
            if _field(f, "opc", 16) in ASYNC_ADMIN:
                self.admin[_field(f, "cid")] += 1
