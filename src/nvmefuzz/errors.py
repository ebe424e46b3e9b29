"""The one error hierarchy of nvmefuzz.

Every error raised on purpose derives from ``NvmeFuzzError`` and also from the builtin that a
caller would naturally catch, so ``except ValueError`` keeps working.  Four kinds are kept apart:

* we built something illegal (``IllegalCommand``),
* the device answered against the spec or our expectation (``DeviceProtocolError``),
* the machinery around a target failed (``TargetError`` and its children),
* a finding: the migrated controller and its twin disagree (``Divergence``, an AssertionError
  so Hypothesis shrinks it).

Files we read (snapshots, traces, corpus entries, campaigns) fail with ``FormatError``
subclasses and never with a bare exception from a library.
"""

from __future__ import annotations


class NvmeFuzzError(Exception):
    """Root of every error nvmefuzz raises on purpose."""


class IllegalCommand(NvmeFuzzError, ValueError):
    """The host side was asked to build something the encoder cannot represent.

    Raised by the codecs (a field does not fit its width) and by the host driver.  Fix the
    caller; this never describes device behaviour.
    """


class DeviceProtocolError(NvmeFuzzError, RuntimeError):
    """A target answered in a way no NVMe controller may (e.g. a CQE for an unknown CID)."""


class FormatError(NvmeFuzzError, ValueError):
    """A file or blob we were given is not what it claims to be."""


class SnapshotError(FormatError):
    """A controller snapshot is truncated, corrupted, of another version or hostile.

    ``restore`` raises only this; the message says which field was wrong.
    """


class TraceFormatError(FormatError):
    """A trace or corpus file cannot be decoded or has an unsupported format version."""


class CampaignError(FormatError):
    """A campaign file in ``strategies/`` names an unknown rule, profile or target."""


class TargetError(NvmeFuzzError, RuntimeError):
    """The machinery around a target failed (process, socket, missing binary).

    ``cause`` keeps the root exception when there is one.
    """

    def __init__(self, msg: str, cause: BaseException | None = None) -> None:
        super().__init__(msg)
        self.cause = cause


class TargetUnavailable(TargetError):
    """A target cannot be used on this machine; the message says why."""


class TargetTimeout(TargetError, TimeoutError):
    """A target did not answer within its bound (a hang)."""


class QtestProtocolError(DeviceProtocolError):
    """QEMU's qtest stream held a line the protocol does not allow, or a request could not
    be encoded (the codec refuses what QEMU would abort on)."""


class QtestCommandFailed(TargetError):
    """A well-formed qtest ``FAIL``/``ERR`` reply: QEMU refused a harness request."""


class TargetCrashed(TargetError):
    """The target process died; the message keeps its exit status or signal and stderr."""


class Divergence(NvmeFuzzError, AssertionError):
    """A finding: the migrated controller and its never-migrated twin were told apart.

    ``kind`` is the verdict class (``divergence``, ``refused``, ``crashed``, ``hung``),
    ``observation`` the first differing observation, ``detail`` a human explanation,
    ``others`` the observations that differed after it in the same step.
    """

    def __init__(self, kind: str, observation: str, detail: str,
                 others: tuple[str, ...] = ()) -> None:
        super().__init__(f"{kind}: {observation}: {detail}")
        self.kind = kind
        self.observation = observation
        self.detail = detail
        self.others = tuple(others)

    @property
    def signature(self) -> str:
        """Verdict class plus first differing observation: equal findings collapse on it."""
        return f"{self.kind}:{self.observation}"

    @property
    def also(self) -> tuple[str, ...]:
        """The signatures of the other observations that differed in that step."""
        return tuple(f"{self.kind}:{o}" for o in self.others)


class MigrationRefused(NvmeFuzzError, RuntimeError):
    """A migration design's save hook declined to save; the controller keeps running.

    ``reason`` is the design's own error text (for QEMU, the QMP error message).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"migration refused: {reason}")
        self.reason = reason


class MigrationHung(NvmeFuzzError, RuntimeError):
    """A migration design's save hook would never return: it waits for something nothing
    can do while it runs (a bottom half, with the lock it holds).  The source is lost.

    ``reason`` names what it waits for, with queue indices in brackets (``cq[1]``).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"migration hung: {reason}")
        self.reason = reason
