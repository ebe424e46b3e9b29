"""Read-backs and per-feature values: the guidance that makes a change get looked at.

``read_backs`` maps a step to the reads that show what it changed; replaying a change, a
migration and its read-back tells a profile that loses the state from ``full``.  Every
changeable feature of the model can be changed by some value of ``feature_values``, so the
vocabulary reaches every saved feature field.
"""

from __future__ import annotations

import pytest

from nvmefuzz.fuzz.readback import (
    AER, CHANGED_NAMESPACES, ENABLED, ERROR_INFO, SMART, STOPPED, TIMESTAMP, key, read_backs,
)
from nvmefuzz.fuzz.session import replay
from nvmefuzz.fuzz.arguments import FEATURE_VALUES, GENERIC, feature_values
from nvmefuzz.model import snapshot as snap
from nvmefuzz.protocol.spec import AdminOpcode as A, FeatureId as F, IoOpcode as IO
from nvmefuzz.targets import TargetConfig
from nvmefuzz.trace.schema import Step, Trace

ON = Step("enable", {"asqs": 7, "acqs": 7})


def _set(fid: int, cdw11: int = 0, **extra) -> Step:
    return Step("admin", {"opc": int(A.SET_FEATURES), "cdw10": fid, "cdw11": cdw11, **extra})


def _run(profile: str, steps: list[Step]):
    trace = Trace(target=TargetConfig(profile=profile).to_plain(), campaign="readback",
                  seed=0, steps=(ON, *steps), refusals="continue")
    return replay(trace)[0]


def test_set_features_reads_back_the_same_feature_and_selector():
    """The temperature threshold read keeps THSEL/TMPSEL; its crossing is read in SMART and
    collected by an AER."""
    (get, smart, aer) = read_backs(_set(F.TEMPERATURE_THRESHOLD, 1 << 20 | 0x150))
    assert get.args == {"opc": int(A.GET_FEATURES), "cdw10": 0x04, "cdw11": 1 << 20}
    assert smart == SMART and aer == AER
    (over,) = read_backs(_set(F.ARBITRATION, 0x03020107))[:1]
    assert "cdw11" not in over.args


def test_namespace_specific_and_data_features():
    """Error Recovery is read from the namespace it was set on; Host Behavior with its
    512-byte buffer, Timestamp with its 8 bytes."""
    (er,) = read_backs(_set(F.ERROR_RECOVERY, 1 << 16, nsid=1))
    assert er.args["nsid"] == 1 and er.args["cdw10"] == 0x05
    (hb,) = read_backs(_set(F.HOST_BEHAVIOR_SUPPORT, pattern=3, length=512))
    assert hb.args["length"] == 512
    (ts,) = read_backs(_set(F.TIMESTAMP, pattern=3, length=8))
    assert ts.args["length"] == 8


@pytest.mark.parametrize("step, reads", [
    (Step("io", {"qid": 1, "opc": 1, "slba": 0}), [SMART]),
    (Step("reg_write", {"offset": 0x0C, "value": 1}), [Step("reg_read", {"offset": 0x0C,
                                                                           "size": 4})]),
    (Step("reg_write", {"offset": 0x28, "value": 0}), [Step("reg_read", {"offset": 0x28,
                                                                           "size": 8})]),
    (Step("environment", {"event": "ns_changed", "arg": 1}), [CHANGED_NAMESPACES, AER]),
    (Step("enable", {"asqs": 7, "acqs": 7}), list(ENABLED)),
    (Step("disable", {}), list(STOPPED)),
    (Step("shutdown", {"shn": 1}), list(STOPPED)),
    (Step("advance", {"ns": 20_000}), [TIMESTAMP, SMART]),
    (Step("advance", {"ns": 0}), []),
    (Step("admin", {"opc": 0x7F}), [ERROR_INFO]),
    (Step("ring_sq", {"qid": 9, "value": 3}), [ERROR_INFO]),
    (Step("ring_sq", {"qid": 1}), []),
    (Step("create_sq", {"qid": 2, "cqid": 1, "size": 8}),
     [Step("io", {"qid": 2, "opc": int(IO.READ), "slba": 0, "nlb": 1})]),
    (Step("admin", {"opc": int(A.IDENTIFY), "cdw10": 1}), []),
    (Step("migrate", {}), []),
])
def test_what_each_action_reads_back(step, reads):
    assert read_backs(step) == reads


def test_log_reads_retain_asynchronous_events():
    """Log reads set RAE and cover the whole log page they read."""
    for log, lid, length in ((SMART, 2, 512), (ERROR_INFO, 1, 64),
                             (CHANGED_NAMESPACES, 4, 4096)):
        cdw10 = log.args["cdw10"]
        assert cdw10 & 0xFF == lid and cdw10 >> 15 & 1
        assert ((cdw10 >> 16) + 1) * 4 == log.args["length"] == length


def test_read_keys_identify_equal_reads():
    assert key(SMART) == key(Step(SMART.action, dict(SMART.args)))
    assert key(SMART) != key(ERROR_INFO)


