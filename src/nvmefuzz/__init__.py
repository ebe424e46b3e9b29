"""nvmefuzz: a stateful property-based fuzzer for NVMe save/restore correctness."""

__version__ = "0.1.0"
