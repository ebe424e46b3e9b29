"""The host-action vocabulary: what a trace step can ask for, and what the guest observes.

Every action is a function ``(host, target, args) -> observations`` listed in ``ACTIONS``;
a trace step is just an action name and its arguments, so a trace replays without
Hypothesis.  An observation is ``(label, fields)``: ``label`` names what was observed in
stable terms (``cqe/io/READ``, ``reg/CSTS``, ``irq``) and becomes part of a finding's
signature, ``fields`` holds the values (a dict).

After every action the step observes what a guest could see without doing anything: new
interrupts and the CQ entries already posted beyond the host's head (``OBSERVE``).
"""

from __future__ import annotations

from typing import Any, Callable

from nvmefuzz.host import layout as L
from nvmefuzz.host.driver import Completion, Host, Outstanding, pattern_bytes
from nvmefuzz.protocol import regs
from nvmefuzz.protocol.queues import CQE, SQE
from nvmefuzz.protocol.spec import AdminOpcode as A, IoOpcode as IO
from nvmefuzz.targets.base import Target

Observation = tuple[str, dict]
Action = Callable[[Host, Target, dict], list[Observation]]

ADMIN_NAMES = {int(op): op.name for op in A}
IO_NAMES = {int(op): op.name for op in IO}
#: opcodes whose data buffer the host reads back after completion
RETURNS_DATA_ADMIN = {A.IDENTIFY, A.GET_LOG_PAGE, A.GET_FEATURES}


#: admin commands whose CDW10 low byte selects what they are about (FID, LID, CNS)
SELECTOR = {A.GET_FEATURES: "fid", A.SET_FEATURES: "fid", A.GET_LOG_PAGE: "lid",
            A.IDENTIFY: "cns"}


def completion_obs(c: Completion, cmd: Outstanding | None) -> Observation:
    """A completion as the guest saw it; the label names the command (and its selector).
    Data a command returned comes with ``at``, where it starts in its structure (a Get Log
    Page's offset), when that is not 0."""
    cqe = c.cqe
    if not c.known or cmd is None:
        label = f"cqe/unknown/q{c.cqid}"
    else:
        opc = cmd.opc
        kind, names = ("admin", ADMIN_NAMES) if c.cqid == 0 else ("io", IO_NAMES)
        label = f"cqe/{kind}/{names.get(opc, f'0x{opc:02x}')}"
        if c.cqid == 0 and opc in SELECTOR:
            label += f"/{SELECTOR[opc]}={cmd.cdw10 & 0xFF:#04x}"
    fields = {"sqid": cqe.sqid, "cid": cqe.cid, "status": cqe.status, "dw0": cqe.dw0,
              "dw1": cqe.dw1, "sqhd": cqe.sqhd, "phase": cqe.phase}
    if c.data is not None:
        fields["data"] = c.data
        if cmd is not None and cmd.at:
            fields["at"] = cmd.at
    return label, fields


def _reap(host: Host, qid: int, limit: int = 1 << 16, ring: bool = True) -> list[Observation]:
    sq_cmds = {q: dict(s.outstanding) for q, s in host.sqs.items()}
    done = host.harvest(qid, limit)
    if done and ring:
        host.ring_cq(qid)
    out = []
    for c in done:
        cmd = sq_cmds.get(c.cqe.sqid, {}).get(c.cqe.cid)
        out.append(completion_obs(c, cmd))
    return out


def _admin(host: Host, t: Target, sqe: SQE, args: dict, **kw: Any) -> list[Observation]:
    if 0 not in host.sqs:
        return [("skipped", {"why": "no admin queue"})]
    if host.sqs[0].free() == 0:
        return [("skipped", {"why": "admin SQ full"})]
    host.submit(0, sqe, **kw)
    if args.get("ring", True):
        host.ring_sq(0)
    t.advance(0)
    return _reap(host, 0) if args.get("reap", True) else []


# ---------------------------------------------------------------------- the actions
def enable(host: Host, t: Target, a: dict) -> list[Observation]:
    csts = host.enable(a.get("asqs", 31), a.get("acqs", 31), a.get("mps", 0),
                       a.get("misalign", 0))
    return [("reg/CSTS", {"value": csts})]


def disable(host: Host, t: Target, a: dict) -> list[Observation]:
    host.write_reg("CC", 0)
    host.forget()
    t.advance(0)
    return [("reg/CSTS", {"value": host.read_reg("CSTS")})]


