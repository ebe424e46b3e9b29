"""The comparator: difference labels, waivers and the canonical completion order."""

from __future__ import annotations

from nvmefuzz.fuzz.compare import WAIVERS, Comparator, canonical_order, first_difference
from nvmefuzz.protocol.queues import CQE


def cqe(label: str, cid: int, sqid: int = 1, status: int = 0, sqhd: int = 0, **extra):
    """One completion observation as actions.completion_obs builds it."""
    fields = {"sqid": sqid, "cid": cid, "status": status, "dw0": 0, "dw1": 0, "sqhd": sqhd,
              "phase": 1, **extra}
    return (label, fields)


def irq(*vectors: int):
    """An interrupt observation carrying MSI-X messages for ``vectors``."""
    return ("irq", {"events": tuple(("msix", v) for v in vectors)})


def smart(**changes: int) -> bytes:
    """A 512-byte SMART log with the bytes at the given offsets (``o<offset>``) changed."""
    data = bytearray(512)
    for key, value in changes.items():
        data[int(key[1:])] = value
    return bytes(data)


SMART_LABEL = "cqe/admin/GET_LOG_PAGE/lid=0x02"


# ---------------------------------------------------------------------- first_difference
def test_equal_lists_have_no_difference():
    """Identical observation lists compare equal."""
    obs = [cqe("cqe/io/READ", 1), irq(1)]
    assert first_difference(obs, list(obs)) is None
    assert first_difference([], []) is None


def test_same_label_names_the_differing_field():
    """Two observations with one label differ at 'label/field'."""
    diff = first_difference([cqe("cqe/io/READ", 1)], [cqe("cqe/io/READ", 1, status=0x281)])
    assert diff is not None
    assert diff.label == "cqe/io/READ/status"
    assert diff.twin["status"] == 0 and diff.mig["status"] == 0x281
    assert diff.drop_twin and diff.drop_mig


def test_data_difference_names_the_structure_field():
    """A data difference inside a known log layout names the field, else the offset."""
    a, b = smart(), smart(o1=7)
    diff = first_difference([cqe(SMART_LABEL, 2, sqid=0, data=a)],
                            [cqe(SMART_LABEL, 2, sqid=0, data=b)])
    assert diff.label == f"{SMART_LABEL}/data.temperature"
    diff = first_difference([cqe("cqe/admin/GET_LOG_PAGE/lid=0x04", 2, data=bytes(8))],
                            [cqe("cqe/admin/GET_LOG_PAGE/lid=0x04", 2,
                                 data=bytes(3) + b"x" + bytes(4))])
    assert diff.label == "cqe/admin/GET_LOG_PAGE/lid=0x04/data@0x3"


def test_blocks_read_differ_as_one_field_wherever_they_first_differ():
    """Data an I/O command read is signed ``data``, whichever block differs first."""
    labels = {first_difference([cqe("cqe/io/READ", 1, data=bytes(4096))],
                               [cqe("cqe/io/READ", 1, data=bytes(at) + b"x" +
                                    bytes(4095 - at))]).label for at in (0, 0x400, 0xA00)}
    assert labels == {"cqe/io/READ/data"}


def test_extra_observation_on_the_migrated_side():
    """An observation only the migrated side made is 'label/extra'."""
    diff = first_difference([cqe("cqe/io/WRITE", 1)], [cqe("cqe/io/WRITE", 1), irq(1)])
    assert diff.label == "irq/extra"
    assert diff.twin is None and diff.mig == {"events": (("msix", 1),)}
    assert not diff.drop_twin and diff.drop_mig


def test_missing_observation_on_the_migrated_side():
    """An observation only the twin made is 'label/missing'."""
    diff = first_difference([irq(0), cqe("cqe/admin/IDENTIFY/cns=0x01", 3, sqid=0)], [irq(0)])
    assert diff.label == "cqe/admin/IDENTIFY/cns=0x01/missing"
    assert diff.mig is None and diff.drop_twin and not diff.drop_mig


def test_swapped_observations_are_an_order_difference():
    """The same observations in another order give 'label/order'."""
    a, b = cqe("cqe/io/READ", 1), ("reg/CSTS", {"value": 1})
    diff = first_difference([a, b], [b, a])
    assert diff.label == "cqe/io/READ/order"


# ---------------------------------------------------------------------- every difference
def test_a_step_reports_every_observation_that_differed_first_first():
    """A lost completion shows as its missing interrupt and its missing CQE: both are
    reported, in the order the guest saw them, and the walk goes on past them."""
    posted = ("posted/io", {"qid": 1, "cqes": ((1, 0, 0, 0, 0),)})
    twin = [irq(1), posted, ("reg/CSTS", {"v": 1})]
    comp = Comparator()
    found = comp.differences(twin, [("reg/CSTS", {"v": 2})])
    assert [d.label for d in found] == ["irq/missing", "posted/io/missing", "reg/CSTS/v"]
    assert comp.check(twin, [("reg/CSTS", {"v": 2})]) == found[0]
    assert comp.differences(twin, list(twin)) == [] and comp.check(twin, list(twin)) is None


