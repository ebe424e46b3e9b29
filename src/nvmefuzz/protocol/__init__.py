"""Pure NVMe wire formats: register map, numbers, queue entries, host-memory structures.

Nothing in this package keeps state, reads a clock or touches I/O.
"""

from nvmefuzz.protocol import regs, spec, structures
from nvmefuzz.protocol.queues import CQE, CQE_SIZE, SQE, SQE_SIZE

__all__ = ["CQE", "CQE_SIZE", "SQE", "SQE_SIZE", "regs", "spec", "structures"]
