"""What each rule of the state machine draws: its arguments' strategies, rule by rule.

How it works
------------
``ARGUMENTS`` maps a rule name (as in a campaign's weights) to the Hypothesis strategies of
its keyword arguments; ``build_machine`` adds the ones that draw from the machine's queue-id
bundles (``create_sq``, ``delete_sq``, ``delete_cq``).  Values repeat in a list to be drawn
more often; each list mixes valid values with deliberately invalid ones (bad queue ids,
sizes, vectors, offsets, opcodes), so a share of every rule's steps is hostile.  The order
of a rule's arguments is the order Hypothesis draws them in, and so part of every example.

Some arguments are only interesting in combination: a Set Features CDW11 means something
different for every Feature Identifier.  Drawing CDW11 from one list for all features makes
most draws meaningless (a DULBE bit sent to the arbitration feature).  ``FEATURE_VALUES``
lists, per FID, the field values worth sending (from the field layout of each feature in the
NVMe Base specification, section 5.27.1), including out-of-range ones; ``feature_values``
adds the generic values every FID also gets.  The state machine draws CDW11 from the list of
the FID it drew, the random walk draws uniformly from the same list (and the same I/O sizes
and enable faults), so both speak the same vocabulary.
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from nvmefuzz.protocol.spec import FeatureId as F, IoOpcode as IO

QIDS = st.sampled_from([1, 2, 3, 4, 1, 2, 0, 65])
SIZES = st.sampled_from([2, 3, 4, 8, 16, 32, 1, 4097])
PAIR_SIZES = st.sampled_from([2, 3, 4, 8, 16, 32])       # valid only: a campaign's own pairs
IO_OPS = st.sampled_from([IO.WRITE, IO.READ, IO.WRITE, IO.READ, IO.FLUSH, IO.WRITE_ZEROES,
                         IO.COMPARE, IO.DATASET_MANAGEMENT, IO.WRITE_UNCORRECTABLE])
#: which recent I/O command a racing one reuses the blocks of (1: the latest, most often)
RECENT = st.sampled_from([1, 1, 1, 1, 2, 3, 4, 8])
NSIDS = st.sampled_from([1, 1, 1, 1, 1, 1, 0, 2, 0xFFFFFFFF, 257])
#: blocks of 512 bytes an I/O command covers: mostly a page or less; 16 and 24 blocks span
#: two to four pages, and from three pages on PRP2 points to a PRP list (24 blocks at the
#: largest offset, 3584, still fit a data window: ``host.layout.MAX_TRANSFER``)
NLB_VALUES = (1, 2, 3, 4, 5, 6, 7, 8, 16, 24)
#: a driver's mistakes at enable, each answered with CSTS.CFS (the controller does not start
#: and only a reset recovers it): a page size above CAP.MPSMAX, an admin SQ off its page, an
#: admin SQ of one entry
ENABLE_FAULTS: dict[str, dict[str, int]] = {
    "mps": {"mps": 15}, "misaligned": {"misalign": 8}, "asqs": {"asqs": 0}}
FAULTS = st.sampled_from([*[""] * 20, *ENABLE_FAULTS])   # "": none (Hypothesis: about 1 in 20)
FIDS = st.sampled_from([0x01, 0x02, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0E,
                        0x16, 0x19, 0x03, 0x7F])


# ---------------------------------------------------------------------- Set Features values
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


def pairs(most: int, least: int = 0) -> SearchStrategy:
    """I/O queue pairs a driver builds: (CQ size, SQ size, IEN, interrupt vector) each."""
    return st.lists(st.tuples(PAIR_SIZES, PAIR_SIZES, st.booleans(), st.sampled_from([0, 1])),
                    min_size=least, max_size=max(most, least))


#: the arguments of every rule that draws nothing from a bundle
ARGUMENTS: dict[str, dict[str, SearchStrategy]] = {
    "enable": {"asqs": st.sampled_from([1, 3, 7, 31]), "acqs": st.sampled_from([1, 3, 7, 31]),
               "fault": FAULTS},
    "reset": {},
    "shutdown": {"shn": st.sampled_from([1, 2])},
    "restart": {"shn": st.sampled_from([0, 0, 1, 2]), "asqs": st.sampled_from([3, 7, 31]),
                "acqs": st.sampled_from([3, 7, 31]), "aer": st.booleans(),
                "fault": FAULTS},
    "register_write": {
        "offset": st.sampled_from([0x00, 0x08, 0x0C, 0x10, 0x18, 0x1C, 0x20, 0x38, 0x1002]),
        "value": st.sampled_from([0, 1, 0xFFFFFFFF, 0x4E564D65, 2, 0x10])},
    "register_read": {"offset": st.sampled_from(
        [0x00, 0x08, 0x0C, 0x10, 0x14, 0x1C, 0x20, 0x24, 0x28, 0x30, 0x1000])},
    "migrate": {"data": st.data(), "looks": st.sampled_from([0, 1, 1, 2]),
                "settle": st.booleans()},
    "create_cq": {
        "qid": QIDS, "size": SIZES, "ien": st.booleans(),
        "iv": st.sampled_from([0, 1, 2, 3, 0, 70]), "pc": st.sampled_from([1, 1, 1, 0]),
        "misalign": st.sampled_from([0, 0, 0, 0, 0, 0, 0, 8])},
    "io": {
        "data": st.data(), "opc": IO_OPS,
        "slba": st.one_of(st.integers(0, 63), st.integers((1 << 14) - 9, (1 << 14) + 1)),
        "nlb": st.sampled_from(NLB_VALUES), "pattern": st.integers(0, 255),
        "offset": st.sampled_from([0, 0, 0, 0, 512, 3584]),
        "ring": st.sampled_from([True, True, True, False]), "nsid": NSIDS,
        "again": st.booleans()},
    "ring_sq": {"data": st.data(), "ahead": st.sampled_from([0, 0, 0, 0, 1, 2])},
    "ring_cq": {"data": st.data()},
    "bad_doorbell": {
        "data": st.data(), "cq": st.booleans(), "qid": st.sampled_from([0, 1, 2, 9, 64])},
    "consume": {"data": st.data(), "limit": st.sampled_from([1, 2, 64, 64]),
                "ring": st.sampled_from([True, True, True, False])},
    "advance": {"ns": st.sampled_from([0, 5_000, 10_000, 20_000, 100_000, 3_600_000_000_000])},
    "aer": {"reap": st.booleans()},
    "identify": {
        "cns": st.sampled_from([0, 1, 2, 3, 5, 6, 7, 8, 0x20]),
        "nsid": st.sampled_from([0, 1, 2, 0xFFFFFFFF])},
    "get_log_page": {
        "lid": st.sampled_from([1, 2, 3, 4, 5, 0x7F]), "rae": st.booleans(),
        "numd": st.sampled_from([127, 15, 1023]), "offset": st.sampled_from([0, 0, 4, 3]),
        "nsid": st.sampled_from([0xFFFFFFFF, 1, 0])},
    "get_features": {
        "fid": FIDS, "sel": st.sampled_from([0, 0, 1, 2, 3, 4]),
        "cdw11": st.sampled_from([0, 1 << 20, 3 << 20, 1]),
        "nsid": st.sampled_from([1, 1, 0, 2])},
    "set_features": {
        "data": st.data(), "fid": FIDS,
        "save": st.sampled_from([False, False, False, True]),
        "pattern": st.integers(0, 255), "nsid": st.sampled_from([1, 0, 2])},
    "temperature_event": {"hi": st.sampled_from([0x100, 0x140, 0x143])},
    "abort": {"data": st.data()},
    "bad_admin": {
        "opc": st.sampled_from([0x18, 0x10, 0x0D, 0x7F, 0xC0, 0x06]),
        "fuse": st.sampled_from([0, 0, 1]), "psdt": st.sampled_from([0, 0, 1])},
    "dbbuf": {"misalign": st.sampled_from([0, 0, 0, 8])},
    "ns_changed": {},
    "hold_io": {"on": st.sampled_from([True, True, False])},
    "read_back": {"data": st.data()},
}
