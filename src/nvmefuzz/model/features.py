"""Get Features and Set Features for every feature identifier QEMU supports.

Two tables drive it: ``SUPPORTED`` (with each FID's capability bits: bit 1 namespace
specific, bit 2 changeable; nothing is saveable) and ``DEFAULTS``.  Get with SEL=1 or 2
(default, saved) returns the default, SEL=3 the capability bits, SEL=0 the current value (and,
as in QEMU, so do the reserved SEL values 4-7, which match no case of its switch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nvmefuzz.model import events
from nvmefuzz.protocol.spec import BROADCAST_NSID, DNR, FeatureId as F, Status as S
from nvmefuzz.protocol.structures import HOST_BEHAVIOR_SIZE, TIMESTAMP_SIZE

if TYPE_CHECKING:
    from nvmefuzz.model.controller import Controller
    from nvmefuzz.model.state import Request

NS_SPECIFIC, CHANGEABLE = 1 << 1, 1 << 2

SUPPORTED = {
    F.ARBITRATION: 0, F.POWER_MANAGEMENT: 0, F.TEMPERATURE_THRESHOLD: CHANGEABLE,
    F.ERROR_RECOVERY: CHANGEABLE | NS_SPECIFIC, F.VOLATILE_WRITE_CACHE: CHANGEABLE,
    F.NUMBER_OF_QUEUES: CHANGEABLE, F.INTERRUPT_COALESCING: 0, F.INTERRUPT_VECTOR_CONFIG: 0,
    F.WRITE_ATOMICITY: CHANGEABLE, F.ASYNC_EVENT_CONFIG: CHANGEABLE, F.TIMESTAMP: CHANGEABLE,
    F.HOST_BEHAVIOR_SUPPORT: CHANGEABLE, F.COMMAND_SET_PROFILE: CHANGEABLE,
}

#: QEMU's nvme_feature_default: only Arbitration has a non-zero default (the temperature
#: threshold default is handled by its own case; Volatile Write Cache defaults to 0).
DEFAULTS = {F.ARBITRATION: 7, F.TEMPERATURE_THRESHOLD: 0x157}


def _nsid_check(ctrl: Controller, fid: int, nsid: int) -> int | None:
    if SUPPORTED[fid] & NS_SPECIFIC:
        if nsid != BROADCAST_NSID:
            if nsid == 0 or nsid > ctrl.config.nn:
                return S.INVALID_NSID | DNR
            if nsid != 1:
                return S.INVALID_FIELD | DNR
    elif nsid and nsid != BROADCAST_NSID:
        return (S.INVALID_NSID if nsid > ctrl.config.nn else S.FEATURE_NOT_NS_SPECIFIC) | DNR
    return None


def _get_nsid_check(ctrl: Controller, fid: int, nsid: int) -> int | None:
    """QEMU's Get Features checks the NSID only for namespace-specific features, and there
    the broadcast NSID is invalid as well."""
    if SUPPORTED[fid] & NS_SPECIFIC:
        if nsid == 0 or nsid > ctrl.config.nn:       # includes BROADCAST_NSID
            return S.INVALID_NSID | DNR
        if nsid != 1:
            return S.INVALID_FIELD | DNR
    return None


def _queues(ctrl: Controller) -> int:
    n = ctrl.config.max_ioqpairs - 1
    return n | n << 16


def set_feature(ctrl: Controller, req: Request) -> int:
    from nvmefuzz.model.admin import h2c

    sqe = req.sqe
    fid, save, dw11 = sqe.cdw10 & 0xFF, sqe.cdw10 >> 31, sqe.cdw11
    if save:
        return S.FEATURE_NOT_SAVEABLE | DNR
    if fid not in SUPPORTED:
        return S.INVALID_FIELD | DNR
    bad = _nsid_check(ctrl, fid, sqe.nsid)
    if bad is not None:
        return bad
    if not SUPPORTED[fid] & CHANGEABLE:
        return S.FEATURE_NOT_CHANGEABLE | DNR
    f = ctrl.features
    if fid == F.TEMPERATURE_THRESHOLD:
        tmpth, tmpsel, thsel = dw11 & 0xFFFF, (dw11 >> 16) & 0xF, (dw11 >> 20) & 0x3
        if tmpsel != 0:
            return S.SUCCESS                  # QEMU: other sensors accepted, nothing checked
        if thsel == 0:
            f.temp_thresh_hi = tmpth
        elif thsel == 1:
            f.temp_thresh_lo = tmpth
        else:
            return S.INVALID_FIELD | DNR
        if ctrl.temperature >= f.temp_thresh_hi or ctrl.temperature <= f.temp_thresh_lo:
            events.smart_temperature(ctrl)
    elif fid == F.ERROR_RECOVERY:
        f.err_rec = dw11
    elif fid == F.VOLATILE_WRITE_CACHE:
        f.write_cache = bool(dw11 & 1)
    elif fid == F.NUMBER_OF_QUEUES:
        if ctrl.qs_created:
            return S.COMMAND_SEQUENCE_ERROR | DNR
        if dw11 & 0xFFFF == 0xFFFF or dw11 >> 16 == 0xFFFF:
            return S.INVALID_FIELD | DNR
        req.dw0 = _queues(ctrl)
    elif fid == F.WRITE_ATOMICITY:
        f.write_atomicity_dn = dw11 & 1
    elif fid == F.ASYNC_EVENT_CONFIG:
        f.async_config = dw11
    elif fid == F.TIMESTAMP:
        data = h2c(ctrl, req, TIMESTAMP_SIZE)
        if isinstance(data, int):
            return data
        f.host_timestamp = int.from_bytes(data, "little")
        f.timestamp_set_ms = ctrl.now // 1_000_000
    elif fid == F.HOST_BEHAVIOR_SUPPORT:
        data = h2c(ctrl, req, HOST_BEHAVIOR_SIZE)
        if isinstance(data, int):
            return data
        f.host_behavior = data
    elif fid == F.COMMAND_SET_PROFILE and dw11 & 0x1FF:
        return S.IOCS_COMBINATION_REJECTED | DNR
    return S.SUCCESS


def timestamp(ctrl: Controller) -> bytes:
    f = ctrl.features
    elapsed = ctrl.now // 1_000_000 - f.timestamp_set_ms
    value = (f.host_timestamp + elapsed) & ((1 << 48) - 1)
    origin = 1 if f.host_timestamp else 0
    return (value | origin << 49).to_bytes(8, "little")


def get_feature(ctrl: Controller, req: Request) -> int:
    from nvmefuzz.model.admin import c2h

    sqe = req.sqe
    fid, sel, dw11 = sqe.cdw10 & 0xFF, (sqe.cdw10 >> 8) & 0x7, sqe.cdw11
    if fid not in SUPPORTED:
        return S.INVALID_FIELD | DNR
    bad = _get_nsid_check(ctrl, fid, sqe.nsid)
    if bad is not None:
        return bad
    if sel == 3:
        req.dw0 = SUPPORTED[fid]
        return S.SUCCESS
    default = sel in (1, 2)                   # saved = default; 0 and 4-7 read the current
    f = ctrl.features
    if fid == F.TEMPERATURE_THRESHOLD:
        thsel, tmpsel = (dw11 >> 20) & 0x3, (dw11 >> 16) & 0xF
        if tmpsel != 0:
            req.dw0 = 0                       # only the composite sensor exists
        elif default:
            req.dw0 = 0x157 if thsel == 0 else 0
        elif thsel > 1:
            return S.INVALID_FIELD | DNR
        else:
            req.dw0 = f.temp_thresh_hi if thsel == 0 else f.temp_thresh_lo
        return S.SUCCESS
    if fid == F.NUMBER_OF_QUEUES:
        req.dw0 = _queues(ctrl)
        return S.SUCCESS
    if fid == F.INTERRUPT_VECTOR_CONFIG:
        iv = dw11 & 0xFFFF
        if iv > ctrl.config.max_ioqpairs:
            return S.INVALID_FIELD | DNR
        req.dw0 = iv | (1 << 16 if iv == 0 else 0)
        return S.SUCCESS
    if fid == F.WRITE_ATOMICITY:
        req.dw0 = f.write_atomicity_dn        # QEMU reports n->dn for every SEL
        return S.SUCCESS
    if default:
        req.dw0 = DEFAULTS.get(fid, 0)
        return S.SUCCESS
    if fid == F.TIMESTAMP:
        return c2h(ctrl, req, timestamp(ctrl))
    if fid == F.HOST_BEHAVIOR_SUPPORT:
        return c2h(ctrl, req, f.host_behavior)
    req.dw0 = {
        F.ARBITRATION: 7, F.ERROR_RECOVERY: f.err_rec, F.VOLATILE_WRITE_CACHE: int(f.write_cache),
        F.WRITE_ATOMICITY: f.write_atomicity_dn, F.ASYNC_EVENT_CONFIG: f.async_config,
    }.get(fid, 0)
    return S.SUCCESS
