"""Asynchronous Event Requests: limit, queueing, LIFO completion, masking, Abort and reset.

Rules: reference digest section 3.8 (QEMU ``nvme_aer``, ``nvme_enqueue_event``,
``nvme_process_aers``, ``nvme_clear_events``), 3.5 (RAE), 3.7 (Abort) and 4 (doorbell error
events only with an AER outstanding).  Events are raised through ``nvmefuzz.model.events``
(the environment's side) and observed only as the host sees them, plus the controller's
event queue where the host has no view of it.
"""

from __future__ import annotations

import pytest

from nvmefuzz.model import events
from nvmefuzz.protocol import structures
from nvmefuzz.protocol.queues import SQE
from nvmefuzz.protocol.spec import (
    DNR, AdminOpcode as A, AsyncEventType as T, ErrorEventInfo, FeatureId as F, LogId,
    NoticeEventInfo, SmartEventInfo, Status as S,
)

NOTICE = (T.NOTICE, NoticeEventInfo.NS_ATTRIBUTE_CHANGED, LogId.CHANGED_NS_LIST)
SMART = (T.SMART, SmartEventInfo.TEMPERATURE_THRESHOLD, LogId.SMART_HEALTH)
ERROR = (T.ERROR, ErrorEventInfo.INVALID_DOORBELL_VALUE, LogId.ERROR_INFORMATION)
LOG_OF = {NOTICE: LogId.CHANGED_NS_LIST, SMART: LogId.SMART_HEALTH,
          ERROR: LogId.ERROR_INFORMATION}
LOG_SIZE = {LogId.ERROR_INFORMATION: 64, LogId.SMART_HEALTH: 512,
            LogId.CHANGED_NS_LIST: 4096, LogId.FW_SLOT: 512,
            LogId.COMMANDS_SUPPORTED_EFFECTS: 4096}


def dw0(event) -> int:
    type_, info, log = event
    return type_ | info << 8 | log << 16


def raise_event(rig, event) -> None:
    events.enqueue(rig.ctrl, *event)
    rig.ctrl.kick()


def completed(rig) -> list[tuple[int, int, int]]:
    """(CID, status, DW0) of every admin completion posted now."""
    return [(c.cqe.cid, c.cqe.status, c.cqe.dw0) for c in rig.reap(0)]


def read_log(rig, lid: int, rae: bool):
    c = rig.get_log(lid, LOG_SIZE[lid], rae=rae)
    assert c.cqe.status == S.SUCCESS
    return c


def abort(sqid: int, cid: int) -> SQE:
    return SQE(A.ABORT, cdw10=sqid | cid << 16)


# ---------------------------------------------------------------------- the AER limit
class TestLimit:
    def test_up_to_aerl_plus_one_requests_stay_outstanding(self, rig):
        """Identify AERL is 0's based: AERL+1 AERs may be outstanding, none completes."""
        aerl = structures.parse(structures.ID_CTRL, rig.identify(1).data)["aerl"]
        assert aerl == 3
        for _ in range(aerl + 1):
            rig.aer()
        assert completed(rig) == []
        assert len(rig.ctrl.aer_reqs) == aerl + 1

    def test_one_more_request_fails_with_limit_exceeded_without_dnr(self, rig):
        """The AER beyond AERL+1 completes at once with 1:05 and no DNR."""
        first = [rig.aer() for _ in range(4)]
        extra = rig.aer()
        assert completed(rig) == [(extra, S.AER_LIMIT_EXCEEDED, 0)]
        raise_event(rig, NOTICE)
        assert completed(rig) == [(first[-1], S.SUCCESS, dw0(NOTICE))]

    def test_a_completed_aer_frees_its_slot(self, rig):
        """Once an AER completes, another one may be outstanding again."""
        for _ in range(4):
            rig.aer()
        raise_event(rig, NOTICE)
        assert len(completed(rig)) == 1
        rig.aer()
        assert completed(rig) == []
        assert len(rig.ctrl.aer_reqs) == 4


