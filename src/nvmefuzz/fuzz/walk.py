"""Steps without Hypothesis: uniformly random steps, and a guest's read/write workload.

``random_step(rng)`` draws an action uniformly from ``fuzz.actions.ACTIONS`` plus ``migrate``
and each argument uniformly from a fixed set of values: the values the state machine draws
from (machine.py; Set Features values per FID from ``arguments``), without its
repetitions, preconditions, queue-id bundles or guidance from the walk's own past.

``Workload`` is what QEMU's migration functional test does in a guest: enable, create one
I/O queue pair (shadow doorbells and an AER outstanding at random, as a Linux guest on QEMU
may have), write and read 4 KiB extents of LBAs 0..63 with one migration at a random point,
let everything finish, read every written extent back, and judge only at the end: every
command completed with success and the data read back is the data written last.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Iterator

from nvmefuzz.errors import Divergence
from nvmefuzz.fuzz.actions import ACTIONS
from nvmefuzz.fuzz.arguments import ENABLE_FAULTS, FEATURE_DATA, NLB_VALUES, feature_values
from nvmefuzz.host.driver import Host, pattern_bytes
from nvmefuzz.protocol.spec import AdminOpcode as A, IoOpcode as IO
from nvmefuzz.trace.schema import Step

POWER_ON = Step("enable", {"asqs": 7, "acqs": 7})
QIDS = (0, 1, 2, 3, 4, 65)
SIZES = (1, 2, 3, 4, 8, 16, 32, 4097)
IO_OPS = tuple(int(op) for op in (IO.WRITE, IO.READ, IO.FLUSH, IO.WRITE_ZEROES, IO.COMPARE,
                                  IO.DATASET_MANAGEMENT, IO.WRITE_UNCORRECTABLE))
FIDS = (0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0E, 0x16, 0x19,
        0x7F)
GET_CDW11 = (0, 1 << 20, 3 << 20, 1)          # Get Features: THSEL / TMPSEL selectors
REG_WRITES = (0x00, 0x08, 0x0C, 0x10, 0x18, 0x1C, 0x20, 0x38, 0x1002)
REG_READS = (0x00, 0x08, 0x0C, 0x10, 0x14, 0x1C, 0x20, 0x24, 0x28, 0x30, 0x1000)


def _admin(r: random.Random) -> dict:
    kind = r.choice(("identify", "log", "get", "set", "abort", "bad"))
    if kind == "identify":
        return {"opc": int(A.IDENTIFY), "cdw10": r.choice((0, 1, 2, 3, 5, 6, 7, 8, 0x20)),
                "nsid": r.choice((0, 1, 2, 0xFFFFFFFF)), "length": 4096}
    if kind == "log":
        numd = r.choice((1, 15, 127, 1023))
        return {"opc": int(A.GET_LOG_PAGE), "nsid": r.choice((0, 1, 0xFFFFFFFF)),
                "cdw10": r.choice((1, 2, 3, 4, 5, 0x7F)) | r.randrange(2) << 15 | numd << 16,
                "cdw12": r.choice((0, 3, 4)), "length": min((numd + 1) * 4, 4096)}
    if kind in ("get", "set"):
        fid = r.choice(FIDS)
        args: dict[str, Any] = {"cdw11": r.choice(
            GET_CDW11 if kind == "get" else feature_values(fid))}
        if fid in FEATURE_DATA:
            args["length"] = FEATURE_DATA[fid]
        if kind == "get":
            return {"opc": int(A.GET_FEATURES), "cdw10": fid | r.randrange(5) << 8,
                    "nsid": r.choice((0, 1, 0xFFFFFFFF)), **args}
        if fid in FEATURE_DATA:
            args["pattern"] = r.randrange(256)
        return {"opc": int(A.SET_FEATURES), "cdw10": fid | r.choice((0, 1 << 31)),
                "nsid": r.choice((0, 1, 2)), **args}
    if kind == "abort":
        return {"opc": int(A.ABORT), "cdw10": r.choice(QIDS) | r.randrange(8) << 16}
    return {"opc": r.choice((0x06, 0x0D, 0x10, 0x18, 0x7F, 0xC0))}


def _io(r: random.Random) -> dict:
    opc, slba, nlb = r.choice(IO_OPS), r.randrange(64), r.choice(NLB_VALUES)
    args = {"qid": r.choice(QIDS), "opc": opc, "slba": slba, "nlb": nlb,
            "pattern": r.randrange(256), "offset": r.choice((0, 512, 3584)),
            "ring": r.choice((True, False)), "nsid": r.choice((1, 0, 2, 0xFFFFFFFF))}
    if opc == IO.DATASET_MANAGEMENT:
        args["ranges"] = [[slba, nlb]]
    return args


def _doorbell(r: random.Random) -> dict:
    return {"qid": r.choice(QIDS), **({"value": r.randrange(0x10000)} if r.randrange(2)
                                      else {})}


ARGS: dict[str, Callable[[random.Random], dict]] = {
    "enable": lambda r: {"asqs": r.choice((1, 3, 7, 31)), "acqs": r.choice((1, 3, 7, 31)),
                         **r.choice((*[{}] * 9, *ENABLE_FAULTS.values()))},
    "disable": lambda r: {},
    "shutdown": lambda r: {"shn": r.choice((1, 2))},
    "reg_write": lambda r: {"offset": r.choice(REG_WRITES), "size": 4, "value": r.choice(
        (0, 1, 2, 0x10, 0x4E564D65, 0xFFFFFFFF))},
    "reg_read": lambda r: (lambda o: {"offset": o, "size": 8 if o in (0, 0x28, 0x30)
                                      else 4})(r.choice(REG_READS)),
    "create_cq": lambda r: {"qid": r.choice(QIDS), "size": r.choice(SIZES),
                            "ien": r.randrange(2), "iv": r.choice((0, 1, 2, 3, 70)),
                            "pc": r.randrange(2)},
    "create_sq": lambda r: {"qid": r.choice(QIDS), "cqid": r.choice((0, 1, 2, 3, 4, 5, 9)),
                            "size": r.choice(SIZES), "pc": r.randrange(2)},
    "delete_sq": lambda r: {"qid": r.choice(QIDS)},
    "delete_cq": lambda r: {"qid": r.choice(QIDS)},
    "admin": _admin,
    "aer": lambda r: {"reap": r.choice((True, False))},
    "dbbuf": lambda r: {"misalign": r.choice((0, 8))},
    "io": _io,
    "ring_sq": _doorbell,
    "ring_cq": _doorbell,
    "consume": lambda r: {"qid": r.choice(QIDS), "limit": r.choice((1, 2, 64)),
                          "ring": r.choice((True, False))},
    "advance": lambda r: {"ns": r.choice((0, 5_000, 10_000, 20_000, 100_000,
                                          3_600_000_000_000))},
    "environment": lambda r: {"event": "ns_changed", "arg": 1},
    "migrate": lambda r: {},
}
NAMES = tuple(sorted(ACTIONS)) + ("migrate",)
assert set(NAMES) == set(ARGS), "every action needs an argument drawer"


def random_step(rng: random.Random) -> Step:
    """One uniformly random step of the vocabulary."""
    action = rng.choice(NAMES)
    return Step(action, ARGS[action](rng))


class Workload:
    """One run of the functional test's guest workload; ``steps`` then ``judge``."""

    EXTENTS = 8                       # 4 KiB extents of LBAs 0..63

    def __init__(self, rng: random.Random, budget: int, host: Host, msix: bool = True) -> None:
        self.rng, self.budget, self.host, self.msix = rng, budget, host, msix
        self.blocks: dict[int, bytes] = {}        # LBA -> the data written there last
        self.verify: list[tuple[int, int]] = []   # (extent, CID) of the read-backs

    def _room(self) -> Iterator[Step]:
        """Wait until the SQ has a free entry whose data slot no command still uses (the host
        driver reuses a slot's buffer as soon as the ring wraps)."""
        for _ in range(3):
            sq = self.host.sqs.get(1)
            if sq is None or sq.free() > 0 and len(sq.outstanding) < sq.size - 1:
                return
            yield Step("advance", {"ns": 20_000})
            yield Step("consume", {"qid": 1})

    def steps(self) -> Iterator[Step]:
        """The workload; each step is applied before the next one is drawn."""
        r = self.rng
        size = r.choice((2, 4, 8, 32))
        yield Step("enable", {"asqs": 31, "acqs": 31})
        if r.randrange(2):
            yield Step("dbbuf", {})
        if r.randrange(2):
            yield Step("aer", {"reap": False})
        yield Step("create_cq", {"qid": 1, "size": size, "ien": 1, "iv": int(self.msix)})
        yield Step("create_sq", {"qid": 1, "cqid": 1, "size": size})
        ops = max(4, (self.budget - 3 * self.EXTENTS - 11) // 2)
        migrate_at = r.randrange(ops)
        for i in range(ops):
            if i == migrate_at:
                yield Step("migrate", {})
            yield from self._room()
            sq = self.host.sqs.get(1)
            if sq is None or sq.free() == 0 or len(sq.outstanding) >= sq.size - 1:
                break                             # the guest is stuck: judged at the end
            ext, nlb = r.randrange(self.EXTENTS), r.randint(1, 8)
            if r.random() < 0.6:
                pattern = r.randrange(256)
                data = pattern_bytes(pattern, nlb * 512)
                for b in range(nlb):
                    self.blocks[8 * ext + b] = data[512 * b:512 * (b + 1)]
                yield Step("io", {"qid": 1, "opc": int(IO.WRITE), "slba": 8 * ext,
                                  "nlb": nlb, "pattern": pattern})
            else:
                yield Step("io", {"qid": 1, "opc": int(IO.READ), "slba": 8 * ext, "nlb": nlb})
            if r.randrange(2):
                yield Step("advance", {"ns": r.choice((5_000, 20_000))})
                yield Step("consume", {"qid": 1})
        for _ in range(3):
            yield Step("advance", {"ns": 20_000})
            yield Step("consume", {"qid": 1})
        for ext in sorted({lba // 8 for lba in self.blocks}):
            yield from self._room()
            sq = self.host.sqs.get(1)
            if sq is None or sq.free() == 0 or len(sq.outstanding) >= sq.size - 1:
                return
            yield Step("io", {"qid": 1, "opc": int(IO.READ), "slba": 8 * ext, "nlb": 8})
            self.verify.append((ext, next(reversed(sq.outstanding))))
            yield Step("advance", {"ns": 20_000})
            yield Step("consume", {"qid": 1})

    def judge(self, host: Host, seen: list[list]) -> Divergence | None:
        """The functional test's verdict from the migrated side's observations only."""
        done = [f for obs in seen for label, f in obs if label.startswith("cqe/io/")]
        bad = [f["status"] for f in done if f["status"]]
        if bad:
            return Divergence("divergence", "workload/status",
                              f"an I/O command failed with status {bad[0]:#x}")
        sq = host.sqs.get(1)
        if sq is None or sq.outstanding or len(self.verify) < len({b // 8 for b in self.blocks}):
            return Divergence("hung", "workload/unfinished",
                              "the workload's commands did not all complete")
        data = {f["cid"]: f.get("data") for f in done if f["sqid"] == 1}
        for ext, cid in self.verify:
            want = b"".join(self.blocks.get(8 * ext + b, bytes(512)) for b in range(8))
            if data.get(cid) != want:
                return Divergence("divergence", "workload/data",
                                  f"extent {ext} (LBA {8 * ext}) does not read back as written")
        return None
