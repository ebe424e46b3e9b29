"""Targets behind one interface; ``open_target`` builds one from a ``TargetConfig``."""

from __future__ import annotations

from nvmefuzz.errors import TargetUnavailable
from nvmefuzz.targets.base import MigrationOutcome, Target, TargetConfig


def open_target(cfg: TargetConfig) -> Target:
    if cfg.kind == "model":
        from nvmefuzz.targets.model import ModelTarget

        return ModelTarget(cfg)
    if cfg.kind == "qemu":
        from nvmefuzz.targets.discovery import find_qemu
        from nvmefuzz.targets.qemu import QemuTarget

        return QemuTarget(cfg, find_qemu())     # TargetUnavailable says why when missing
    raise TargetUnavailable(f"unknown target {cfg.kind!r}; known: model, qemu")


__all__ = ["MigrationOutcome", "Target", "TargetConfig", "open_target"]
