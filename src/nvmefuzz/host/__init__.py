"""The host side: a target-neutral NVMe driver (pure: it only calls its bus)."""

from nvmefuzz.host.driver import Bus, Completion, Host, pattern_bytes

__all__ = ["Bus", "Completion", "Host", "pattern_bytes"]