def shutdown(host: Host, t: Target, a: dict) -> list[Observation]:
    cc = host.read_reg("CC")
    host.write_reg("CC", regs.with_field("CC", "SHN", cc, a.get("shn", regs.SHN_NORMAL)))
    t.advance(0)
    return [("reg/CSTS", {"value": host.read_reg("CSTS")})]


def reg_write(host: Host, t: Target, a: dict) -> list[Observation]:
    t.mmio_write(a["offset"], a.get("size", 4), a["value"])
    t.advance(0)
    return []


def reg_read(host: Host, t: Target, a: dict) -> list[Observation]:
    off, size = a["offset"], a.get("size", 4)
    names = {r.offset: r.name for r in regs.REGISTERS}
    return [(f"reg/{names.get(off, hex(off))}", {"value": t.mmio_read(off, size)})]


def create_cq(host: Host, t: Target, a: dict) -> list[Observation]:
    qid, size = a["qid"], a["size"]
    if 0 < qid <= L.MAX_IO_QUEUE and qid not in host.cqs:   # never clobber a live queue
        t.mem_write(L.cq_base(qid), bytes(16 * min(size, 2048)))
        if host.shadow:                # a fresh slot: no value, no EventIdx of an old queue
            t.mem_write(L.SHADOW_DB + 8 * qid + 4, bytes(4))
            t.mem_write(L.EVENTIDX + 8 * qid + 4, bytes(4))
    sqe = SQE(A.CREATE_IO_CQ, cdw10=qid | (size - 1) << 16,
              cdw11=a.get("pc", 1) | a.get("ien", 1) << 1 | a.get("iv", 0) << 16,
              prp1=L.cq_base(qid) + a.get("misalign", 0))
    return _admin(host, t, sqe, a, effect=("create_cq", qid, size))


def create_sq(host: Host, t: Target, a: dict) -> list[Observation]:
    qid, size = a["qid"], a["size"]
    if host.shadow and 0 < qid <= L.MAX_IO_QUEUE and qid not in host.sqs:
        t.mem_write(L.SHADOW_DB + 8 * qid, bytes(4))
        t.mem_write(L.EVENTIDX + 8 * qid, bytes(4))
    sqe = SQE(A.CREATE_IO_SQ, cdw10=qid | (size - 1) << 16,
              cdw11=a.get("pc", 1) | a["cqid"] << 16,
              prp1=L.sq_base(qid) + a.get("misalign", 0))
    return _admin(host, t, sqe, a, effect=("create_sq", qid, a["cqid"], size))


def delete_sq(host: Host, t: Target, a: dict) -> list[Observation]:
    sqe = SQE(A.DELETE_IO_SQ, cdw10=a["qid"])
    return _admin(host, t, sqe, a, effect=("delete_sq", a["qid"]))


def delete_cq(host: Host, t: Target, a: dict) -> list[Observation]:
    sqe = SQE(A.DELETE_IO_CQ, cdw10=a["qid"])
    return _admin(host, t, sqe, a, effect=("delete_cq", a["qid"]))


def admin(host: Host, t: Target, a: dict) -> list[Observation]:
    """Any admin command by fields: Identify, logs, features, Abort, unknown opcodes."""
    opc = a["opc"]
    length = a.get("length", 0)
    data = pattern_bytes(a["pattern"], length) if a.get("pattern") is not None else None
    sqe = SQE(opc, nsid=a.get("nsid", 0), fuse=a.get("fuse", 0), psdt=a.get("psdt", 0),
              cdw10=a.get("cdw10", 0), cdw11=a.get("cdw11", 0), cdw12=a.get("cdw12", 0),
              cdw13=a.get("cdw13", 0), cdw14=a.get("cdw14", 0))
    return _admin(host, t, sqe, a, data=data, length=length,
                  returns_data=opc in RETURNS_DATA_ADMIN, offset=a.get("offset", 0))


def aer(host: Host, t: Target, a: dict) -> list[Observation]:
    return _admin(host, t, SQE(A.ASYNC_EVENT_REQUEST), a)


