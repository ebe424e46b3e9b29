"""Traces: everything one example did, as values, and their canonical CBOR encoding.

A ``Trace`` holds the target configuration (kind, profile, controller options), the campaign,
the seed, the waivers and refusal policy in force, every step with concrete argument values,
and the verdict.  It is encoded as canonical CBOR of plain types only (ints, strings, bytes,
lists, maps; no tags) inside an envelope with a format name and version, so the same trace
always encodes to the same bytes and a newer nvmefuzz can refuse an older format clearly.
Decoding never raises anything but ``TraceFormatError``.
"""

from __future__ import annotations

import io
from typing import Any

import attrs
import cbor2

from nvmefuzz.errors import Divergence, TraceFormatError

FORMAT = "nvmefuzz-trace"
VERSION = 1

PASS, DIVERGENCE = "pass", "divergence"
VERDICT_KINDS = (PASS, DIVERGENCE, "refused", "crashed", "hung", "error")


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, str, bytes)):
        return value
    raise TraceFormatError(f"a trace cannot hold {type(value).__name__} values")


@attrs.frozen
class Step:
    """One host action with its concrete arguments."""

    action: str
    args: dict = attrs.field(factory=dict, converter=_plain)

    def to_plain(self) -> list:
        return [self.action, self.args]

    def render(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in sorted(self.args.items()))
        return f"{self.action}({inner})"


@attrs.frozen
class Verdict:
    kind: str = PASS
    signature: str = ""
    detail: str = ""
    step: int = -1                 # index of the step that produced it
    since_migration: int = -1      # steps since the last migration at that point
    cause: str = ""                # root cause key (``fuzz.cause``), when it was found
    #: the signatures of the other observations that differed in that step (on a target
    #: whose timing varies, which one differs first may change from run to run)
    also: tuple[str, ...] = attrs.field(default=(), converter=tuple)

    @classmethod
    def of(cls, exc: Divergence, step: int, since_migration: int = -1) -> Verdict:
        """The verdict a finding raised at ``step`` reaches."""
        return cls(exc.kind, exc.signature, exc.detail, step, since_migration, also=exc.also)

    @property
    def ok(self) -> bool:
        return self.kind == PASS

    @property
    def signatures(self) -> tuple[str, ...]:
        """Every way the failing step differed: the signature first."""
        return (self.signature, *self.also)

    @property
    def identity(self) -> str:
        """What tells two findings apart: the signature, and the root cause when known."""
        return f"{self.signature} [{self.cause}]" if self.cause else self.signature

    def to_plain(self) -> dict:
        plain = attrs.asdict(self)
        for name in ("cause", "also"):  # traces without them keep their bytes
            if not plain[name]:
                del plain[name]
        return plain


def _check_types(plain: dict, verdict: Verdict) -> None:
    target, waivers = plain["target"], plain["waivers"]
    if not (isinstance(target, dict) and all(isinstance(k, str) for k in target)):
        raise TypeError("target must be a map with string keys")
    if not (isinstance(waivers, list) and all(isinstance(w, str) for w in waivers)):
        raise TypeError("waivers must be a list of strings")
    for name in ("campaign", "refusals"):
        if not isinstance(plain[name], str):
            raise TypeError(f"{name} must be a string")
    if type(plain["seed"]) is not int:
        raise TypeError("seed must be an integer")
    also = plain["verdict"].get("also", [])
    if not (isinstance(also, list) and all(isinstance(a, str) for a in also)):
        raise TypeError("verdict also must be a list of strings")
    if not all(isinstance(getattr(verdict, f), str)
               for f in ("kind", "signature", "detail", "cause")) \
            or not all(type(getattr(verdict, f)) is int for f in ("step", "since_migration")):
        raise TypeError("verdict fields have the wrong types")


@attrs.frozen
class Trace:
    target: dict
    campaign: str
    seed: int
    steps: tuple[Step, ...]
    verdict: Verdict = Verdict()
    waivers: tuple[str, ...] = ()
    refusals: str = "finding"

    @property
    def profile(self) -> str:
        """Where the trace belongs: the migration profile for the model; for a real QEMU
        (which migrates by its own rules, whatever the campaign's profile) ``qemu-`` and the
        QEMU version when the target records one, else ``qemu-target``."""
        if self.target.get("kind") == "qemu":
            return f"qemu-{self.target.get('version') or 'target'}"
        return self.target.get("profile", "?")

    @property
    def migrations(self) -> int:
        return sum(1 for s in self.steps if s.action == "migrate")

    def to_plain(self) -> dict:
        return {
            "format": FORMAT, "version": VERSION, "target": _plain(self.target),
            "campaign": self.campaign, "seed": self.seed,
            "steps": [s.to_plain() for s in self.steps], "verdict": self.verdict.to_plain(),
            "waivers": list(self.waivers), "refusals": self.refusals,
        }

    def encode(self) -> bytes:
        return cbor2.dumps(self.to_plain(), canonical=True)

    @classmethod
    def decode(cls, blob: bytes) -> Trace:
        try:
            fp = io.BytesIO(blob)
            plain = cbor2.CBORDecoder(fp).decode()
        except Exception as exc:  # cbor2 raises several unrelated types on junk input
            raise TraceFormatError(f"not CBOR: {exc}") from None
        if fp.tell() != len(blob):
            raise TraceFormatError(f"{len(blob) - fp.tell()} bytes of junk after the trace")
        return cls.from_plain(plain)

    @classmethod
    def from_plain(cls, plain: Any) -> Trace:
        if not isinstance(plain, dict) or plain.get("format") != FORMAT:
            raise TraceFormatError("not an nvmefuzz trace (format tag missing)")
        if plain.get("version") != VERSION:
            raise TraceFormatError(f"trace format version {plain.get('version')!r}; "
                                   f"this nvmefuzz reads version {VERSION}")
        try:
            steps = tuple(Step(a, args) for a, args in plain["steps"])
            if not all(isinstance(s.action, str) and isinstance(s.args, dict) for s in steps):
                raise TypeError("step is not [action, args]")
            verdict = Verdict(**plain["verdict"])
            # exactly the types encode() writes (int(inf) would raise OverflowError, and a
            # lenient decode would not re-encode to the same bytes)
            _check_types(plain, verdict)
            trace = cls(target=_plain(plain["target"]), campaign=plain["campaign"],
                        seed=plain["seed"], steps=steps, verdict=verdict,
                        waivers=tuple(plain["waivers"]), refusals=plain["refusals"])
        except (KeyError, TypeError, ValueError) as exc:
            raise TraceFormatError(f"trace fields are malformed: {exc}") from None
        if verdict.kind not in VERDICT_KINDS:
            raise TraceFormatError(f"unknown verdict kind {verdict.kind!r}")
        return trace
