"""QEMU's command line for the qemu target: pure, so tests and emitted scripts share it.

How it works
------------
``build_argv`` gives ``-run-with exit-with-parent=on`` (``LIFE``), ``-accel qtest`` with a
qtest socket QEMU connects to, a QMP socket it listens on (and a second one for the fast
path), the trace events the settle logic reads (``trace_args``), a 64 MiB q35 machine with
no default devices and no PIT (``MACHINE``), and one ``nvme`` device at bus 0 device 4 on
drive ``drv0``, reporting the model's firmware revision (``DEVICE``).  The drive
(``drive_spec``) is the raw image, passing discards down (``discard=unmap``): the controller
reports DLFEAT=1 (deallocated blocks read as zeroes), which QEMU only honours when Dataset
Management can really deallocate.  A ``Drive`` adds block-layer options (``werror=stop``,
...) and ``Fault`` rules: QEMU's ``blkdebug`` driver goes between the raw format and the
image and fails the first request of a block-layer event (``pwritev``, ``read_aio``,
``flush_to_disk``, ...) with an errno, once per rule.  Every path is as QEMU sees it (inside
the chroot when it runs chrooted).
"""

from __future__ import annotations

import attrs

from nvmefuzz.model.identify import FIRMWARE_REVISION
from nvmefuzz.targets.discovery import QemuBinary

NVME_SLOT = 4
#: ``-device nvme`` properties every process gets: the model's firmware revision (QEMU's
#: default is its own version, which would make Identify differ by build)
DEVICE = f"firmware-version={FIRMWARE_REVISION.decode()}"
#: no PIT: nothing programs it under qtest, yet it ticks 18.2 times a second of virtual time,
#: so an hour-long clock step ran 65,536 timer callbacks (40-65 ms) and, with IOAPIC lines
#: intercepted, sent some 131,000 IRQ messages; no NVMe state depends on it
MACHINE = ("-machine", "q35,pit=off", "-m", "64M")

#: QEMU exits when the process that started it does, even by SIGKILL (``qemu_life``)
LIFE = ("-run-with", "exit-with-parent=on")

#: the trace events the settle logic counts, and the register reads that mark its rounds
#: (see ``targets.qemu``)
TRACE_EVENTS = ("pci_nvme_io_cmd", "pci_nvme_admin_cmd", "pci_nvme_enqueue_req_completion",
                "pci_nvme_mmio_read")


@attrs.frozen
class Fault:
    """One ``blkdebug`` rule: the first request of block-layer ``event`` fails with
    ``errno`` (5 EIO, 28 ENOSPC, ...)."""

    event: str
    errno: int


@attrs.frozen
class Drive:
    """How drive ``drv0`` differs from the plain raw image: extra ``-drive`` options
    (``"werror=stop,rerror=stop"``) and injected faults."""

    props: str = ""
    faults: tuple[Fault, ...] = ()


PLAIN = Drive()


def drive_spec(image: str, drive: Drive = PLAIN) -> str:
    """The ``-drive`` option for ``drive`` over ``image``."""
    if drive.faults:
        rules = "".join(f",file.inject-error.{i}.event={f.event}"
                        f",file.inject-error.{i}.errno={f.errno}"
                        f",file.inject-error.{i}.once=on" for i, f in enumerate(drive.faults))
        base = f"driver=raw,file.driver=blkdebug,file.image.filename={image}{rules}"
    else:
        base = f"file={image},format=raw"
    return f"id=drv0,if=none,{base},discard=unmap" + (f",{drive.props}" if drive.props else "")


def trace_args(trace_file: str) -> list[str]:
    """``-trace`` options enabling ``TRACE_EVENTS`` into ``trace_file`` (one option each:
    QEMU keeps only the last ``enable=`` of a single option)."""
    out: list[str] = []
    for ev in TRACE_EVENTS[:-1]:
        out += ["-trace", f"enable={ev}"]
    return out + ["-trace", f"enable={TRACE_EVENTS[-1]},file={trace_file}"]


def build_argv(binary: QemuBinary, qtest_sock: str, qmp_sock: str, image: str, *,
               serial: str = "nvmefuzz", incoming: bool = False,
               fast_qmp_sock: str | None = None, device_props: str = "",
               drive: Drive = PLAIN, trace_file: str | None = None) -> list[str]:
    """QEMU's command line; socket and image paths are as QEMU sees them."""
    fast = ["-qmp", f"unix:{fast_qmp_sock},server=on,wait=off"] if fast_qmp_sock else []
    trace = trace_args(trace_file) if trace_file else []
    argv = [*binary.argv, *LIFE, "-accel", "qtest", "-qtest", f"unix:{qtest_sock}",
            "-qtest-log", "none", "-qmp", f"unix:{qmp_sock},server=on,wait=off", *fast,
            *trace, "-display", "none", "-nodefaults", *MACHINE,
            "-drive", drive_spec(image, drive),
            "-device", f"nvme,drive=drv0,serial={serial},addr={NVME_SLOT:02x}.0,{DEVICE}"
            + (f",{device_props}" if device_props else "")]
    if incoming:
        argv += ["-incoming", "defer"]
    return argv
