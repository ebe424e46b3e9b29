"""The regression corpus: shrunk traces on disk, one file per finding.

Files live under ``corpus/<profile>/`` and are named ``<slug>-<sha256(identity)[:10]>.cbor``,
the identity being the signature (verdict class plus first differing observation) and, when
the verdict names one, the root cause (``Verdict.identity``): two findings with the same
identity collapse into one file, and when a second trace arrives for a known one the shorter
is kept.  Writes are atomic (a temporary file in the same directory, fsync, then rename), so a
killed run never leaves half a trace.  ``load_all`` reports unreadable files instead of
failing on them.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

import attrs

from nvmefuzz.errors import TraceFormatError
from nvmefuzz.trace.schema import Trace


def slug(text: str, limit: int = 60) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:limit] or "trace"


def path_for(root: Path, trace: Trace) -> Path:
    sig = trace.verdict.signature or "pass"
    digest = hashlib.sha256(trace.verdict.identity.encode() or b"pass").hexdigest()[:10]
    return Path(root) / slug(trace.profile) / f"{slug(sig)}-{digest}.cbor"


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)              # mkstemp makes 0600; reports are read by others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> Trace:
    try:
        blob = Path(path).read_bytes()
    except OSError as exc:
        raise TraceFormatError(f"{path}: cannot read: {exc}") from None
    try:
        return Trace.decode(blob)
    except TraceFormatError as exc:
        raise TraceFormatError(f"{path}: {exc}") from None


def save(root: Path, trace: Trace) -> tuple[Path, bool]:
    """Store ``trace``; returns its path and whether the file is new or got shorter."""
    path = path_for(root, trace)
    if path.exists():
        try:
            old = load(path)
            if len(old.steps) <= len(trace.steps):
                return path, False
        except TraceFormatError:
            pass                                   # replace an unreadable file
    atomic_write(path, trace.encode())
    return path, True


@attrs.frozen
class Entry:
    path: Path
    trace: Trace | None
    error: str = ""


def files(root: Path) -> list[Path]:
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*.cbor") if not p.name.startswith(".tmp-"))


def load_all(root: Path) -> list[Entry]:
    out = []
    for p in files(root):
        try:
            out.append(Entry(p, load(p)))
        except TraceFormatError as exc:
            out.append(Entry(p, None, str(exc)))
    return out
