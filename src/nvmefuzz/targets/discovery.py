"""Which targets this machine can run, and the reason when one cannot.

How it works
------------
The ``qemu`` target needs a ``qemu-system-x86_64`` whose nvme device is migratable, i.e.
QEMU >= 11.1 (earlier versions mark hw/nvme unmigratable).  Candidates, first match wins:

1. ``NVMEFUZZ_QEMU``: a binary path, or ``chroot:DIR`` for a root file system holding one
   (``scripts/provision-qemu`` makes such a chroot with debootstrap, nothing is built);
2. ``qemu-system-x86_64`` on PATH;
3. the chroot at ``NVMEFUZZ_QEMU_ROOT`` (default ``/var/cache/nvmefuzz/qemu-root``).

Each candidate is asked for ``--version`` (bounded by a timeout); a rejected one keeps its
reason ("7.2: nvme not migratable before 11.1").  ``find_qemu`` returns the first usable
``QemuBinary`` or raises ``TargetUnavailable`` with every reason; ``describe`` gives the rows
``nvmefuzz targets`` prints.  Results are cached per process.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess

import attrs

from nvmefuzz.errors import TargetUnavailable

MIN_VERSION = (11, 1)
DEFAULT_ROOT = "/var/cache/nvmefuzz/qemu-root"
BINARY = "qemu-system-x86_64"


@attrs.frozen
class QemuBinary:
    """How to run QEMU: ``argv`` prefix, and the chroot (``root``) its paths live in."""

    argv: tuple[str, ...]
    version: tuple[int, int, int]
    origin: str                   # "NVMEFUZZ_QEMU", "PATH" or "chroot"
    root: str | None = None       # chroot directory, or None for a host binary

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))

    def host_path(self, guest_path: str) -> str:
        """Where a path QEMU sees (inside the chroot) is on the host."""
        return guest_path if self.root is None else os.path.join(self.root, guest_path.lstrip("/"))

    def guest_path(self, host_path: str) -> str:
        """The path QEMU must be given for a host path (which must be inside the chroot)."""
        if self.root is None:
            return host_path
        rel = os.path.relpath(host_path, self.root)
        if rel.startswith(".."):
            raise TargetUnavailable(f"{host_path} is outside the QEMU chroot {self.root}")
        return "/" + rel

    def tmp_dir(self) -> str | None:
        """Where private instance folders go (inside the chroot when chrooted)."""
        return None if self.root is None else os.path.join(self.root, "tmp")


def parse_version(text: str) -> tuple[int, int, int] | None:
    m = re.search(r"version (\d+)\.(\d+)(?:\.(\d+))?", text)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)) if m else None


def _probe(argv: tuple[str, ...], origin: str, root: str | None) -> QemuBinary | str:
    """A usable binary, or the reason it is not."""
    try:
        res = subprocess.run([*argv, "--version"], capture_output=True, text=True, timeout=20,
                             stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return "not found"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run: {exc}"
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["no output"]
        return f"--version failed (exit {res.returncode}): {tail[0]}"
    version = parse_version(res.stdout)
    if version is None:
        return f"unrecognised --version output {res.stdout.strip()[:60]!r}"
    text = ".".join(map(str, version))
    distro = re.search(r"\((Debian [^)]*)\)", res.stdout)
    where = f" ({distro.group(1)})" if distro else ""
    if version[:2] < MIN_VERSION:
        return (f"{text}{where}: nvme not migratable before "
                f"{'.'.join(map(str, MIN_VERSION))}")
    return QemuBinary(argv, version, origin, root)


def _chroot(root: str, origin: str) -> QemuBinary | str:
    if not os.path.isdir(root):
        return f"no chroot at {root} (run scripts/provision-qemu)"
    if not os.path.exists(os.path.join(root, "usr/bin", BINARY)):
        return f"{root} holds no {BINARY}"
    if os.geteuid() != 0:
        return f"chroot {root} needs root"
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    return _probe((chroot, root, BINARY), origin, root)


def candidates() -> list[tuple[str, QemuBinary | str]]:
    """Every candidate in order of preference, with the binary or the rejection reason."""
    out: list[tuple[str, QemuBinary | str]] = []
    env = os.environ.get("NVMEFUZZ_QEMU")
    if env:
        if env.startswith("chroot:"):
            out.append((f"NVMEFUZZ_QEMU={env}", _chroot(env[len("chroot:"):], "NVMEFUZZ_QEMU")))
        else:
            out.append((f"NVMEFUZZ_QEMU={env}", _probe((env,), "NVMEFUZZ_QEMU", None)))
        return out                  # an explicit choice is never silently replaced
    system = shutil.which(BINARY)
    out.append((f"PATH {system or BINARY}",
                _probe((system,), "PATH", None) if system else "not on PATH"))
    root = os.environ.get("NVMEFUZZ_QEMU_ROOT", DEFAULT_ROOT)
    out.append((f"chroot {root}", _chroot(root, "chroot")))
    return out


@functools.lru_cache(maxsize=None)
def _find() -> tuple[QemuBinary | None, tuple[str, ...]]:
    reasons = []
    for name, found in candidates():
        if isinstance(found, QemuBinary):
            return found, tuple(reasons)
        reasons.append(f"{name}: {found}")
    return None, tuple(reasons)


def find_qemu() -> QemuBinary:
    """The QEMU to use, or ``TargetUnavailable`` saying why every candidate was rejected."""
    found, reasons = _find()
    if found is None:
        raise TargetUnavailable("no usable QEMU >= 11.1: " + "; ".join(reasons))
    return found


def reset_cache() -> None:
    _find.cache_clear()


def describe() -> list[tuple[str, bool, str]]:
    rows = [("model", True, "in-process reference controller (always available)")]
    found, reasons = _find()
    if found is not None:
        how = " ".join(found.argv)
        detail = f"QEMU {found.version_text} via {found.origin}: {how}"
        if reasons:
            detail += " (rejected before it: " + "; ".join(reasons) + ")"
        rows.append(("qemu", True, detail))
    else:
        rows.append(("qemu", False, "; ".join(reasons) + " -- run scripts/provision-qemu"))
    return rows