# ---------------------------------------------------------------------- completion
class TestCompletion:
    @pytest.mark.parametrize("event", [NOTICE, SMART, ERROR, (T.ERROR, 0, 1),
                                       (T.IO_COMMAND_SET, 0x01, 0x81), (T.VENDOR, 0xAB, 0xCD)])
    def test_dw0_is_type_then_info_then_log_page(self, rig, event):
        """Completion DW0 = type (2:0) | info << 8 | log page << 16; DW1 stays 0."""
        cid = rig.aer()
        raise_event(rig, event)
        [c] = rig.reap(0)
        assert (c.cqe.cid, c.cqe.status, c.cqe.dw0, c.cqe.dw1) == (cid, 0, dw0(event), 0)

    def test_event_without_an_outstanding_aer_waits_for_the_next_one(self, rig):
        """An event with no AER outstanding is queued and completes the next AER at once."""
        raise_event(rig, NOTICE)
        assert completed(rig) == []
        assert len(rig.ctrl.aer_queue) == 1
        cid = rig.aer()
        assert completed(rig) == [(cid, S.SUCCESS, dw0(NOTICE))]
        assert rig.ctrl.aer_queue == []

    def test_events_complete_the_most_recent_aer_first(self, rig):
        """Outstanding AERs are completed LIFO: the newest request gets the next event."""
        a, b, c = rig.aer(), rig.aer(), rig.aer()
        raise_event(rig, NOTICE)
        assert completed(rig) == [(c, S.SUCCESS, dw0(NOTICE))]
        raise_event(rig, SMART)
        assert completed(rig) == [(b, S.SUCCESS, dw0(SMART))]
        raise_event(rig, ERROR)
        assert completed(rig) == [(a, S.SUCCESS, dw0(ERROR))]

    def test_queued_events_are_reported_in_arrival_order(self, rig):
        """The event queue is FIFO: queued events meet later AERs oldest first."""
        for event in (SMART, NOTICE, ERROR):
            raise_event(rig, event)
        got = []
        for _ in range(3):
            cid = rig.aer()
            [(done, status, value)] = completed(rig)
            assert (done, status) == (cid, S.SUCCESS)
            got.append(value)
        assert got == [dw0(SMART), dw0(NOTICE), dw0(ERROR)]


# ---------------------------------------------------------------------- masking and RAE
class TestMasking:
    def test_a_reported_type_is_masked_other_types_are_not(self, rig):
        """After an event of a type is reported, the next one of that type waits."""
        a, b = rig.aer(), rig.aer()
        raise_event(rig, NOTICE)
        assert completed(rig) == [(b, S.SUCCESS, dw0(NOTICE))]
        raise_event(rig, NOTICE)
        assert completed(rig) == []
        assert rig.ctrl.aer_queue == [events.AsyncEvent(*NOTICE)]
        raise_event(rig, SMART)
        assert completed(rig) == [(a, S.SUCCESS, dw0(SMART))]

    @pytest.mark.parametrize("event", [NOTICE, SMART, ERROR])
    def test_reading_the_log_with_rae0_unmasks_its_type(self, rig, event):
        """Get Log Page of the event's log with RAE=0 lets the next event of that type through."""
        a, b = rig.aer(), rig.aer()
        raise_event(rig, event)
        assert completed(rig) == [(b, S.SUCCESS, dw0(event))]
        read_log(rig, LOG_OF[event], rae=False)
        assert completed(rig) == []
        raise_event(rig, event)
        assert completed(rig) == [(a, S.SUCCESS, dw0(event))]

    @pytest.mark.parametrize("event", [NOTICE, SMART, ERROR])
    def test_reading_the_log_with_rae1_keeps_the_mask(self, rig, event):
        """With RAE=1 the event stays unacknowledged: its type remains masked."""
        rig.aer(), rig.aer()
        raise_event(rig, event)
        assert len(completed(rig)) == 1
        read_log(rig, LOG_OF[event], rae=True)
        raise_event(rig, event)
        assert completed(rig) == []
        assert len(rig.ctrl.aer_reqs) == 1

    @pytest.mark.parametrize("lid", [LogId.FW_SLOT, LogId.COMMANDS_SUPPORTED_EFFECTS,
                                     LogId.SMART_HEALTH])
    def test_reading_an_unrelated_log_keeps_the_mask(self, rig, lid):
        """Only the event's own log page unmasks its type."""
        rig.aer(), rig.aer()
        raise_event(rig, NOTICE)
        assert len(completed(rig)) == 1
        read_log(rig, lid, rae=False)
        raise_event(rig, NOTICE)
        assert completed(rig) == []

    def test_reading_with_rae0_deletes_queued_events_of_that_type_only(self, rig):
        """RAE=0 drops still-queued events of the type and re-runs nothing."""
        a, b, c = rig.aer(), rig.aer(), rig.aer()
        raise_event(rig, NOTICE)
        raise_event(rig, SMART)
        assert [cid for cid, _, _ in completed(rig)] == [c, b]
        raise_event(rig, NOTICE)
        raise_event(rig, SMART)
        assert rig.ctrl.aer_queue == [events.AsyncEvent(*NOTICE), events.AsyncEvent(*SMART)]
        read_log(rig, LogId.SMART_HEALTH, rae=False)
        assert rig.ctrl.aer_queue == [events.AsyncEvent(*NOTICE)]
        assert completed(rig) == []                       # a stays outstanding
        read_log(rig, LogId.CHANGED_NS_LIST, rae=False)
        assert rig.ctrl.aer_queue == []
        assert completed(rig) == []
        raise_event(rig, NOTICE)
        assert completed(rig) == [(a, S.SUCCESS, dw0(NOTICE))]


