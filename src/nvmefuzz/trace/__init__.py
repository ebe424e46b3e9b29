"""Traces (what an example did) and the corpus of shrunk findings."""

from nvmefuzz.trace.schema import PASS, Step, Trace, Verdict

__all__ = ["PASS", "Step", "Trace", "Verdict"]
