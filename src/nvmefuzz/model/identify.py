"""Data the controller returns: Identify structures and log pages, built from its state.

Values follow QEMU's nvme device (vendor 1b36, device 0010, "QEMU NVMe Ctrl", AERL=ACL=3,
MDTS=7) so that the model and a real QEMU return the same bytes for the same state.  Builders
return bytes, or a status when the request itself is invalid.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nvmefuzz.protocol import spec
from nvmefuzz.protocol.spec import BROADCAST_NSID, DNR, AdminOpcode as A, IoOpcode as IO, LogId
from nvmefuzz.protocol.spec import Status as S
from nvmefuzz.protocol.structures import (
    CHANGED_NS_LOG_SIZE, EFFECTS_LOG_SIZE, ERROR_LOG_ENTRY_SIZE, FW_SLOT_LOG, FW_SLOT_LOG_SIZE,
    ID_CTRL, ID_CTRL_NVM, ID_NS, IDENTIFY_SIZE, SMART_LOG, SMART_LOG_SIZE, build,
)

if TYPE_CHECKING:
    from nvmefuzz.model.controller import Controller
    from nvmefuzz.protocol.queues import SQE

ACTIVE_NSIDS = (1,)
#: Identify Controller FR and the firmware slot log's FRS1.  QEMU reports its
#: ``firmware-version`` property there (default: its own version); the qemu target sets it to
#: this, so the two answer the same.
FIRMWARE_REVISION = b"1.0"

#: Commands Supported and Effects: CSUPP (bit 0) plus LBCC (bit 1) for data-changing I/O
#: (Flush included, as in QEMU's nvme_cse_iocs_nvm_default).
ADMIN_EFFECTS = {int(op): 1 for op in (
    A.DELETE_IO_SQ, A.CREATE_IO_SQ, A.GET_LOG_PAGE, A.DELETE_IO_CQ, A.CREATE_IO_CQ, A.IDENTIFY,
    A.ABORT, A.SET_FEATURES, A.GET_FEATURES, A.ASYNC_EVENT_REQUEST, A.DOORBELL_BUFFER_CONFIG)}
IO_EFFECTS = {IO.FLUSH: 3, IO.WRITE: 3, IO.READ: 1, IO.COMPARE: 1, IO.WRITE_ZEROES: 3,
              IO.DATASET_MANAGEMENT: 3}


def id_ctrl(ctrl: Controller) -> bytes:
    c = ctrl.config
    return build(
        ID_CTRL, IDENTIFY_SIZE, vid=0x1B36, ssvid=0x1AF4, sn=c.serial.encode()[:20],
        mn=b"QEMU NVMe Ctrl", fr=FIRMWARE_REVISION, rab=6, ieee=0x525400, mdts=c.mdts,
        ver=0x00010400, oaes=1 << 8, ctratt=1 << 1, cntrltype=1, oacs=1 << 8, acl=3, aerl=c.aerl,
        frmw=3 | 1 << 3 | 1 << 4, lpa=1 << 1 | 1 << 2, wctemp=0x157, cctemp=0x175,
        sqes=0x66, cqes=0x44, nn=c.nn, oncs=1 | 1 << 2 | 1 << 3 | 1 << 4 | 1 << 6,
        vwc=1 | 3 << 1, subnqn=f"nqn.2019-08.org.qemu:{c.serial}".encode(),
    )


#: QEMU's verify size limit (``vsl`` property) and Dataset Management range limit
VSL, DMRL = 7, 255
#: the most bytes one request to QEMU's block layer may cover (BDRV_REQUEST_MAX_BYTES)
REQUEST_MAX_BYTES = 0x7FFF_FE00


def dsm_range_limit(ctrl: Controller) -> int:
    """DMRSL as starting the controller computes it: the smaller non-zero of its value and
    the blocks one block-layer request covers.  Not at power-on: a controller that was never
    started (or a destination nobody recomputed it on) has 0."""
    limit = REQUEST_MAX_BYTES // ctrl.store.lba_size
    return min(ctrl.dmrsl, limit) if ctrl.dmrsl else limit


def id_ctrl_nvm(ctrl: Controller) -> bytes:
    return build(ID_CTRL_NVM, IDENTIFY_SIZE, vsl=VSL, dmrl=DMRL, dmrsl=ctrl.dmrsl,
                 dmsl=DMRL * ctrl.dmrsl)


def id_ns(ctrl: Controller) -> bytes:
    n = ctrl.config.nsze
    return build(ID_NS, IDENTIFY_SIZE, nsze=n, ncap=n, nuse=n, nsfeat=1 << 4, dlfeat=1 | 1 << 3,
                 lbaf0=9 << 16)


CSI_NVM, CSI_ZONED = 0, 2


def identify(ctrl: Controller, sqe: SQE) -> bytes | int:
    cns, nsid, csi = sqe.cdw10 & 0xFF, sqe.nsid, sqe.cdw11 >> 24
    if cns == spec.CNS_CONTROLLER:
        return id_ctrl(ctrl)
    if cns == spec.CNS_CS_CONTROLLER:          # QEMU answers the NVM and Zoned sets only
        if csi == CSI_NVM:
            return id_ctrl_nvm(ctrl)
        return bytes(IDENTIFY_SIZE) if csi == CSI_ZONED else S.INVALID_FIELD | DNR
    if cns in (spec.CNS_ACTIVE_NS_LIST, spec.CNS_CS_ACTIVE_NS_LIST):
        if nsid >= 0xFFFFFFFE:
            return S.INVALID_NSID | DNR
        if cns == spec.CNS_CS_ACTIVE_NS_LIST and csi not in (CSI_NVM, CSI_ZONED):
            return S.INVALID_FIELD | DNR
        nvm = cns == spec.CNS_ACTIVE_NS_LIST or csi == CSI_NVM   # every namespace is NVM
        ids = [i for i in ACTIVE_NSIDS if i > nsid] if nvm else []
        return b"".join(i.to_bytes(4, "little") for i in ids).ljust(IDENTIFY_SIZE, b"\0")
    if cns in (spec.CNS_NAMESPACE, spec.CNS_NS_DESCRIPTORS, spec.CNS_CS_NAMESPACE,
               spec.CNS_CS_INDEP_NAMESPACE):
        if nsid == 0 or nsid == BROADCAST_NSID or nsid > ctrl.config.nn:
            return S.INVALID_NSID | DNR
        active = nsid in ACTIVE_NSIDS
        if cns == spec.CNS_NAMESPACE:
            return id_ns(ctrl) if active else bytes(IDENTIFY_SIZE)
        if not active and cns == spec.CNS_NS_DESCRIPTORS:
            return S.INVALID_FIELD | DNR
        if cns == spec.CNS_NS_DESCRIPTORS:   # QEMU 11.1 by default: the CSI descriptor only
            return bytes((4, 1, 0, 0, 0)).ljust(IDENTIFY_SIZE, b"\0")
        if cns == spec.CNS_CS_NAMESPACE and active and csi != CSI_NVM:
            return S.INVALID_FIELD | DNR      # QEMU: no Zoned structure for an NVM namespace
        return bytes(IDENTIFY_SIZE)
    return S.INVALID_FIELD | DNR


def smart_log(ctrl: Controller) -> bytes:
    f = ctrl.features
    warning = ctrl.smart_critical_warning
    if ctrl.temperature >= f.temp_thresh_hi or ctrl.temperature <= f.temp_thresh_lo:
        warning |= spec.SMART_WARN_TEMPERATURE
    hours = (ctrl.now // 1_000_000 - ctrl.starttime_ms) // 3_600_000
    return build(
        SMART_LOG, SMART_LOG_SIZE, critical_warning=warning, temperature=ctrl.temperature,
        avail_spare=0, spare_thresh=0, percent_used=0,
        data_units_read=-(-ctrl.data_units_read // 1000),
        data_units_written=-(-ctrl.data_units_written // 1000),
        host_reads=ctrl.host_reads, host_writes=ctrl.host_writes, power_on_hours=hours,
    )


def effects_log() -> bytes:
    out = bytearray(EFFECTS_LOG_SIZE)
    for op, value in ADMIN_EFFECTS.items():
        out[op * 4:op * 4 + 4] = value.to_bytes(4, "little")
    for op, value in IO_EFFECTS.items():
        out[1024 + op * 4:1024 + op * 4 + 4] = value.to_bytes(4, "little")
    return bytes(out)


def log_page(ctrl: Controller, lid: int, nsid: int) -> bytes | int:
    if lid == LogId.ERROR_INFORMATION:
        return bytes(ERROR_LOG_ENTRY_SIZE)
    if lid == LogId.SMART_HEALTH:
        if nsid != BROADCAST_NSID and nsid not in ACTIVE_NSIDS:
            return S.INVALID_NSID | DNR
        return smart_log(ctrl)
    if lid == LogId.FW_SLOT:
        return build(FW_SLOT_LOG, FW_SLOT_LOG_SIZE, afi=1, frs1=FIRMWARE_REVISION)
    if lid == LogId.CHANGED_NS_LIST:
        ids = ctrl.changed_nsids
        body = (b"\xff\xff\xff\xff" if len(ids) > 1024
                else b"".join(i.to_bytes(4, "little") for i in ids))
        return body.ljust(CHANGED_NS_LOG_SIZE, b"\0")
    if lid == LogId.COMMANDS_SUPPORTED_EFFECTS:
        return effects_log()
    return S.INVALID_FIELD | DNR
