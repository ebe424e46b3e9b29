"""Targets behind one interface; ``open_target`` builds one from a ``TargetConfig``."""

from __future__ import annotations

from nvmefuzz.errors import TargetUnavailable
from nvmefuzz.targets.base import MigrationOutcome, Target, TargetConfig


def open_target(cfg: TargetConfig, migrates: bool = True) -> Target:
    """A target for ``cfg``; ``migrates=False`` for one that will never be migrated (a
    twin, a side of ``nvmefuzz diff``), which then keeps no destinations booted for it."""
    if cfg.kind == "model":
        from nvmefuzz.targets.model import ModelTarget

        return ModelTarget(cfg)
    if cfg.kind == "qemu":
        from nvmefuzz.targets.discovery import find_qemu
        from nvmefuzz.targets.qemu import QemuTarget

        return QemuTarget(cfg, find_qemu(),     # TargetUnavailable says why when missing
                          pool_size=1 if migrates else 0)
    raise TargetUnavailable(f"unknown target {cfg.kind!r}; known: model, qemu")


__all__ = ["MigrationOutcome", "Target", "TargetConfig", "open_target"]
