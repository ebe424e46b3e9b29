"""QEMU's nvme device and the block layer's error policies (``werror=``/``rerror=``).

With ``stop`` a device is meant to hold a failed request, pause the VM and retry the request
on ``cont`` -- and then live migration has to carry the held requests (virtio-blk and scsi do).
QEMU 11.1's nvme device accepts the option and does not honour it: the failure goes to the
guest at once, the VM keeps running and nothing is held, so nothing is left for migration to
carry.  These tests pin that; if they fail, QEMU started holding requests and the target and
model need a held-request state.  Faults come from ``blkdebug`` (``qemu_argv.Fault``), once.
"""

from __future__ import annotations

import pytest

from nvmefuzz.fuzz.actions import ACTIONS
from nvmefuzz.host.driver import Host, pattern_bytes
from nvmefuzz.protocol.spec import IoOpcode as IO, Status
from nvmefuzz.targets.base import COMPLETED
from nvmefuzz.targets.qemu_argv import Drive, Fault, drive_spec

ENOSPC, EIO = 28, 5


def _ready(t):
    h = Host(t)
    assert ACTIONS["enable"](h, t, {}) == [("reg/CSTS", {"value": 1})]
    for action, args in (("create_cq", {"qid": 1, "size": 8, "iv": 1}),
                         ("create_sq", {"qid": 1, "size": 8, "cqid": 1})):
        assert ACTIONS[action](h, t, args)[0][1]["status"] == 0
    return h


def _run(h, t, opc, slba=0, pattern=0):
    assert ACTIONS["io"](h, t, {"qid": 1, "opc": opc, "slba": slba, "nlb": 1,
                                "pattern": pattern}) == []
    [(label, fields)] = ACTIONS["consume"](h, t, {"qid": 1})
    return label, fields


def _qmp(t, cmd):
    return t.proc.fast.execute([(cmd, None)])[0]


def test_drive_spec_puts_blkdebug_between_raw_and_the_image():
    spec = drive_spec("/d.img", Drive("werror=stop", (Fault("pwritev", ENOSPC),)))
    assert spec == ("id=drv0,if=none,driver=raw,file.driver=blkdebug,file.image.filename=/d.img"
                    ",file.inject-error.0.event=pwritev,file.inject-error.0.errno=28"
                    ",file.inject-error.0.once=on,discard=unmap,werror=stop")
    assert drive_spec("/d.img") == "id=drv0,if=none,file=/d.img,format=raw,discard=unmap"


@pytest.mark.parametrize("policy, fault, opc, status", [
    ("werror=stop", Fault("pwritev", ENOSPC), IO.WRITE, Status.WRITE_FAULT),
    ("werror=enospc", Fault("pwritev", ENOSPC), IO.WRITE, Status.WRITE_FAULT),
    ("rerror=stop", Fault("read_aio", EIO), IO.READ, Status.UNRECOVERED_READ),
], ids=["werror-stop", "werror-enospc", "rerror-stop"])
def test_a_stop_policy_is_not_honoured_so_nothing_is_held(make_target, policy, fault, opc,
                                                          status):
    t = make_target(drive=Drive(policy, (fault,)))
    h = _ready(t)
    label, fields = _run(h, t, opc, pattern=7)
    assert fields["status"] == status                  # the guest sees the failure at once
    assert _qmp(t, "query-status")["status"] == "running"
    [blk] = [b for b in _qmp(t, "query-block") if b["device"] == "drv0"]
    # devices that honour error policies enable the drive's I/O status (query-block then
    # reports it: "ok", "failed", "nospace"); nvme never does
    assert "io-status" not in blk
    _, again = _run(h, t, opc, pattern=7)               # the fault fires once; nothing retries
    assert again["status"] == 0
    assert t.migrate().kind == COMPLETED                # no held request to carry or refuse
    # the destination's blkdebug rule is fresh: use the other direction there
    if opc == IO.WRITE:
        _, read = _run(h, t, IO.READ)
        assert read["status"] == 0 and read["data"] == pattern_bytes(7, 512)
    else:
        assert _run(h, t, IO.WRITE, slba=3, pattern=9)[1]["status"] == 0


def test_without_a_fault_the_same_drive_options_change_nothing(make_target):
    t = make_target(drive=Drive("werror=stop,rerror=stop"))
    h = _ready(t)
    assert _run(h, t, IO.WRITE, slba=2, pattern=5)[1]["status"] == 0
    label, read = _run(h, t, IO.READ, slba=2)
    assert label == "cqe/io/READ" and read["status"] == 0
    assert read["data"] == pattern_bytes(5, 512)
