"""qtest reproducers: rendering (pure) and the emitted scripts run on a real QEMU by bash."""

from __future__ import annotations

import subprocess

from click.testing import CliRunner

from nvmefuzz.cli import main
from nvmefuzz.targets import qtest_script as S
from nvmefuzz.targets.base import TargetConfig
from nvmefuzz.trace.schema import Step, Trace, Verdict

ENTRIES = [("line", "outl 0xcf8 0x80002000", False), ("mark", "step 0: enable()", False),
           ("line", "writel 0xc0000014 0x460001", False), ("line", "@settle", False),
           ("line", "@settle", False), ("line", "readl 0xc000001c", False),
           ("mark", "step 1: migrate()", False), ("line", "@migrate completed", False),
           ("line", "clock_set 0x5", True)]


def test_script_has_steps_directives_and_quiet_requests():
    """Marks become comments, repeated @settle collapse, quiet requests get a '!'."""
    text = S.render_script(ENTRIES, "divergence x")
    lines = text.splitlines()
    assert lines[0] == "# nvmefuzz qtest reproducer: divergence x"
    body = [ln for ln in lines if not ln.startswith("#")]
    assert body == ["outl 0xcf8 0x80002000", "writel 0xc0000014 0x460001", "@settle",
                    "readl 0xc000001c", "@migrate completed", "!clock_set 0x5"]
    assert "# --- step 1: migrate()" in lines
    assert '{"execute": "migrate-incoming",' in text        # the migration spelled out


def test_reproducer_command_line_uses_stdio_and_a_tcp_monitor():
    """The target's command line, with qtest on stdio and QMP on a TCP port."""
    argv = S.qemu_argv(["chroot", "/r", "qemu-system-x86_64"], incoming=True)
    line = " ".join(argv)
    assert argv[:3] == ["chroot", "/r", "qemu-system-x86_64"]
    assert "-qtest stdio" in line and "-qmp tcp:127.0.0.1:$PORT,server=on,wait=off" in line
    assert "file=$GUEST/disk.img,format=raw,discard=unmap" in line
    assert line.endswith("-incoming defer") and "unix:" not in line and "-trace" not in line
    assert "-incoming" not in " ".join(S.qemu_argv(["qemu-system-x86_64"], incoming=False))


def test_rendered_driver_is_valid_bash():
    """cmdline.sh parses (bash -n) and creates an image of the target's size."""
    files = S.render(ENTRIES, ENTRIES, binary_argv=["qemu-system-x86_64"], root=None,
                     image_bytes=8 << 20, title="t")
    assert sorted(files) == ["cmdline.sh", "script.qtest", "twin.qtest"]
    assert "truncate -s 8388608" in files["cmdline.sh"]
    res = subprocess.run(["bash", "-n"], input=files["cmdline.sh"], text=True,
                         capture_output=True)
    assert res.returncode == 0, res.stderr


def _emit(tmp_path, steps, verdict=Verdict(), **cfg):
    trace = Trace(target=TargetConfig(kind="qemu", **cfg).to_plain(), campaign="test",
                  seed=0, steps=tuple(steps), verdict=verdict)
    path = tmp_path / "t.cbor"
    path.write_bytes(trace.encode())
    out = tmp_path / "qtest"
    res = CliRunner().invoke(main, ["repro", str(path), "--emit", "qtest", str(out)])
    assert res.exit_code in (0, 1) and (out / "cmdline.sh").exists(), res.output
    return subprocess.run(["bash", str(out / "cmdline.sh")], capture_output=True, text=True,
                          timeout=300)


PASSING = [Step("enable", {}), Step("create_cq", {"qid": 1, "size": 4, "iv": 1}),
           Step("create_sq", {"qid": 1, "size": 4, "cqid": 1}),
           Step("io", {"qid": 1, "opc": 1, "slba": 3, "nlb": 2, "pattern": 5}),
           Step("advance", {"ns": 3_600_000_000_000}), Step("migrate", {}),
           Step("io", {"qid": 1, "opc": 2, "slba": 3, "nlb": 2}),
           Step("consume", {"qid": 1}), Step("aer", {"reap": False}), Step("migrate", {}),
           Step("admin", {"opc": 0x0A, "cdw10": 0x0E, "length": 8})]      # Timestamp


def test_emitted_script_of_a_passing_trace_agrees(qemu_binary, tmp_path):
    """Twin and migrated replay agree, through migrations, a clock hour and a timestamp."""
    res = _emit(tmp_path, PASSING)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "agree" in res.stdout


def test_emitted_script_with_pin_interrupts_agrees(qemu_binary, tmp_path):
    """INTx re-interception after a migration is sent but not compared."""
    res = _emit(tmp_path, PASSING, msix=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_emitted_script_reproduces_the_dmrsl_divergence(qemu_binary, tmp_path):
    """QEMU 11.1's destination reports DMRSL 0 (see docs/qemu-target.md): bash shows it."""
    res = _emit(tmp_path, [Step("enable", {}), Step("migrate", {}),
                           Step("admin", {"opc": 6, "cdw10": 6, "length": 4096})])
    assert res.returncode == 1, res.stdout + res.stderr
    assert "REPRODUCED" in res.stdout and "b64read 0x800000 0x1000" in res.stdout
    assert "at step 2: admin(" in res.stdout


def test_emitted_script_reproduces_a_refused_migration(qemu_binary, tmp_path):
    """QEMU 11.1 refuses to save an I/O completion waiting in a full CQ: bash shows it."""
    steps = [Step("enable", {}), Step("create_cq", {"qid": 1, "size": 2, "ien": 0}),
             Step("create_sq", {"qid": 1, "size": 3, "cqid": 1}),
             Step("io", {"qid": 1, "opc": 1, "slba": 0, "nlb": 1, "pattern": 0}),
             Step("io", {"qid": 1, "opc": 1, "slba": 0, "nlb": 1, "pattern": 0}),
             Step("migrate", {})]
    res = _emit(tmp_path, steps, Verdict("refused", "refused:x", "", 5, -1))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "REPRODUCED (refused)" in res.stdout and "req->ns != NULL" in res.stdout


def test_emit_qtest_needs_a_folder_and_a_qemu_trace(tmp_path):
    """Usage errors: no folder, or a model trace."""
    trace = Trace(target=TargetConfig().to_plain(), campaign="t", seed=0,
                  steps=(Step("enable", {}),))
    path = tmp_path / "m.cbor"
    path.write_bytes(trace.encode())
    runner = CliRunner()
    assert runner.invoke(main, ["repro", str(path), "--emit", "qtest"]).exit_code == 2
    res = runner.invoke(main, ["repro", str(path), "--emit", "qtest", str(tmp_path / "o")])
    assert res.exit_code == 2 and "qemu target" in res.output
