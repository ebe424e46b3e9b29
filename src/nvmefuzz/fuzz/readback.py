"""Read-backs: the reads that show what a step changed.

How it works
------------
A host that changes controller state can look at it again: a Set Features is followed by the
Get Features of the same feature (same temperature-threshold selector, same namespace), I/O
by the SMART / Health log whose counters it moved, a register write by a read of that
register, enabling or resetting the controller by reads of the registers that did it (CC,
CSTS, AQA, ASQ, ACQ) and enabling also by the NVM command set Identify Controller (CNS 06h:
the controller computes its Dataset Management limits when it starts), time passing by the
Timestamp feature and the SMART power-on hours, an event (a namespace change, a temperature
threshold) by the log that reports it and by an Asynchronous Event Request that would collect
it, an invalid command or doorbell by the Error Information log, creating an I/O SQ by a Read
on it (the CQ, vector and phase its completion comes with show what the SQ is tied to).
``read_backs(step)`` returns those reads as ordinary steps; the state machine keeps every read
the steps of an example made available; its ``read_back`` rule picks one of them, and so does
a migration right after it (the state most likely lost is the state changed before it).  A
change made before a migration is then looked at after it far more often than uniform choice
among all features, logs and registers would.

Nothing here extends the vocabulary: every read is a step the ``get_features``,
``get_log_page``, ``identify``, ``register_read``, ``aer`` or ``io`` rules could draw.  Log
reads set RAE (Retain Asynchronous Event), so looking does not clear the events an AER is
waiting for.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from nvmefuzz.fuzz.arguments import FEATURE_DATA, NS_SPECIFIC
from nvmefuzz.protocol import regs
from nvmefuzz.protocol.spec import AdminOpcode as A, FeatureId as F, IoOpcode as IO
from nvmefuzz.trace.schema import Step

if TYPE_CHECKING:
    from nvmefuzz.host.driver import Host

RAE = 1 << 15
ALL_NAMESPACES = 0xFFFFFFFF
#: Get Features CDW11 bits that select which value is returned (FID 04h: TMPSEL, THSEL)
SELECTOR_BITS = {0x04: 0x3F << 16}
#: 64-bit registers (read with one 8-byte access)
WIDE = frozenset({regs.CAP, regs.ASQ, regs.ACQ})


def log_page(lid: int, dwords: int) -> Step:
    return Step("admin", {"opc": int(A.GET_LOG_PAGE), "nsid": ALL_NAMESPACES,
                          "cdw10": lid | RAE | (dwords - 1) << 16, "length": 4 * dwords})


SMART = log_page(0x02, 128)
ERROR_INFO = log_page(0x01, 16)
CHANGED_NAMESPACES = log_page(0x04, 1024)
TIMESTAMP = Step("admin", {"opc": int(A.GET_FEATURES), "cdw10": int(F.TIMESTAMP),
                           "length": FEATURE_DATA[F.TIMESTAMP]})
AER = Step("aer", {})


def reg_read(off: int) -> Step:
    return Step("reg_read", {"offset": off, "size": 8 if off in WIDE else 4})


#: what enabling, resetting or shutting down the controller changed
ID_CTRL_NVM = Step("admin", {"opc": int(A.IDENTIFY), "cdw10": 0x06, "length": 4096})
ENABLED = (*(reg_read(off) for off in (regs.CC, regs.CSTS, regs.AQA, regs.ASQ, regs.ACQ)),
           ID_CTRL_NVM)
STOPPED = (reg_read(regs.CC), reg_read(regs.CSTS))


def _features(args: dict) -> list[Step]:
    fid = args.get("cdw10", 0) & 0xFF
    read = {"opc": int(A.GET_FEATURES), "cdw10": fid}
    if args.get("cdw11", 0) & SELECTOR_BITS.get(fid, 0):
        read["cdw11"] = args["cdw11"] & SELECTOR_BITS[fid]
    if fid in NS_SPECIFIC and args.get("nsid"):
        read["nsid"] = args["nsid"]
    if fid in FEATURE_DATA:
        read["length"] = FEATURE_DATA[fid]
    out = [Step("admin", read)]
    if fid == F.TEMPERATURE_THRESHOLD:      # a crossing is reported in SMART and by an AEN
        out += [SMART, AER]
    return out


def _admin(args: dict) -> list[Step]:
    opc = args.get("opc")
    if opc == A.SET_FEATURES:
        return _features(args)
    if opc in ADMIN_OPCODES:
        return []
    return [ERROR_INFO]                     # an unknown opcode is an error log entry


def _reg_write(args: dict) -> list[Step]:
    return [reg_read(args["offset"] & ~3)]


def _sq(args: dict) -> list[Step]:
    return [Step("io", {"qid": args["qid"], "opc": int(IO.READ), "slba": 0, "nlb": 1})]


def _doorbell(args: dict) -> list[Step]:
    return [ERROR_INFO] if "value" in args else []


ADMIN_OPCODES = frozenset(int(op) for op in A)

#: action -> the reads that show what a step of that action changed
READS: dict[str, Callable[[dict], list[Step]]] = {
    "admin": _admin,
    "io": lambda a: [SMART],
    "reg_write": _reg_write,
    "enable": lambda a: list(ENABLED),
    "disable": lambda a: list(STOPPED),
    "shutdown": lambda a: list(STOPPED),
    "advance": lambda a: [TIMESTAMP, SMART] if a.get("ns") else [],
    "create_sq": _sq,
    "ring_sq": _doorbell,
    "ring_cq": _doorbell,
    "environment": lambda a: [CHANGED_NAMESPACES, AER] if a.get("event") == "ns_changed"
    else [],
}


def read_backs(step: Step) -> list[Step]:
    """The reads that would show the state ``step`` changed (none for most steps)."""
    reads = READS.get(step.action)
    return reads(step.args) if reads else []


def aer_waits(host: Host) -> bool:
    """Is an AER outstanding on ``host`` (no queued event was left for it), or its admin
    queue gone?  Reading back queued events sends AERs until this holds."""
    admin = host.sqs.get(0)
    return admin is None or any(o.opc == A.ASYNC_EVENT_REQUEST
                                for o in admin.outstanding.values())


def key(step: Step) -> tuple:
    """A hashable identity for a read step (its action and arguments)."""
    return step.action, tuple(sorted(step.args.items()))
