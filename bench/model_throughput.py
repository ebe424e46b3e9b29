"""Throughput of the reference model: host commands per second, and snapshot+restore cost.

Run: ``python bench/model_throughput.py [--commands N] [--rounds N] [--seed N]``

1. Commands/s through the host driver and the model target: four I/O queue pairs of 32
   entries; each batch puts a few commands on every queue (80 % I/O, an even mix of 4 KiB
   Reads and Writes of 8 blocks; 20 % admin, Get Features and Identify), rings each doorbell
   once, lets the I/O latency pass and consumes every CQ (one head doorbell per CQ).
2. Microseconds per ``snapshot`` + ``restore`` under the ``full`` profile of a controller with
   eight I/O queue pairs and commands outstanding (in-flight I/O on every queue, a full CQ with
   waiting completions, outstanding AERs).  Guest memory and the namespace are shared with the
   restored controller, as in a model-target migration (they travel like VM RAM and disk).

Time is this process's CPU time (``time.process_time``): the benchmark is single-threaded, so
that is its cost on one core even when other processes share the machine (wall-clock time is
printed beside it).  Each figure is the best of several runs, as ``timeit`` advises.  Prints
each figure, then both as one JSON object on the last line.  Targets on one core: >= 20,000
commands/s and <= 300 us per snapshot+restore.
"""

from __future__ import annotations

import argparse
import json
import random
import time

from nvmefuzz.host import layout as L
from nvmefuzz.host.driver import Host, pattern_bytes
from nvmefuzz.model import profiles, snapshot as snap
from nvmefuzz.protocol import regs
from nvmefuzz.protocol.queues import SQE
from nvmefuzz.protocol.spec import AdminOpcode as A, FeatureId as F, IoOpcode as IO
from nvmefuzz.targets.base import TargetConfig
from nvmefuzz.targets.model import ModelTarget

LATENCY = 20_000
GET_FEATURE_IDS = (F.ARBITRATION, F.TEMPERATURE_THRESHOLD, F.VOLATILE_WRITE_CACHE,
                   F.NUMBER_OF_QUEUES, F.ASYNC_EVENT_CONFIG)
WRITE_DATA = [pattern_bytes(p, 4096) for p in range(16)]


def bring_up(pairs: int, size: int, first_cq: int | None = None) -> tuple[ModelTarget, Host]:
    target = ModelTarget(TargetConfig(io_latency_ns=LATENCY))
    host = Host(target)
    if not host.enable(31, 31) & regs.CSTS_RDY:
        raise SystemExit("controller did not become ready")
    for qid in range(1, pairs + 1):
        cq_size = first_cq if qid == 1 and first_cq else size
        target.mem_write(L.cq_base(qid), bytes(16 * cq_size))
        host.submit(0, SQE(A.CREATE_IO_CQ, cdw10=qid | (cq_size - 1) << 16, cdw11=3,
                           prp1=L.cq_base(qid)), effect=("create_cq", qid, cq_size))
        host.submit(0, SQE(A.CREATE_IO_SQ, cdw10=qid | (size - 1) << 16, cdw11=1 | qid << 16,
                           prp1=L.sq_base(qid)), effect=("create_sq", qid, qid, size))
        host.ring_sq(0)
        done = host.harvest(0)
        host.ring_cq(0)
        if [c.cqe.status for c in done] != [0, 0]:
            raise SystemExit(f"creating queue pair {qid} failed: {done}")
    return target, host


def submit_one(host: Host, rng: random.Random, pairs: int) -> int:
    """Submit one command of the mix; returns the SQ it went to."""
    if rng.random() < 0.8:
        qid = rng.randrange(1, pairs + 1)
        slba = rng.randrange(0, (1 << 14) - 8, 8)
        if rng.random() < 0.5:
            host.submit(qid, SQE(IO.READ, nsid=1, cdw10=slba, cdw12=7), length=4096,
                        returns_data=True)
        else:
            host.submit(qid, SQE(IO.WRITE, nsid=1, cdw10=slba, cdw12=7),
                        data=WRITE_DATA[slba % 16], length=4096)
        return qid
    if rng.random() < 0.5:
        host.submit(0, SQE(A.GET_FEATURES, cdw10=rng.choice(GET_FEATURE_IDS)))
    else:
        host.submit(0, SQE(A.IDENTIFY, nsid=1, cdw10=rng.choice((0, 1))), length=4096,
                    returns_data=True)
    return 0


