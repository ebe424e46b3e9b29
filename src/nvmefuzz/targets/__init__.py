"""Targets behind one interface; ``open_target`` builds one from a ``TargetConfig``."""

from __future__ import annotations

from nvmefuzz.errors import TargetUnavailable
from nvmefuzz.targets.base import MigrationOutcome, Target, TargetConfig


def open_target(cfg: TargetConfig) -> Target:
    if cfg.kind == "model":
        from nvmefuzz.targets.model import ModelTarget

        return ModelTarget(cfg)
    if cfg.kind == "qemu":
        raise TargetUnavailable("the qemu target is not part of this build yet")
    raise TargetUnavailable(f"unknown target {cfg.kind!r}; known: model, qemu")


__all__ = ["MigrationOutcome", "Target", "TargetConfig", "open_target"]
