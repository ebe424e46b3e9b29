"""``nvmecs-v0``: a TP4159 design whose device state is the NVMe Controller State version 0.

Source: NVMe Base 2.1 (TP4159, ratified 2024-07-30) as summarised in the reference notes
(nvme.md section 6.3): a 48-byte header (VER, CSATTR, NVMECSS, VSS) and NVMECS v0 with one
24-byte entry per I/O SQ {PRP1, QSIZE, QID, CQID, ATTR, HEAD, TAIL} and per I/O CQ {PRP1,
QSIZE, QID, HEAD, TAIL, ATTR: PC, IEN, S0PT (phase tag of slot 0), IV}.

Around it the design carries what any VFIO migration of a PCI function carries: the BAR
register image (CC, AQA, ASQ, ACQ, INTMS, CSTS) from which the destination re-derives the page
size and re-creates the admin queues by enabling.  Everything else (admin queue positions,
features, AER and event state, waiting completions, interrupt state, shadow doorbells,
timestamps) is not in version 0 and is lost.  Suspend stops fetching commands and waits for
outstanding ones, so in-flight I/O is drained before the state is read, and SQEs not yet
fetched stay under the saved SQ tails.
"""

from __future__ import annotations

import struct

from nvmefuzz.errors import SnapshotError
from nvmefuzz.model.controller import Controller
from nvmefuzz.model.profiles.base import Profile

REGS = ("cap", "vs", "intms", "cc", "csts", "aqa", "asq", "acq")
HEADER = struct.Struct("<HB13x16s16s")
NVMECS = struct.Struct("<HHHxx")
SQ_ENTRY = struct.Struct("<QHHHHHH4x")
CQ_ENTRY = struct.Struct("<QHHHHI4x")

SAVES = frozenset({*REGS, "sq", "sq.cqid", "sq.base", "sq.size", "sq.head", "sq.tail",
                   "cq", "cq.base", "cq.size", "cq.ien", "cq.vector", "cq.head", "cq.tail",
                   "cq.phase"})


def encode_state(state: dict) -> dict:
    sqs = [q for q in state["sq"] if q["sqid"]]
    cqs = [q for q in state["cq"] if q["cqid"]]
    body = NVMECS.pack(0, len(sqs), len(cqs))
    for q in sqs:
        body += SQ_ENTRY.pack(q["base"], q["size"] - 1, q["sqid"], q["cqid"], 1, q["head"],
                              q["tail"])
    for q in cqs:
        s0pt = int(q["phase"]) if q["tail"] else 1 - int(q["phase"])
        attr = 1 | int(q["ien"]) << 1 | s0pt << 2 | q["vector"] << 16
        body += CQ_ENTRY.pack(q["base"], q["size"] - 1, q["cqid"], q["head"], q["tail"], attr)
    header = HEADER.pack(0, 1, (len(body) // 4).to_bytes(16, "little"), bytes(16))
    return {"regs": {k: state[k] for k in REGS}, "nvmecs": header + body}


def decode_state(wire: object) -> dict:
    if not isinstance(wire, dict) or set(wire) != {"regs", "nvmecs"}:
        raise SnapshotError("nvmecs-v0 state must hold 'regs' and 'nvmecs'")
    blob, regs = wire["nvmecs"], wire["regs"]
    if not isinstance(blob, bytes) or not isinstance(regs, dict) or set(regs) != set(REGS):
        raise SnapshotError("nvmecs-v0 state fields have the wrong types")
    if len(blob) < HEADER.size + NVMECS.size:
        raise SnapshotError("NVMECS blob shorter than its headers")
    ver, _attr, size, vss = HEADER.unpack_from(blob)
    body = blob[HEADER.size:]
    if ver != 0 or int.from_bytes(vss, "little") or int.from_bytes(size, "little") * 4 != len(
            body):
        raise SnapshotError("NVMECS header does not match its payload")
    ver, nsq, ncq = NVMECS.unpack_from(body)
    if ver != 0 or NVMECS.size + 24 * (nsq + ncq) != len(body):
        raise SnapshotError("NVMECS v0 entry counts do not match its size")
    sqs, cqs, pos = [], [], NVMECS.size
    for _ in range(nsq):
        base, qsize, qid, cqid, _a, head, tail = SQ_ENTRY.unpack_from(body, pos)
        sqs.append({"sqid": qid, "cqid": cqid, "base": base, "size": qsize + 1, "head": head,
                    "tail": tail})
        pos += 24
    for _ in range(ncq):
        base, qsize, qid, head, tail, attr = CQ_ENTRY.unpack_from(body, pos)
        s0pt = (attr >> 2) & 1
        cqs.append({"cqid": qid, "base": base, "size": qsize + 1, "head": head, "tail": tail,
                    "ien": bool(attr & 2), "vector": attr >> 16,
                    "phase": bool(s0pt if tail else 1 - s0pt)})
        pos += 24
    return {**regs, "sq": sqs, "cq": cqs}


def pre_save(ctrl: Controller) -> None:
    ctrl.quiesce()                        # Suspend: no new command fetched, outstanding ones end


def post_load(ctrl: Controller) -> None:
    """The destination's BAR image says enabled: enabling re-creates the admin queues."""
    ctrl.page_size = 1 << (12 + ((ctrl.cc >> 7) & 0xF))
    if ctrl.cc & 1 and ctrl.csts & 1 and 0 not in ctrl.sqs and 0 not in ctrl.cqs:
        ctrl._start()
        for sq in ctrl.sqs.values():
            if sq.cqid not in ctrl.cqs:
                raise SnapshotError(f"sq[{sq.sqid}]: completion queue {sq.cqid} is missing")
    ctrl.kick()


PROFILE = Profile(
    name="nvmecs-v0",
    description="TP4159 NVMe Controller State v0 (I/O queues) plus the BAR register image",
    source="NVMe Base 2.1 / TP4159; reference/nvme.md s6.3",
    saves=SAVES,
    pre_save=pre_save,
    post_load=post_load,
    drains_inflight=True,
    encode_state=encode_state,
    decode_state=decode_state,
)
