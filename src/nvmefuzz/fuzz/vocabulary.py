"""Argument values that mean something to the controller, shared by every step generator.

How it works
------------
Some arguments are only interesting in combination: a Set Features CDW11 means something
different for every Feature Identifier.  Drawing CDW11 from one list for all features makes
most draws meaningless (a DULBE bit sent to the arbitration feature).  ``FEATURE_VALUES``
lists, per FID, the field values worth sending (from the field layout of each feature in the
NVMe Base specification, section 5.27.1), including out-of-range ones; ``feature_values``
adds the generic values every FID also gets.  The state machine draws CDW11 from the list of
the FID it drew, the random walk draws uniformly from the same list, so both speak the same
vocabulary.
"""

from __future__ import annotations

from nvmefuzz.protocol.spec import FeatureId as F

#: Features whose value travels in a data buffer, and the buffer's length
FEATURE_DATA = {F.TIMESTAMP: 8, F.HOST_BEHAVIOR_SUPPORT: 512}
#: Features that are namespace specific: Set and Get Features name a namespace
NS_SPECIFIC = frozenset({F.ERROR_RECOVERY})
#: CDW11 values sent to any feature
GENERIC = (0, 1, 0xFFFF, 0xFFFFFFFF)
THSEL_UNDER = 1 << 20
TMPSEL_1 = 1 << 16
DULBE = 1 << 16

FEATURE_VALUES: dict[int, tuple[int, ...]] = {
    F.ARBITRATION: (7, 0x03020107, 0x00FF00FF),               # AB, LPW, MPW, HPW
    F.POWER_MANAGEMENT: (0x20, 0x1F),                          # WH, PS
    F.TEMPERATURE_THRESHOLD: (0x100, 0x150, 0x157, 0x160,      # TMPTH, over (THSEL 0)
                              THSEL_UNDER | 0x100, THSEL_UNDER | 0x150,   # under
                              TMPSEL_1 | 0x100, 2 << 20 | 0x100, 3 << 20),
    F.ERROR_RECOVERY: (0x10, DULBE, DULBE | 0x10),             # TLER, DULBE
    F.VOLATILE_WRITE_CACHE: (0, 1),                            # WCE
    F.NUMBER_OF_QUEUES: (0x00030003, 0x00FF00FF, 0xFFFF0000),  # NSQR, NCQR
    F.INTERRUPT_COALESCING: (0x0105, 0xFF00),                  # THR, TIME
    F.INTERRUPT_VECTOR_CONFIG: (0x10001, 0x10000, 0x2),        # CD, IV
    F.WRITE_ATOMICITY: (1,),                                   # DN
    F.ASYNC_EVENT_CONFIG: (0x2, 0x100, 0x1FF, 0x3FF),          # SMART bits, NS attribute
    F.TIMESTAMP: (),                                           # data buffer
    F.HOST_BEHAVIOR_SUPPORT: (),                               # data buffer
    F.COMMAND_SET_PROFILE: (0x1,),                             # IOCSCI
}


def feature_values(fid: int) -> tuple[int, ...]:
    """The CDW11 values worth sending with Set Features ``fid`` (an unknown FID: generic)."""
    return tuple(dict.fromkeys(FEATURE_VALUES.get(fid, ()) + GENERIC))
