"""Throughput of the qemu target: NVMe commands per second and migrations per second.

Run: ``python bench/qemu_throughput.py [--commands N] [--migrations N] [--depth N]
[--rounds N]``

1. Commands/s, fuzzer style (queue depth 1): each command is one ``io`` action (a 4 KiB
   Write or Read, with a data pattern from 0-255 as the fuzzer draws them) then a ``consume``
   action and the observations a session makes after every step, so every command pays two
   settles (see ``targets/qemu.py``); also the qtest round trips per command and the drain
   barriers (QMP stop/cont) per command, which should be 0.
2. Commands/s, batched: ``--depth`` commands on one SQ, one doorbell, one settle, one harvest.
3. Migrations/s with the warm pool: a controller with an I/O queue pair and an outstanding AER
   is migrated back to back; each migration is QMP ``migrate`` to a file, a pre-started
   ``-incoming defer`` destination and ``migrate-incoming``.  Also the mean milliseconds to
   start a QEMU (until qtest and QMP answer), to save, to take a pool destination and to load.

Prints each figure, then all of them as one JSON object on the last line.  Targets:
>= 2,000 commands/s and >= 20 migrations/s.  Wall-clock figures on a shared 2-core machine
move with whatever else runs there (one at a time, from one run to the next, by a fifth and
more), so the command figures are the median of ``--rounds`` runs, printed with their range.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from nvmefuzz.fuzz.actions import ACTIONS, observe
from nvmefuzz.host.driver import Host
from nvmefuzz.protocol.queues import SQE
from nvmefuzz.protocol.spec import IoOpcode as IO
from nvmefuzz.targets.base import TargetConfig
from nvmefuzz.targets.discovery import find_qemu
from nvmefuzz.targets.qemu import QemuTarget
from nvmefuzz.targets.qemu_life import Workspace
from nvmefuzz.targets.qemu_process import QemuProcess


def bring_up(binary) -> tuple[QemuTarget, Host]:
    t = QemuTarget(TargetConfig(kind="qemu"), binary, pool_size=2)
    h = Host(t)
    ACTIONS["enable"](h, t, {})
    for a, args in (("create_cq", {"qid": 1, "size": 32, "iv": 1}),
                    ("create_sq", {"qid": 1, "size": 32, "cqid": 1})):
        [(_, f)] = ACTIONS[a](h, t, args)
        if f["status"]:
            raise SystemExit(f"{a} failed: {f}")
    ACTIONS["aer"](h, t, {"reap": False})
    observe(h, t)
    return t, h


def fuzz_style(t: QemuTarget, h: Host, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        ACTIONS["io"](h, t, {"qid": 1, "opc": IO.WRITE if i % 2 == 0 else IO.READ,
                             "slba": 8 * (i % 64), "nlb": 8, "pattern": i % 256})
        observe(h, t)
        done = ACTIONS["consume"](h, t, {"qid": 1})
        observe(h, t)
        if len(done) != 1 or done[0][1]["status"]:
            raise SystemExit(f"command {i} did not complete cleanly: {done}")
    return n / (time.perf_counter() - start)


def batched(t: QemuTarget, h: Host, n: int, depth: int) -> float:
    start, done = time.perf_counter(), 0
    while done < n:
        k = min(depth, n - done)
        for j in range(k):
            opc = IO.WRITE if j % 2 == 0 else IO.READ
            h.submit(1, SQE(opc, nsid=1, cdw10=8 * j, cdw12=7), data=None, length=4096,
                     returns_data=opc == IO.READ)
        h.ring_sq(1)
        t.advance(0)
        got = h.harvest(1)
        h.ring_cq(1)
        t.advance(0)
        t.irq_events()
        if len(got) != k or any(c.cqe.status for c in got):
            raise SystemExit(f"batch did not complete: {len(got)} of {k}")
        done += k
    return n / (time.perf_counter() - start)


def _range(figures: list[float]) -> str:
    return f"{len(figures)} runs, {min(figures):,.0f}-{max(figures):,.0f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--commands", type=int, default=2000)
    ap.add_argument("--migrations", type=int, default=100)
    ap.add_argument("--depth", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5, help="runs of each command figure")
    a = ap.parse_args()
    binary = find_qemu()
    print(f"QEMU {binary.version_text} via {binary.origin}")

    ws = Workspace(binary, 8 << 20)
    starts = []
    for _ in range(5):
        t0 = time.perf_counter()
        QemuProcess(ws).connect().close()
        starts.append((time.perf_counter() - t0) * 1000)
    ws.remove()

    t, h = bring_up(binary)
    try:
        r0, rt0 = t.stats["drain barriers"], t.stats["round trips"]
        qd1s = [fuzz_style(t, h, a.commands) for _ in range(a.rounds)]
        barriers = (t.stats["drain barriers"] - r0) / (a.commands * a.rounds)
        trips = (t.stats["round trips"] - rt0) / (a.commands * a.rounds)
        qdns = [batched(t, h, a.commands, a.depth) for _ in range(a.rounds)]
        qd1, qdn = statistics.median(qd1s), statistics.median(qdns)
        print(f"commands/s, one at a time (fuzzer steps): {qd1:,.0f} ({_range(qd1s)}; "
              f"{trips:.1f} qtest round trips and {barriers:.2f} drain barriers per command)")
        print(f"commands/s, {a.depth} per doorbell: {qdn:,.0f} ({_range(qdns)})")
        save, take, load, sizes = [], [], [], []
        start = time.perf_counter()
        for i in range(a.migrations):
            out = t.migrate()
            if not out.ok:
                raise SystemExit(f"migration {i}: {out}")
            save.append(t.timings["save"] * 1000)
            take.append(t.timings["take"] * 1000)
            load.append(t.timings["load"] * 1000)
            sizes.append(out.size)
        mig = a.migrations / (time.perf_counter() - start)
        # the device still works after all that
        [(label, f)] = ACTIONS["admin"](h, t, {"opc": 6, "cdw10": 1, "length": 4096})
        if f["status"] or f["data"][4:12] != b"nvmefuzz":
            raise SystemExit("controller broken after the migrations")
    finally:
        t.close()
    figures = {
        "commands_per_s_qd1": round(qd1), f"commands_per_s_qd{a.depth}": round(qdn),
        "commands_per_s_qd1_range": [round(min(qd1s)), round(max(qd1s))],
        f"commands_per_s_qd{a.depth}_range": [round(min(qdns)), round(max(qdns))],
        "rounds": a.rounds,
        "barriers_per_command_qd1": round(barriers, 2),
        "round_trips_per_command_qd1": round(trips, 1),
        "migrations_per_s": round(mig, 1),
        "start_ms": round(statistics.median(starts), 1),
        "save_ms": round(statistics.median(save), 1),
        "take_ms": round(statistics.median(take), 1),
        "load_ms": round(statistics.median(load), 1),
        "state_bytes": int(statistics.median(sizes)),
        "targets": {"commands_per_s": 2000, "migrations_per_s": 20},
    }
    print(f"migrations/s with a warm pool: {mig:.1f}")
    print(f"median ms: start {figures['start_ms']}, save {figures['save_ms']}, take "
          f"{figures['take_ms']}, load {figures['load_ms']}; {figures['state_bytes']} bytes")
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