# ---------------------------------------------------------------------- the event queue
class TestQueueLimit:
    def test_event_queue_holds_at_most_aer_max_queued(self, rig):
        """Beyond aer_max_queued queued events further events are dropped silently."""
        limit = rig.ctrl.config.aer_max_queued
        for _ in range(limit):
            raise_event(rig, NOTICE)
        raise_event(rig, SMART)                           # one too many: dropped
        assert len(rig.ctrl.aer_queue) == limit
        assert events.AsyncEvent(*SMART) not in rig.ctrl.aer_queue
        first = rig.aer()
        assert completed(rig) == [(first, S.SUCCESS, dw0(NOTICE))]
        rig.aer()
        assert completed(rig) == []                       # the SMART event is gone

    def test_a_freed_queue_slot_accepts_events_again(self, rig):
        """Once an event leaves the full queue, a new event is queued again."""
        limit = rig.ctrl.config.aer_max_queued
        for _ in range(limit):
            raise_event(rig, NOTICE)
        rig.aer()
        assert len(completed(rig)) == 1
        raise_event(rig, SMART)
        cid = rig.aer()
        assert completed(rig) == [(cid, S.SUCCESS, dw0(SMART))]


# ---------------------------------------------------------------------- temperature
class TestTemperatureEvent:
    @pytest.mark.parametrize("config, fires", [(0, False), (0x1, False), (0x100, False),
                                               (0xFD, False), (0x2, True), (0xFF, True)])
    def test_threshold_event_only_when_async_event_config_bit_1_is_set(
            self, rig, config, fires):
        """Crossing a temperature threshold raises a SMART event only if AEC bit 1 is set."""
        assert rig.set_feature(F.ASYNC_EVENT_CONFIG, config).cqe.status == S.SUCCESS
        cid = rig.aer()
        c = rig.set_feature(F.TEMPERATURE_THRESHOLD, 0x100)    # over-threshold below 0x143 K
        assert c.cqe.status == S.SUCCESS
        got = [(o.cqe.cid, o.cqe.dw0) for o in rig.others]
        assert got == ([(cid, dw0(SMART))] if fires else [])
        assert rig.ctrl.aer_queue == []

    def test_the_event_completes_before_the_set_features_command(self, rig):
        """The AER's CQE is queued while Set Features runs, so it is posted first."""
        rig.set_feature(F.ASYNC_EVENT_CONFIG, 0x2)
        aer = rig.aer()
        set_cid = rig.admin_submit(SQE(A.SET_FEATURES, cdw10=F.TEMPERATURE_THRESHOLD,
                                       cdw11=0x100))
        assert [cid for cid, _, _ in completed(rig)] == [aer, set_cid]

    def test_under_temperature_threshold_also_raises_the_event(self, rig):
        """An under-temperature threshold above the temperature counts as crossed."""
        rig.set_feature(F.ASYNC_EVENT_CONFIG, 0x2)
        cid = rig.aer()
        rig.set_feature(F.TEMPERATURE_THRESHOLD, 0x200 | 1 << 20)
        assert [(o.cqe.cid, o.cqe.dw0) for o in rig.others] == [(cid, dw0(SMART))]

    def test_a_threshold_not_crossed_raises_nothing(self, rig):
        """Moving the over-threshold further above the temperature raises no event."""
        rig.set_feature(F.ASYNC_EVENT_CONFIG, 0x2)
        rig.aer()
        rig.set_feature(F.TEMPERATURE_THRESHOLD, 0x200)
        assert rig.others == []
        assert rig.ctrl.aer_queue == []

    def test_smart_log_flags_the_temperature_whatever_the_event_config(self, rig):
        """Critical warning bit 1 follows the thresholds even when no event is sent."""
        assert rig.smart()["critical_warning"] & 0x2 == 0
        rig.set_feature(F.TEMPERATURE_THRESHOLD, 0x100)
        assert rig.smart()["critical_warning"] & 0x2 == 0x2
        assert rig.ctrl.aer_queue == []