@pytest.mark.parametrize("profile, change", [
    ("full-without-features.err_rec", _set(F.ERROR_RECOVERY, 1 << 16 | 0x10, nsid=1)),
    ("full+err-rec-low-word", _set(F.ERROR_RECOVERY, 1 << 16 | 0x10, nsid=1)),
    ("full-without-features.temp_thresh_lo", _set(F.TEMPERATURE_THRESHOLD, 1 << 20 | 0x100)),
    ("full-without-features.write_atomicity_dn", _set(F.WRITE_ATOMICITY, 1)),
    ("full-without-intms", Step("reg_write", {"offset": 0x0C, "value": 1})),
    ("full-without-asq", Step("enable", {"asqs": 3, "acqs": 3})),
    ("full-without-aqa", Step("enable", {"asqs": 3, "acqs": 3})),
    ("full-without-dmrsl", Step("enable", {"asqs": 3, "acqs": 3})),   # Identify CNS 06h
    ("full-without-csts", Step("shutdown", {"shn": 1})),
    ("full+timestamp-rebased", Step("advance", {"ns": 3_600_000_000_000})),
])
def test_a_change_then_migration_then_its_read_back_kills_the_loss(profile, change):
    """Change, migrate, read back: the profile that loses the state diverges, full does not."""
    steps = [change, Step("migrate", {}), *read_backs(change)]
    assert _run("full", steps).ok
    verdict = _run(profile, steps)
    assert not verdict.ok and verdict.step >= 2


def test_io_read_back_shows_lost_smart_counters():
    """A write, a migration and the SMART read-back: losing Host Write Commands shows."""
    steps = [Step("create_cq", {"qid": 1, "size": 8, "iv": 0}),
             Step("create_sq", {"qid": 1, "cqid": 1, "size": 8}),
             io := Step("io", {"qid": 1, "opc": 1, "slba": 0, "nlb": 1, "pattern": 5}),
             Step("advance", {"ns": 20_000}), Step("consume", {"qid": 1}),
             Step("migrate", {}), *read_backs(io)]
    assert _run("full", steps).ok
    assert "host_writes" in _run("full-without-host_writes", steps).signature


def test_sq_read_back_shows_the_cq_it_is_tied_to():
    """SQ 2 on CQ 1, beside a CQ 2: a migration that ties SQ n to CQ n (Propolis #953) shows
    when a Read on SQ 2 completes on the wrong CQ."""
    sq = Step("create_sq", {"qid": 2, "cqid": 1, "size": 8})
    steps = [Step("create_cq", {"qid": 1, "size": 8, "iv": 0}),
             Step("create_cq", {"qid": 2, "size": 8, "iv": 0}), sq,
             Step("migrate", {}), *read_backs(sq),
             Step("advance", {"ns": 20_000}), Step("consume", {"qid": 1})]
    assert _run("full", steps).ok
    verdict = _run("full+sq-cq-association-lost", steps)
    assert not verdict.ok and verdict.step >= 4


# ---------------------------------------------------------------------- feature values
def test_feature_values_cover_the_feature_ids_and_add_generic_values():
    assert set(FEATURE_VALUES) <= set(F)
    for fid in FEATURE_VALUES:
        values = feature_values(fid)
        assert set(GENERIC) <= set(values) and len(values) == len(set(values))
    assert feature_values(0x7F) == GENERIC


def _get_dw0(profile: str, fid: int, steps: list[Step], nsid: int = 0) -> int:
    from nvmefuzz.fuzz.session import Session

    session = Session(TargetConfig(profile=profile), (), "continue")
    try:
        for step in (ON, *steps):
            session.apply(step)
        args = {"opc": int(A.GET_FEATURES), "cdw10": fid, **({"nsid": nsid} if nsid else {})}
        if fid in (F.TEMPERATURE_THRESHOLD,) and steps and steps[-1].args.get("cdw11", 0) >> 20:
            args["cdw11"] = steps[-1].args["cdw11"] & (0x3F << 16)
        seen: list = []
        session.on_step = lambda i, step, twin, mig: seen.extend(twin)
        session.apply(Step("admin", args))
    finally:
        session.close()
    return next(f["dw0"] for label, f in seen if label.startswith("cqe/admin/"))


#: features whose value travels in CDW11, and the saved state field each one sets
CDW11_FEATURES = {F.TEMPERATURE_THRESHOLD: "features.temp_thresh_hi",
                  F.ERROR_RECOVERY: "features.err_rec",
                  F.VOLATILE_WRITE_CACHE: "features.write_cache",
                  F.WRITE_ATOMICITY: "features.write_atomicity_dn",
                  F.ASYNC_EVENT_CONFIG: "features.async_config"}


@pytest.mark.parametrize("fid", sorted(CDW11_FEATURES))
def test_some_value_changes_every_saved_feature(fid):
    """For each feature the model saves, some listed value changes what Get Features
    returns: the vocabulary reaches every saved feature field."""
    assert CDW11_FEATURES[fid] in snap.SCHEMA
    nsid = 1 if fid == F.ERROR_RECOVERY else 0
    before = _get_dw0("full", fid, [], nsid)
    changed = [v for v in FEATURE_VALUES[fid]
               if _get_dw0("full", fid, [_set(fid, v, **({"nsid": 1} if nsid else {}))],
                           nsid) != before]
    assert changed, f"no value in FEATURE_VALUES[{fid:#x}] changes the feature"
    if fid == F.ERROR_RECOVERY:                  # both of its fields: TLER and DULBE
        assert {v & 0xFFFF for v in changed} > {0} and any(v >> 16 for v in changed)


def test_the_under_temperature_threshold_is_reachable():
    """THSEL=1 values set the under-temperature threshold, read back with THSEL=1."""
    unders = [v for v in FEATURE_VALUES[F.TEMPERATURE_THRESHOLD] if v >> 20 == 1]
    assert unders
    before = _get_dw0("full", 0x04, [_set(0x04, 1 << 20)])
    assert any(_get_dw0("full", 0x04, [_set(0x04, v)]) != before for v in unders)
