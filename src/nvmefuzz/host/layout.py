"""Where the host driver keeps things in guest memory.

A fixed, deterministic layout inside the first 64 MiB (the RAM of the QEMU target's guest):
admin queues, one 64 KiB window per I/O queue pair, ``DATA_WINDOWS`` data windows (16 KiB of
data and a PRP-list page each; each SQ entry has its own, ``data_slot``, which the host
driver takes unless it is still in use, see ``host.driver``) and the shadow-doorbell pages.
Every address is page aligned unless a caller asks for an in-page offset on purpose.
"""

from __future__ import annotations

PAGE = 4096
RAM_SIZE = 64 << 20

ADMIN_SQ = 0x0001_0000
ADMIN_CQ = 0x0001_8000
QUEUE_WINDOW = 0x0010_0000          # I/O queue pair q: SQ at +q*64K, CQ at +q*64K+32K
QUEUE_STRIDE = 0x1_0000
MAX_IO_QUEUE = 63
DATA_WINDOW = 0x0080_0000           # per (qid, slot): data pages then one PRP-list page
SLOT_STRIDE = 0x5000                # 16 KiB of data + a 4 KiB PRP list
MAX_SLOTS = 32                      # data slots per queue (slot = SQ index mod MAX_SLOTS)
DATA_QUEUES = 16                    # queues with their own data windows (qid mod 16)
DATA_WINDOWS = DATA_QUEUES * MAX_SLOTS
MAX_TRANSFER = 4 * PAGE
SHADOW_DB = 0x03F0_0000
EVENTIDX = 0x03F0_1000
MSIX_MESSAGES = 0x03F0_2000          # one dword per MSI-X vector (targets that poll them)
UNMAPPED = RAM_SIZE + 0x1000_0000    # an address outside guest RAM (DMA there fails)


def sq_base(qid: int) -> int:
    return ADMIN_SQ if qid == 0 else QUEUE_WINDOW + qid * QUEUE_STRIDE


def cq_base(qid: int) -> int:
    return ADMIN_CQ if qid == 0 else QUEUE_WINDOW + qid * QUEUE_STRIDE + QUEUE_STRIDE // 2


def window_index(qid: int, slot: int) -> int:
    """Which data window is SQ ``qid``'s entry ``slot``'s own (``0 .. DATA_WINDOWS - 1``)."""
    return (qid % DATA_QUEUES) * MAX_SLOTS + slot % MAX_SLOTS


def data_window(index: int) -> int:
    """Base of data window ``index``."""
    return DATA_WINDOW + index * SLOT_STRIDE


def prp_list(window: int) -> int:
    """The PRP-list page of the data window at ``window``, after its data pages."""
    return window + MAX_TRANSFER


def data_slot(qid: int, slot: int) -> int:
    """Base of the data window for SQ ``qid``'s entry ``slot`` (mod ``MAX_SLOTS``)."""
    return data_window(window_index(qid, slot))


assert data_window(DATA_WINDOWS - 1) + SLOT_STRIDE <= SHADOW_DB
