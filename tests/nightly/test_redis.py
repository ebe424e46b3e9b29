"""Several machines, one example database: a real redis-server shared by separate processes.

The fixture starts Debian's ``redis-server`` on a free loopback port with persistence off.
The tests need it (``.ci/run`` installs it): without it they fail, they do not skip.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

from nvmefuzz.errors import TargetUnavailable
from nvmefuzz.fuzz.database import open_database
from nvmefuzz.fuzz.session import replay
from nvmefuzz.trace import corpus as corpus_mod


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    """redis://127.0.0.1:PORT/0 of a redis-server started for this module, stopped after it."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed: the shared example database tests need a "
                    "real Redis server (Debian package redis-server; .ci/run installs it)")
    port = _free_port()
    workdir = tmp_path_factory.mktemp("redis")
    log = workdir / "redis.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save",
                                 "", "--appendonly", "no", "--dir", str(workdir)],
                                stdout=fh, stderr=subprocess.STDOUT)
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if client.ping():
                    break
            except redis.exceptions.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server on port {port} did not answer PING: "
                            f"{log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


#: a design that loses the Temperature Threshold only: the v3 campaign's Set/Get Features
#: find it within a few hundred examples and no sooner than a few examples (the v3 patch itself
#: also loses DMRSL, which any migration after an enable shows)
ONE_LOSS = "full-without-features.temp_thresh_hi"


def _fuzz(run_cli, cwd: Path, name: str, seed: int, examples: int,
          database: str | None) -> tuple[subprocess.CompletedProcess, dict]:
    args = ["fuzz", "-q", "--profile", ONE_LOSS, "--campaign", "v3",
            "--examples", examples, "--seed", seed, "--corpus", cwd / f"{name}_corpus",
            "--out", cwd / f"{name}_out", "--json", cwd / f"{name}.json"]
    if database:
        args += ["--database", database]
    proc = run_cli(args, cwd=cwd)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    return proc, json.loads((cwd / f"{name}.json").read_text())


def test_an_example_found_by_one_process_replays_in_another(redis_url, run_cli, tmp_path,
                                                           strategies):
    """Process A's failing example, stored in Redis, is replayed by process B with another seed."""
    strategies(tmp_path, full=False)                 # the v3 campaign's rules
    client = redis.Redis.from_url(redis_url)
    client.flushdb()

    # control: B's seed and budget alone find nothing, so a finding in B comes from Redis
    control, control_summary = _fuzz(run_cli, tmp_path, "control", 2, 1, None)
    assert control.returncode == 0 and control_summary["findings"] == []

    a, a_summary = _fuzz(run_cli, tmp_path, "A", 1, 200, redis_url)
    assert a.returncode == 1, a.stdout[-3000:]
    a_signatures = [f["signature"] for f in a_summary["findings"]]
    assert a_signatures
    keys = client.keys(b"*")
    assert keys and all(k.startswith(b"nvmefuzz:") for k in keys)

    b, b_summary = _fuzz(run_cli, tmp_path, "B", 2, 1, redis_url)
    assert b.returncode == 1, b.stdout[-3000:]
    (finding,) = b_summary["findings"]
    assert finding["signature"] in a_signatures
    assert finding["new"] and b_summary["examples"] <= 3     # replayed, not searched for
    stored = corpus_mod.load(Path(finding["trace"]))
    assert Path(finding["trace"]).is_relative_to(tmp_path / "B_corpus")
    verdict, _ = replay(stored)
    assert verdict.signature == finding["signature"]


def test_open_database_reaches_the_server_and_names_the_url_when_it_cannot(redis_url):
    """open_database gives a Redis database for redis://, and a clear error for a dead server."""
    db = open_database(redis_url)
    db.save(b"key", b"value")
    assert list(db.fetch(b"key")) == [b"value"]
    client = redis.Redis.from_url(redis_url)
    assert any(k.startswith(b"nvmefuzz:") for k in client.keys(b"*"))
    db.delete(b"key", b"value")
    assert list(db.fetch(b"key")) == []

    dead = f"redis://127.0.0.1:{_free_port()}/0"
    with pytest.raises(TargetUnavailable, match=f"cannot reach the example database at {dead}"):
        open_database(dead)


def test_nightly_with_an_unreachable_database_is_a_harness_error(run_cli, tmp_path, strategies):
    """`nightly --database` checks the server before starting any worker: exit 2, no night."""
    strategies(tmp_path)
    dead = f"redis://127.0.0.1:{_free_port()}/0"
    proc = run_cli(["nightly", "--time", "5s", "--database", dead, "--reports",
                    tmp_path / "reports", "--corpus", tmp_path / "corpus"], cwd=tmp_path,
                   timeout=60)
    assert proc.returncode == 2
    assert "cannot reach the example database" in proc.stderr
    assert not (tmp_path / "reports" / "nightly").exists()


def test_nightly_workers_share_the_redis_database(redis_url, run_cli, tmp_path, strategies):
    """`nightly --database redis://...` hands the URL to every worker, which write to Redis."""
    strategies(tmp_path, full=False)
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    proc = run_cli(["nightly", "--time", "4s", "--workers", "2", "--seed", "1", "--no-coverage",
                    "--database", redis_url, "--reports", tmp_path / "reports",
                    "--corpus", tmp_path / "corpus"], cwd=tmp_path)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    (folder,) = (tmp_path / "reports" / "nightly").glob("20*")
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["meta"]["database"] == redis_url
    assert [s["status"] for s in summary["slices"]] == ["done", "done"]
    assert not (folder / "hypothesis-db").exists()           # nothing went to a local directory
    keys = client.keys(b"*")
    assert keys and all(k.startswith(b"nvmefuzz:") for k in keys)
