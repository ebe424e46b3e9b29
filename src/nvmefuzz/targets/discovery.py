"""Which targets this machine can run, and the reason when one cannot."""

from __future__ import annotations


def describe() -> list[tuple[str, bool, str]]:
    rows = [("model", True, "in-process reference controller (always available)")]
    rows.append(("qemu", False, "the QEMU target is not built into this version of nvmefuzz"))
    return rows