def commands_per_second(total: int, seed: int, pairs: int = 4,
                        batch: int = 24) -> tuple[float, float]:
    """Commands per second of CPU time and of wall-clock time."""
    target, host = bring_up(pairs, 32)
    rng = random.Random(seed)
    done = 0
    start, wall = time.process_time(), time.perf_counter()
    while done < total:
        rung: set[int] = set()
        for _ in range(batch):
            qid = submit_one(host, rng, pairs)
            rung.add(qid)
            if host.sqs[qid].free() == 0:
                break
        for qid in sorted(rung):
            host.ring_sq(qid)
        target.advance(LATENCY)
        for qid in range(pairs + 1):
            got = host.harvest(qid)
            if got:
                host.ring_cq(qid)
                done += len(got)
                if any(c.cqe.status for c in got):
                    raise SystemExit(f"a command failed: {got[0]}")
    cpu, wall = time.process_time() - start, time.perf_counter() - wall
    if any(sq.outstanding for sq in host.sqs.values()):
        raise SystemExit("commands left outstanding")
    return done / cpu, done / wall


def busy_controller(pairs: int = 8):
    """Eight queue pairs with in-flight I/O everywhere, a full CQ with waiting entries, AERs."""
    target, host = bring_up(pairs, 16, first_cq=4)
    for qid in range(1, pairs + 1):
        for i in range(4):
            host.submit(qid, SQE(IO.READ, nsid=1, cdw10=8 * i, cdw12=7), length=4096)
        host.ring_sq(qid)
    target.advance(LATENCY)                  # these complete and post; pair 1 is not consumed
    for qid in range(1, pairs + 1):
        for i in range(3):
            host.submit(qid, SQE(IO.WRITE, nsid=1, cdw10=64 + 8 * i, cdw12=7),
                        data=WRITE_DATA[i], length=4096)
        host.ring_sq(qid)
    for _ in range(2):
        host.submit(0, SQE(A.ASYNC_EVENT_REQUEST))
    host.ring_sq(0)
    ctrl = target.ctrl
    if not ctrl.inflight or not ctrl.aer_reqs or not ctrl.cqs[1].waiting:
        raise SystemExit("the snapshot scenario has nothing outstanding")
    return ctrl


def snapshot_restore_us(rounds: int) -> tuple[float, float, int]:
    """Microseconds of CPU time and of wall-clock time per round, and the blob size."""
    ctrl = busy_controller()
    full = profiles.get("full")
    blob = snap.snapshot(ctrl, full)
    back = snap.restore(blob, ctrl.config, full, ctrl.mem, ctrl.store, ctrl.now)
    if snap.snapshot(back, full) != blob:
        raise SystemExit("snapshot -> restore -> snapshot is not identical")
    cpu, wall = [], []
    for _ in range(7):
        start, start_wall = time.process_time(), time.perf_counter()
        for _ in range(rounds):
            blob = snap.snapshot(ctrl, full)
            snap.restore(blob, ctrl.config, full, ctrl.mem, ctrl.store, ctrl.now)
        cpu.append((time.process_time() - start) / rounds * 1e6)
        wall.append((time.perf_counter() - start_wall) / rounds * 1e6)
    return min(cpu), min(wall), len(blob)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    runs = [commands_per_second(args.commands // 3, args.seed + run) for run in range(3)]
    cps, cps_wall = max(r[0] for r in runs), max(r[1] for r in runs)
    print(f"host+model: {cps:,.0f} commands/s of CPU time ({cps_wall:,.0f} by wall clock; "
          f"80% 4 KiB I/O over 4 queue pairs, 20% admin)   target >= 20,000")
    us, us_wall, size = snapshot_restore_us(args.rounds)
    print(f"snapshot+restore (full, 8 queue pairs, commands outstanding): {us:.1f} us of CPU "
          f"time per round ({us_wall:.1f} by wall clock), {size} bytes   target <= 300")
    print(json.dumps({"commands_per_s": round(cps), "snapshot_restore_us": round(us, 1)}))


if __name__ == "__main__":
    main()