def test_waived_differences_are_counted_not_reported_wherever_they_are():
    comp = Comparator((WAIVERS["spurious-interrupt"],))
    twin = [irq(1), ("posted/io", {"qid": 1, "cqes": ((1, 0, 0, 0, 0),)})]
    found = comp.differences(twin, [irq(1, 2)])
    assert [d.label for d in found] == ["posted/io/missing"]
    found = comp.differences([("reg/CSTS", {"v": 1})], [("reg/CSTS", {"v": 2}), irq(3)])
    assert [d.label for d in found] == ["reg/CSTS/v"]
    assert comp.suppressed["spurious-interrupt"] == 2


# ---------------------------------------------------------------------- waivers
def test_unwaived_comparator_reports_spurious_interrupts():
    """Without the waiver an extra interrupt is a difference."""
    comp = Comparator()
    assert comp.check([], [irq(1)]).label == "irq/extra"
    assert not comp.suppressed


def test_spurious_interrupt_waives_extra_interrupts_and_counts():
    """spurious-interrupt suppresses migrated-side extra interrupts and counts each one."""
    comp = Comparator((WAIVERS["spurious-interrupt"],))
    assert comp.check([], [irq(1)]) is None
    assert comp.check([irq(1)], [irq(1, 1)]) is None
    assert comp.check([cqe("cqe/io/READ", 4)], [irq(2), cqe("cqe/io/READ", 4)]) is None
    assert comp.suppressed["spurious-interrupt"] == 3


def test_spurious_interrupt_never_waives_a_missing_interrupt():
    """An interrupt the twin raised and the migrated side did not is always a finding."""
    comp = Comparator((WAIVERS["spurious-interrupt"],))
    assert comp.check([irq(1)], []).label == "irq/missing"
    assert comp.check([irq(1, 2)], [irq(1)]).label == "irq/events"
    assert comp.check([irq(1)], [irq(2)]).label == "irq/events"
    assert comp.suppressed["spurious-interrupt"] == 0


def test_spurious_interrupt_does_not_hide_a_later_difference():
    """After waiving an extra interrupt the comparator still reports what follows."""
    comp = Comparator((WAIVERS["spurious-interrupt"],))
    diff = comp.check([irq(1), cqe("cqe/io/READ", 1)],
                      [irq(1, 1), cqe("cqe/io/READ", 1, status=2)])
    assert diff.label == "cqe/io/READ/status"
    assert comp.suppressed["spurious-interrupt"] == 1


def test_spurious_interrupt_covers_only_interrupts():
    """The interrupt waiver does not cover an extra completion."""
    comp = Comparator((WAIVERS["spurious-interrupt"],))
    assert comp.check([], [cqe("cqe/io/READ", 1)]).label == "cqe/io/READ/extra"


def test_smart_waiver_covers_only_the_io_counters():
    """smart-io-counters waives SMART bytes 32..95, nothing else."""
    comp = Comparator((WAIVERS["smart-io-counters"],))
    twin = [cqe(SMART_LABEL, 1, sqid=0, data=smart())]
    for off in (32, 47, 48, 64, 80, 95):
        mig = [cqe(SMART_LABEL, 1, sqid=0, data=smart(**{f"o{off}": 1}))]
        assert comp.check(twin, mig) is None, off
    assert comp.suppressed["smart-io-counters"] == 6
    for off, field in ((0, "critical_warning"), (1, "temperature"), (27, None), (28, None),
                       (96, "ctrl_busy_time"), (511, None)):
        mig = [cqe(SMART_LABEL, 1, sqid=0, data=smart(**{f"o{off}": 1}))]
        diff = comp.check(twin, mig)
        assert diff is not None, off
        assert diff.label == f"{SMART_LABEL}/" + (f"data.{field}" if field else f"data@{off:#x}")
    both = [cqe(SMART_LABEL, 1, sqid=0, data=smart(o40=1, o2=1))]
    assert comp.check(twin, both).label == f"{SMART_LABEL}/data.temperature"
    spread = [cqe(SMART_LABEL, 1, sqid=0, data=smart(o31=1, o95=1))]
    assert comp.check(twin, spread).label == f"{SMART_LABEL}/data@0x1f"
    assert comp.suppressed["smart-io-counters"] == 6


