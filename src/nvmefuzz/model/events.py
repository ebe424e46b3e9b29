"""Asynchronous events: the event queue, the per-type mask and outstanding AER commands.

QEMU's rules, which the model keeps exactly:

* Events go into a FIFO (at most ``config.aer_max_queued``; more are dropped silently).
* Processing walks the FIFO while an AER command is outstanding, skips events whose type is
  masked, and completes the **most recently submitted** AER (LIFO) with
  ``DW0 = type | info << 8 | log page << 16``; the event's type becomes masked.
* Reading the event's log page with RAE=0 unmasks the type and deletes queued events of that
  type; it does not re-run processing.
* An AER beyond AERL+1 outstanding fails with Asynchronous Event Request Limit Exceeded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nvmefuzz.model.state import AsyncEvent
from nvmefuzz.protocol.spec import AsyncEventType, LogId, NoticeEventInfo, SmartEventInfo, Status

if TYPE_CHECKING:
    from nvmefuzz.model.controller import Controller
    from nvmefuzz.model.state import Request

__all__ = ["AsyncEvent", "clear", "enqueue", "masked", "namespace_changed", "process",
           "request", "smart_temperature"]


def enqueue(ctrl: Controller, type_: int, info: int, log_page: int) -> None:
    if len(ctrl.aer_queue) >= ctrl.config.aer_max_queued:
        return
    ctrl.aer_queue.append(AsyncEvent(int(type_), int(info), int(log_page)))
    process(ctrl)


def masked(ctrl: Controller, type_: int) -> bool:
    """Has an AER completion masked events of this type (until its log page is read)?"""
    return bool(ctrl.aer_mask >> type_ & 1)


def process(ctrl: Controller) -> None:
    index = 0
    while index < len(ctrl.aer_queue) and ctrl.aer_reqs:
        event = ctrl.aer_queue[index]
        if masked(ctrl, event.type):
            index += 1
            continue
        del ctrl.aer_queue[index]
        ctrl.aer_mask |= 1 << event.type
        req = ctrl.aer_reqs.pop()
        req.status = Status.SUCCESS
        req.dw0 = event.type | event.info << 8 | event.log_page << 16
        ctrl.complete(req)


def request(ctrl: Controller, req: Request) -> int | None:
    """An Asynchronous Event Request command arrives; None means it stays outstanding."""
    if len(ctrl.aer_reqs) > ctrl.config.aerl:
        return Status.AER_LIMIT_EXCEEDED
    ctrl.aer_reqs.append(req)
    if ctrl.aer_queue:
        process(ctrl)
    return None


def clear(ctrl: Controller, type_: int) -> None:
    ctrl.aer_mask &= ~(1 << type_)
    ctrl.aer_queue = [e for e in ctrl.aer_queue if e.type != type_]


def smart_temperature(ctrl: Controller) -> None:
    """A temperature threshold is crossed: a SMART event if Async Event Config allows it."""
    if ctrl.features.async_config & (1 << SmartEventInfo.TEMPERATURE_THRESHOLD):
        enqueue(ctrl, AsyncEventType.SMART, SmartEventInfo.TEMPERATURE_THRESHOLD,
                LogId.SMART_HEALTH)


def namespace_changed(ctrl: Controller, nsid: int) -> None:
    """The namespace's attributes changed (an environment event, e.g. a resize)."""
    if nsid in ctrl.changed_nsids:        # QEMU: an event only when newly marked
        return
    ctrl.changed_nsids.append(nsid)
    ctrl.changed_nsids.sort()
    enqueue(ctrl, AsyncEventType.NOTICE, NoticeEventInfo.NS_ATTRIBUTE_CHANGED,
            LogId.CHANGED_NS_LIST)