def dbbuf(host: Host, t: Target, a: dict) -> list[Observation]:
    if not host.shadow:      # fresh pages; pages in use keep the values the host wrote
        # Each slot starts at the tail / head the controller was last told, in the shadow
        # page and in the EventIdx page: the host's next update then passes the EventIdx
        # and rings the MMIO doorbell, until the controller writes an EventIdx of its own.
        # (A zero EventIdx would let the host skip that doorbell for a queue already in
        # use; the host's own tail, when entries were written but not rung, would let it
        # skip the doorbell for them. Either leaves the fetch to whenever the controller
        # happens to read the shadow value.)
        page = bytearray(L.PAGE)
        for qid, sq in host.sqs.items():
            if qid:
                page[8 * qid:8 * qid + 4] = sq.rung.to_bytes(4, "little")
        for qid, cq in host.cqs.items():
            if qid:
                page[8 * qid + 4:8 * qid + 8] = cq.rung.to_bytes(4, "little")
        t.mem_write(L.SHADOW_DB, bytes(page))
        t.mem_write(L.EVENTIDX, bytes(page))
    sqe = SQE(A.DOORBELL_BUFFER_CONFIG, prp1=L.SHADOW_DB + a.get("misalign", 0),
              prp2=L.EVENTIDX)
    return _admin(host, t, sqe, a, effect=("dbbuf", 0))


def io(host: Host, t: Target, a: dict) -> list[Observation]:
    """One NVM command on SQ ``qid``; data commands move ``nlb`` blocks of 512 bytes."""
    qid, opc = a["qid"], a["opc"]
    sq = host.sqs.get(qid)
    if sq is None or qid == 0 or sq.free() == 0:
        return [("skipped", {"why": "no room on that SQ"})]
    nlb = a.get("nlb", 1)
    length, data, cdw10, cdw11, cdw12 = 0, None, 0, 0, 0
    if opc in (IO.READ, IO.WRITE, IO.COMPARE, IO.WRITE_ZEROES):
        slba = a.get("slba", 0)
        cdw10, cdw11, cdw12 = slba & 0xFFFFFFFF, slba >> 32, (nlb - 1) | a.get("flags", 0)
        if opc != IO.WRITE_ZEROES:
            length = min(nlb * 512, L.MAX_TRANSFER - a.get("offset", 0))
        if opc in (IO.WRITE, IO.COMPARE):
            data = pattern_bytes(a.get("pattern", 0), length)
    elif opc == IO.DATASET_MANAGEMENT:
        ranges = a.get("ranges", [(0, 1)])
        data = b"".join(bytes(4) + n.to_bytes(4, "little") + s.to_bytes(8, "little")
                        for s, n in ranges)
        length, cdw10, cdw11 = len(data), len(ranges) - 1, a.get("attr", 4)
    sqe = SQE(opc, nsid=a.get("nsid", 1), cdw10=cdw10, cdw11=cdw11, cdw12=cdw12)
    host.submit(qid, sqe, data=data, length=length, returns_data=opc == IO.READ,
                offset=a.get("offset", 0), unmapped=a.get("unmapped", False))
    if a.get("ring", True):
        host.ring_sq(qid)
    t.advance(0)
    return []


def ring_sq(host: Host, t: Target, a: dict) -> list[Observation]:
    host.ring_sq(a["qid"], a.get("value"))
    t.advance(0)
    return []


def ring_cq(host: Host, t: Target, a: dict) -> list[Observation]:
    host.ring_cq(a["qid"], a.get("value"))
    t.advance(0)
    return []


def consume(host: Host, t: Target, a: dict) -> list[Observation]:
    out = _reap(host, a["qid"], a.get("limit", 1 << 16), a.get("ring", True))
    t.advance(0)
    return out


def advance(host: Host, t: Target, a: dict) -> list[Observation]:
    t.advance(a["ns"])
    return []


def environment(host: Host, t: Target, a: dict) -> list[Observation]:
    ok = t.environment(a["event"], a.get("arg", 1))
    t.advance(0)
    return [] if ok else [("skipped", {"why": f"target has no {a['event']} event"})]


ACTIONS: dict[str, Action] = {
    f.__name__: f for f in (
        enable, disable, shutdown, reg_write, reg_read, create_cq, create_sq, delete_sq,
        delete_cq, admin, aer, dbbuf, io, ring_sq, ring_cq, consume, advance, environment)
}


def observe(host: Host, t: Target) -> list[Observation]:
    """What the guest can see after any step: interrupts, and CQEs posted but unread."""
    out: list[Observation] = []
    events = t.irq_events()
    if events:
        out.append(("irq", {"events": tuple(events)}))
    for qid in sorted(host.cqs):
        posted = host.peek(qid)
        if posted:
            label = "admin" if qid == 0 else "io"
            out.append((f"posted/{label}", {"qid": qid, "cqes": tuple(
                CQE.decode(r) for r in posted)}))
    return out