# ---------------------------------------------------------------------- namespace notices
class TestNamespaceChange:
    def test_namespace_change_completes_an_aer_with_a_notice(self, rig):
        """A namespace attribute change is Notice type 2, info 0, log 04h."""
        cid = rig.aer()
        rig.ns_changed(1)
        assert completed(rig) == [(cid, S.SUCCESS, 0x04_00_02)]

    def test_target_environment_event_raises_the_same_notice(self, rig):
        """The model target's "ns_changed" environment event is the same notice."""
        cid = rig.aer()
        assert rig.target.environment("ns_changed", 1) is True
        assert completed(rig) == [(cid, S.SUCCESS, dw0(NOTICE))]

    def test_changed_namespace_list_holds_each_changed_nsid_once_in_order(self, rig):
        """The Changed Namespace List lists the changed NSIDs ascending, without repeats."""
        for nsid in (7, 1, 7, 3):
            rig.ns_changed(nsid)
        data = read_log(rig, LogId.CHANGED_NS_LIST, rae=True).data
        ids = [int.from_bytes(data[i:i + 4], "little") for i in range(0, 4096, 4)]
        assert ids[:4] == [1, 3, 7, 0]
        assert set(ids[3:]) == {0}

    @pytest.mark.parametrize("rae", [False, True])
    def test_changed_namespace_list_read_is_destructive(self, rig, rae):
        """Reading the list empties it, even with RAE=1 (QEMU quirk)."""
        rig.ns_changed(1)
        first = read_log(rig, LogId.CHANGED_NS_LIST, rae=rae).data
        assert first[:8] == (1).to_bytes(4, "little") + bytes(4)
        assert read_log(rig, LogId.CHANGED_NS_LIST, rae=rae).data == bytes(4096)

    def test_rejected_read_does_not_drain_the_list(self, rig):
        """An offset beyond the log fails before the list is drained."""
        rig.ns_changed(1)
        c = rig.get_log(LogId.CHANGED_NS_LIST, 4096, offset=4096)
        assert c.cqe.status == S.INVALID_FIELD | DNR
        assert read_log(rig, LogId.CHANGED_NS_LIST, rae=True).data[:4] == (1).to_bytes(
            4, "little")


