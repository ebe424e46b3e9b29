"""The reference NVMe controller: pure, deterministic, fully saveable.

``Controller`` is driven by MMIO and ``advance``; ``snapshot``/``restore`` move its state
through a migration ``Profile`` (see ``profiles``).
"""

from nvmefuzz.model.controller import Controller
from nvmefuzz.model.memory import GuestMemory, NamespaceStore

from nvmefuzz.model.state import Config

__all__ = ["Config", "Controller", "GuestMemory", "NamespaceStore"]
