"""NVMe numbers: opcodes, status codes, feature and log identifiers, event types.

Everything here is a name for a number taken from the NVMe Base and NVM Command Set
specifications (and checked against libnvme's ``types.h``).  Statuses are kept as QEMU keeps
them internally: one 16-bit value ``SCT << 8 | SC`` plus the ``MORE`` and ``DNR`` flags, so a
CQE's status field is ``status << 1 | phase``.
"""

from __future__ import annotations

import enum


class AdminOpcode(enum.IntEnum):
    DELETE_IO_SQ = 0x00
    CREATE_IO_SQ = 0x01
    GET_LOG_PAGE = 0x02
    DELETE_IO_CQ = 0x04
    CREATE_IO_CQ = 0x05
    IDENTIFY = 0x06
    ABORT = 0x08
    SET_FEATURES = 0x09
    GET_FEATURES = 0x0A
    ASYNC_EVENT_REQUEST = 0x0C
    NS_MANAGEMENT = 0x0D
    FW_COMMIT = 0x10
    FW_DOWNLOAD = 0x11
    KEEP_ALIVE = 0x18
    DOORBELL_BUFFER_CONFIG = 0x7C
    FORMAT_NVM = 0x80


class IoOpcode(enum.IntEnum):
    FLUSH = 0x00
    WRITE = 0x01
    READ = 0x02
    WRITE_UNCORRECTABLE = 0x04
    COMPARE = 0x05
    WRITE_ZEROES = 0x08
    DATASET_MANAGEMENT = 0x09


class Status(enum.IntEnum):
    """``SCT << 8 | SC`` for every status the model produces."""

    SUCCESS = 0x0000
    INVALID_OPCODE = 0x0001
    INVALID_FIELD = 0x0002
    CID_CONFLICT = 0x0003
    DATA_TRANSFER_ERROR = 0x0004
    INTERNAL_ERROR = 0x0006
    ABORT_REQUESTED = 0x0007
    ABORTED_SQ_DELETION = 0x0008
    INVALID_NSID = 0x000B
    COMMAND_SEQUENCE_ERROR = 0x000C
    INVALID_PRP_OFFSET = 0x0013
    LBA_OUT_OF_RANGE = 0x0080
    CQ_INVALID = 0x0100
    INVALID_QID = 0x0101
    INVALID_QSIZE = 0x0102
    ABORT_LIMIT_EXCEEDED = 0x0103
    AER_LIMIT_EXCEEDED = 0x0105
    INVALID_LOG_PAGE = 0x0109
    INVALID_IRQ_VECTOR = 0x0108
    INVALID_QUEUE_DELETION = 0x010C
    FEATURE_NOT_SAVEABLE = 0x010D
    FEATURE_NOT_CHANGEABLE = 0x010E
    FEATURE_NOT_NS_SPECIFIC = 0x010F
    IOCS_COMBINATION_REJECTED = 0x012B
    WRITE_FAULT = 0x0280
    UNRECOVERED_READ = 0x0281
    COMPARE_FAILURE = 0x0285


MORE = 0x2000
DNR = 0x4000


def sct(status: int) -> int:
    """Status Code Type of a 15-bit status."""
    return (status >> 8) & 0x7


def sc(status: int) -> int:
    """Status Code of a 15-bit status."""
    return status & 0xFF


class FeatureId(enum.IntEnum):
    ARBITRATION = 0x01
    POWER_MANAGEMENT = 0x02
    TEMPERATURE_THRESHOLD = 0x04
    ERROR_RECOVERY = 0x05
    VOLATILE_WRITE_CACHE = 0x06
    NUMBER_OF_QUEUES = 0x07
    INTERRUPT_COALESCING = 0x08
    INTERRUPT_VECTOR_CONFIG = 0x09
    WRITE_ATOMICITY = 0x0A
    ASYNC_EVENT_CONFIG = 0x0B
    TIMESTAMP = 0x0E
    KEEP_ALIVE_TIMER = 0x0F
    HOST_BEHAVIOR_SUPPORT = 0x16
    COMMAND_SET_PROFILE = 0x19


class LogId(enum.IntEnum):
    ERROR_INFORMATION = 0x01
    SMART_HEALTH = 0x02
    FW_SLOT = 0x03
    CHANGED_NS_LIST = 0x04
    COMMANDS_SUPPORTED_EFFECTS = 0x05


class AsyncEventType(enum.IntEnum):
    ERROR = 0
    SMART = 1
    NOTICE = 2
    IO_COMMAND_SET = 6
    VENDOR = 7


class ErrorEventInfo(enum.IntEnum):
    INVALID_DOORBELL_REGISTER = 0x00
    INVALID_DOORBELL_VALUE = 0x01


class SmartEventInfo(enum.IntEnum):
    RELIABILITY = 0x00
    TEMPERATURE_THRESHOLD = 0x01
    SPARE_BELOW_THRESHOLD = 0x02


class NoticeEventInfo(enum.IntEnum):
    NS_ATTRIBUTE_CHANGED = 0x00


#: Get Log Page with RAE=0 for these logs clears (unmasks) events of this type.
LOG_CLEARS_EVENT_TYPE = {
    LogId.ERROR_INFORMATION: AsyncEventType.ERROR,
    LogId.SMART_HEALTH: AsyncEventType.SMART,
    LogId.CHANGED_NS_LIST: AsyncEventType.NOTICE,
}

#: SMART critical warning bits.
SMART_WARN_TEMPERATURE = 1 << 1

#: Identify CNS values answered.
CNS_NAMESPACE = 0x00
CNS_CONTROLLER = 0x01
CNS_ACTIVE_NS_LIST = 0x02
CNS_NS_DESCRIPTORS = 0x03
CNS_CS_NAMESPACE = 0x05
CNS_CS_CONTROLLER = 0x06
CNS_CS_ACTIVE_NS_LIST = 0x07
CNS_CS_INDEP_NAMESPACE = 0x08

BROADCAST_NSID = 0xFFFFFFFF
