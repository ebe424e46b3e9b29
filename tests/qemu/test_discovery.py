"""QEMU discovery and the command line: no QEMU needed."""

from __future__ import annotations

import os
import stat

import pytest

from nvmefuzz.errors import TargetUnavailable
from nvmefuzz.targets import discovery
from nvmefuzz.targets.qemu_argv import build_argv


@pytest.fixture
def fake_qemu(tmp_path, monkeypatch):
    def make(version_line: str, rc: int = 0):
        path = tmp_path / "qemu-system-x86_64"
        path.write_text(f"#!/bin/sh\necho '{version_line}'\nexit {rc}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv("NVMEFUZZ_QEMU", str(path))
        discovery.reset_cache()
        return str(path)
    yield make
    discovery.reset_cache()


def test_parse_version():
    debian = "QEMU emulator version 11.1.3 (Debian 1:11.1.3+ds-1)"
    assert discovery.parse_version(debian) == (11, 1, 3)
    assert discovery.parse_version("QEMU emulator version 7.2.0") == (7, 2, 0)
    assert discovery.parse_version("nonsense") is None


def test_old_qemu_is_rejected_with_its_version(fake_qemu):
    fake_qemu("QEMU emulator version 7.2.15 (Debian 1:7.2+dfsg-7+deb12u7)")
    with pytest.raises(TargetUnavailable, match=r"7\.2\.15 \(Debian .*\): nvme not migratable"):
        discovery.find_qemu()
    row = dict((n, (ok, d)) for n, ok, d in discovery.describe())["qemu"]
    assert row[0] is False and "nvme not migratable before 11.1" in row[1]


def test_new_enough_qemu_is_used(fake_qemu):
    path = fake_qemu("QEMU emulator version 11.1.3")
    found = discovery.find_qemu()
    assert found.argv == (path,) and found.version == (11, 1, 3) and found.root is None
    assert dict((n, ok) for n, ok, _ in discovery.describe())["qemu"] is True


def test_broken_binary_reason(fake_qemu):
    fake_qemu("boom", rc=3)
    with pytest.raises(TargetUnavailable, match="exit 3"):
        discovery.find_qemu()


def test_missing_chroot_reason(monkeypatch, tmp_path):
    monkeypatch.setenv("NVMEFUZZ_QEMU", f"chroot:{tmp_path / 'none'}")
    discovery.reset_cache()
    try:
        with pytest.raises(TargetUnavailable, match="no chroot at"):
            discovery.find_qemu()
    finally:
        discovery.reset_cache()


def test_chroot_paths_map_both_ways():
    b = discovery.QemuBinary(("chroot", "/r", "qemu"), (11, 1, 3), "chroot", "/r")
    assert b.guest_path("/r/tmp/x/disk.img") == "/tmp/x/disk.img"
    assert b.host_path("/tmp/x") == os.path.join("/r", "tmp/x")
    with pytest.raises(TargetUnavailable):
        b.guest_path("/elsewhere/disk.img")


def test_argv_has_one_nvme_on_q35_with_qtest_and_qmp():
    b = discovery.QemuBinary(("qemu-system-x86_64",), (11, 1, 3), "PATH")
    argv = build_argv(b, "/t/q.sock", "/t/m.sock", "/t/disk.img", incoming=True)
    line = " ".join(argv)
    for part in ("-accel qtest", "-qtest unix:/t/q.sock", "-qtest-log none",
                 "-qmp unix:/t/m.sock,server=on,wait=off", "-display none", "-nodefaults",
                 "-machine q35,pit=off", "-m 64M",
                 "-drive id=drv0,if=none,file=/t/disk.img,format=raw",
                 "-device nvme,drive=drv0,serial=nvmefuzz,addr=04.0,firmware-version=1.0",
                 "-incoming defer"):
        assert part in line
    assert "-incoming" not in build_argv(b, "/q", "/m", "/d")