def test_smart_data_read_at_a_log_offset_is_judged_where_it_lies_in_the_log():
    """Read at offset 4 (``at``), data byte 28 is log byte 32 (Data Units Read): waived, and
    named as that field when no waiver applies; data byte 24 is reserved log byte 28."""
    twin = [cqe(SMART_LABEL, 1, sqid=0, data=smart()[:508], at=4)]
    counter = [cqe(SMART_LABEL, 1, sqid=0, data=smart(o28=1)[:508], at=4)]
    reserved = [cqe(SMART_LABEL, 1, sqid=0, data=smart(o24=1)[:508], at=4)]
    waived = Comparator((WAIVERS["smart-io-counters"],))
    assert waived.check(twin, counter) is None
    assert waived.check(twin, reserved).label == f"{SMART_LABEL}/data@0x1c"
    strict = Comparator(())
    assert strict.check(twin, counter).label == f"{SMART_LABEL}/data.data_units_read"


def test_smart_waiver_keeps_other_fields_of_the_completion():
    """A SMART completion whose counters differ still diverges if its status or DW0 differs."""
    comp = Comparator((WAIVERS["smart-io-counters"],))
    twin = [cqe(SMART_LABEL, 1, sqid=0, data=smart())]
    mig = [cqe(SMART_LABEL, 1, sqid=0, status=0x2, data=smart(o33=5))]
    diff = comp.check(twin, mig)
    assert diff is not None
    assert diff.label.startswith(f"{SMART_LABEL}/data.")
    assert diff.twin["status"] == 0 and diff.mig["status"] == 2
    assert comp.suppressed["smart-io-counters"] == 0


def test_smart_waiver_ignores_other_logs():
    """The SMART waiver does not apply to other log pages."""
    comp = Comparator((WAIVERS["smart-io-counters"],))
    label = "cqe/admin/GET_LOG_PAGE/lid=0x01"
    diff = comp.check([cqe(label, 1, sqid=0, data=smart())],
                      [cqe(label, 1, sqid=0, data=smart(o40=1))])
    assert diff.label == f"{label}/data@0x28"


# ---------------------------------------------------------------------- canonical order
def test_canonical_order_forgets_order_within_one_step():
    """Completions seen in one step compare equal in any order, SQHD ignored."""
    a = cqe("cqe/io/READ", 1, sqid=1, sqhd=3)
    b = cqe("cqe/io/WRITE", 7, sqid=1, sqhd=4)
    c = cqe("cqe/io/READ", 2, sqid=2, sqhd=1)
    one, other = [c, b, a, irq(1)], [a, cqe("cqe/io/WRITE", 7, sqid=1, sqhd=3), c, irq(1)]
    assert first_difference(one, other) is not None
    assert canonical_order(one) == canonical_order(other)
    out = canonical_order(one)
    assert [(f["sqid"], f["cid"]) for _, f in out[:3]] == [(1, 1), (1, 7), (2, 2)]
    assert all("sqhd" not in f for _, f in out[:3])
    assert out[3] == irq(1)


def test_canonical_order_keeps_real_differences():
    """Canonical ordering does not hide a differing status."""
    one = [cqe("cqe/io/READ", 1), cqe("cqe/io/READ", 2)]
    other = [cqe("cqe/io/READ", 2), cqe("cqe/io/READ", 1, status=4)]
    diff = first_difference(canonical_order(one), canonical_order(other))
    assert diff.label == "cqe/io/READ/status"


def test_canonical_order_keeps_separate_looks_apart():
    """Completions separated by another observation are never merged into one run."""
    a, b = cqe("cqe/io/READ", 1), cqe("cqe/io/READ", 2)
    look = ("reg/CSTS", {"value": 1})
    assert canonical_order([b, look, a]) != canonical_order([a, look, b])
    assert first_difference(canonical_order([b, look, a]),
                            canonical_order([a, look, b])) is not None


def test_completion_of_a_later_step_cannot_move_earlier():
    """Per-step canonical order: a completion the twin saw a step later is still a finding."""
    a, b = cqe("cqe/io/READ", 1), cqe("cqe/io/WRITE", 2)
    twin_steps = [[a], [b]]
    mig_steps = [[a, b], []]
    diffs = [first_difference(canonical_order(t), canonical_order(m))
             for t, m in zip(twin_steps, mig_steps)]
    assert diffs[0].label == "cqe/io/WRITE/extra"
    assert diffs[1].label == "cqe/io/WRITE/missing"


def test_canonical_order_of_posted_entries():
    """Posted-but-unread CQEs compare as a set per look, without SQHD."""
    x = CQE(cid=1, sqid=1, sqhd=2, phase=1)
    y = CQE(cid=2, sqid=1, sqhd=3, phase=1)
    y2 = CQE(cid=2, sqid=1, sqhd=2, phase=1)
    one = [("posted/io", {"qid": 1, "cqes": (x, y)})]
    other = [("posted/io", {"qid": 1, "cqes": (y2, x)})]
    assert canonical_order(one) == canonical_order(other)
    z = CQE(cid=2, sqid=1, sqhd=3, status=1, phase=1)
    assert canonical_order(one) != canonical_order([("posted/io", {"qid": 1, "cqes": (x, z)})])
