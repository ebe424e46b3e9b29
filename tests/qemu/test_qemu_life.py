"""How QEMU processes and workspaces end (``qemu_life``): with their parent, even by SIGKILL;
folders a killed run left are swept by the next."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

from nvmefuzz.targets import qemu_life
from nvmefuzz.targets.discovery import QemuBinary
from nvmefuzz.targets.qemu_life import STALE_S, Workspace, sweep
from nvmefuzz.targets.qemu_process import Booting

CHILD = r"""
import json, sys, time
from nvmefuzz.targets.base import TargetConfig
from nvmefuzz.targets.qemu import QemuTarget
from nvmefuzz.targets.qemu_spares import SPARES
t = QemuTarget(TargetConfig(kind="qemu"))
pids = [t.proc.proc.pid] + [p.proc.pid for p in t.pool.ready]
pids += [s.source.result().proc.pid for s in SPARES.slots]
print(json.dumps({"pids": pids, "dirs": [t.ws.dir] + [s.ws.dir for s in SPARES.slots]}),
      flush=True)
time.sleep(600)
"""


def _running(pid: int) -> bool:
    """Is ``pid`` a live process (not gone, not a zombie)?"""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_a_sigkilled_nvmefuzz_leaves_no_qemu_running(qemu_binary):
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        started = json.loads(child.stdout.readline())
        assert len(started["pids"]) == 4 and all(_running(p) for p in started["pids"])
    finally:
        child.kill()
        child.wait(timeout=30)
    deadline = time.monotonic() + 20
    while any(_running(p) for p in started["pids"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_running(p) for p in started["pids"])
    assert all(os.path.isdir(d) for d in started["dirs"])      # left for the next run's sweep
    for d in started["dirs"]:
        shutil.rmtree(d)


def test_a_process_started_from_a_thread_outlives_the_thread(qemu_binary):
    ws = Workspace(qemu_binary, 1 << 20)
    booting = Booting(ws)
    try:
        proc = booting.result()
        assert not booting.thread.is_alive()
        time.sleep(0.3)
        assert proc.proc.poll() is None and proc.qtest("readl 0x0").ok
    finally:
        booting.close()
        ws.remove()


def test_sweep_removes_only_stale_folders_of_exited_creators(tmp_path):
    dead, old = _dead_pid(), time.time() - STALE_S - 60
    names = {"stale": f"nvmefuzz-{dead}-a", "fresh": f"nvmefuzz-{dead}-b",
             "alive": f"nvmefuzz-{os.getppid()}-c", "mine": f"nvmefuzz-{os.getpid()}-d",
             "other": "something-else", "unowned": "nvmefuzz-e"}
    for key, name in names.items():
        (tmp_path / name / "sub").mkdir(parents=True)
        if key != "fresh":
            os.utime(tmp_path / name, (old, old))
    assert sweep(str(tmp_path)) == [str(tmp_path / names["stale"])]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        n for k, n in names.items() if k != "stale")


def test_the_first_workspace_of_a_run_sweeps_its_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(qemu_life, "_SWEPT", set())
    b = QemuBinary(("qemu-system-x86_64",), (11, 1, 3), "chroot", root=str(tmp_path))
    left = os.path.join(b.tmp_dir(), f"nvmefuzz-{_dead_pid()}-x")
    os.makedirs(left)
    old = time.time() - STALE_S - 60
    os.utime(left, (old, old))
    ws = Workspace(b, 4096)
    try:
        assert os.listdir(b.tmp_dir()) == [os.path.basename(ws.dir)]
        assert os.path.basename(ws.dir).startswith(f"nvmefuzz-{os.getpid()}-")
    finally:
        ws.remove()