# ---------------------------------------------------------------------- Abort
class TestAbort:
    def test_abort_of_an_outstanding_aer_completes_it_with_abort_requested(self, rig):
        """Abort of an AER's CID: the AER ends with 0:07, then the Abort with DW0=0."""
        aer = rig.aer()
        ab = rig.admin_submit(abort(0, aer))
        assert completed(rig) == [(aer, S.ABORT_REQUESTED, 0), (ab, S.SUCCESS, 0)]
        assert rig.ctrl.aer_reqs == []

    def test_abort_removes_only_that_aer_and_keeps_the_others_in_order(self, rig):
        """The aborted AER leaves the middle of the list; the rest stay LIFO."""
        a, b, c = rig.aer(), rig.aer(), rig.aer()
        assert rig.admin(abort(0, b)).cqe.dw0 == 0
        raise_event(rig, NOTICE)
        raise_event(rig, SMART)
        raise_event(rig, ERROR)
        assert [cid for cid, _, _ in completed(rig)] == [c, a]
        assert rig.ctrl.aer_queue == [events.AsyncEvent(*ERROR)]

    @pytest.mark.parametrize("sqid", [0, 1])
    def test_abort_of_an_unknown_cid_reports_not_aborted(self, rig, sqid):
        """A CID with nothing to abort: success with DW0=1, outstanding AERs untouched."""
        aer = rig.aer()
        c = rig.admin(abort(sqid, 0xBEEF))
        assert (c.cqe.status, c.cqe.dw0) == (S.SUCCESS, 1)
        assert rig.others == []
        raise_event(rig, NOTICE)
        assert completed(rig) == [(aer, S.SUCCESS, dw0(NOTICE))]

    @pytest.mark.parametrize("sqid", [2, 64, 65, 0xFFFF])
    def test_abort_with_an_invalid_sqid_is_invalid_field_dnr(self, rig, sqid):
        """A SQID naming no existing queue is Invalid Field with DNR (DW0 still says 1)."""
        aer = rig.aer()
        c = rig.admin(abort(sqid, aer))
        assert (c.cqe.status, c.cqe.dw0) == (S.INVALID_FIELD | DNR, 1)
        assert len(rig.ctrl.aer_reqs) == 1


# ---------------------------------------------------------------------- reset
class TestReset:
    def test_controller_reset_drops_aers_events_and_the_mask(self, rig):
        """CC.EN 1->0 discards outstanding AERs, queued events and the event mask."""
        rig.aer()
        raise_event(rig, NOTICE)                          # reported: NOTICE now masked
        raise_event(rig, NOTICE)                          # queued behind the mask
        rig.aer(), rig.aer()                              # outstanding
        assert completed(rig)[0][2] == dw0(NOTICE)
        rig.reset()
        assert (rig.ctrl.aer_reqs, rig.ctrl.aer_queue, rig.ctrl.aer_mask) == ([], [], 0)
        rig.enable()
        cids = [rig.aer() for _ in range(4)]              # a full set fits again
        assert completed(rig) == []
        raise_event(rig, NOTICE)                          # no longer masked
        assert completed(rig) == [(cids[-1], S.SUCCESS, dw0(NOTICE))]

    def test_events_queued_before_reset_are_not_reported_after(self, rig):
        """A queued event does not survive a controller reset."""
        raise_event(rig, SMART)
        rig.reset()
        rig.enable()
        rig.aer()
        assert completed(rig) == []


# ---------------------------------------------------------------------- doorbell errors
class TestDoorbellErrorEvents:
    def test_doorbell_errors_are_not_queued_without_an_outstanding_aer(self, rig):
        """QEMU raises doorbell error events only while an AER is outstanding."""
        rig.host.ring_sq(5, 0)
        rig.host.ring_sq(1, 32)
        assert rig.ctrl.aer_queue == []
        rig.aer()
        assert completed(rig) == []

    def test_doorbell_of_a_missing_queue_is_invalid_doorbell_register(self, rig):
        """A write to a non-existent queue's doorbell: Error event, info 00h, log 01h."""
        cid = rig.aer()
        rig.host.ring_sq(5, 0)
        assert completed(rig) == [(cid, S.SUCCESS, T.ERROR | 0x00 << 8 | 0x01 << 16)]

    def test_doorbell_value_beyond_the_queue_is_invalid_doorbell_value(self, rig):
        """A tail >= queue size: Error event, info 01h, log 01h; the write is ignored."""
        cid = rig.aer()
        rig.host.ring_sq(1, 32)
        assert completed(rig) == [(cid, S.SUCCESS, T.ERROR | 0x01 << 8 | 0x01 << 16)]
        assert rig.ctrl.sqs[1].tail == 0
