"""Campaigns: which rules, their weights, step counts, target, profile, waivers.

A campaign is one TOML file in the top-level ``strategies/`` folder::

    name = "cq-pressure"
    description = "..."
    target = "model"
    profile = "full"
    steps = 80              # steps per example (Hypothesis stateful_step_count)
    queue_pairs = 0         # up to this many I/O queue pairs built at power-on (0..4)
    refusals = "finding"    # or "continue": a refused migration is counted, the run goes on
    waivers = []
    [weights]               # rule -> weight; 0 disables; rules not named keep the default
    consume = 1
    io = 6

Loading validates every name against the machine's rules, the known profiles, targets and
waivers, and fails with ``CampaignError`` naming the bad entry.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import attrs

from nvmefuzz.errors import CampaignError
from nvmefuzz.fuzz.compare import WAIVERS
from nvmefuzz.model.profiles import get as get_profile

#: the default weight of every rule of the machine (see machine.py)
DEFAULT_WEIGHTS: dict[str, int] = {
    "enable": 2, "create_cq": 3, "create_sq": 3, "delete_sq": 1, "delete_cq": 1,
    "io": 6, "ring_sq": 2, "ring_cq": 1, "bad_doorbell": 1, "consume": 3, "advance": 3,
    "aer": 2, "identify": 1, "get_log_page": 2, "get_features": 1, "set_features": 2,
    "temperature_event": 1, "abort": 1, "bad_admin": 1, "dbbuf": 1, "ns_changed": 1,
    "register_write": 1, "register_read": 1, "reset": 1, "shutdown": 1, "restart": 0,
    "migrate": 2, "read_back": 2, "hold_io": 0,
}

TARGETS = ("model", "qemu")


@attrs.frozen
class Campaign:
    name: str
    description: str = ""
    target: str = "model"
    profile: str = "full"
    steps: int = 60
    refusals: str = "finding"
    waivers: tuple[str, ...] = ()
    weights: dict[str, int] = attrs.Factory(lambda: dict(DEFAULT_WEIGHTS))
    msix: bool = True
    queue_pairs: int = 0

    def with_profile(self, profile: str | None) -> Campaign:
        return self if profile is None else attrs.evolve(self, profile=profile)


def parse(text: str, origin: str = "<campaign>") -> Campaign:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CampaignError(f"{origin}: not valid TOML: {exc}") from None
    known = {"name", "description", "target", "profile", "steps", "refusals", "waivers",
             "weights", "msix", "queue_pairs"}
    extra = set(data) - known
    if extra:
        raise CampaignError(f"{origin}: unknown keys {sorted(extra)}")
    weights = dict(DEFAULT_WEIGHTS)
    for rule, w in data.get("weights", {}).items():
        if rule not in DEFAULT_WEIGHTS:
            raise CampaignError(f"{origin}: unknown rule {rule!r} in [weights]; "
                                f"rules: {', '.join(DEFAULT_WEIGHTS)}")
        if not isinstance(w, int) or not 0 <= w <= 20:
            raise CampaignError(f"{origin}: weight of {rule} must be an integer 0..20")
        weights[rule] = w
    camp = Campaign(
        name=str(data.get("name", Path(origin).stem)),
        description=str(data.get("description", "")),
        target=str(data.get("target", "model")),
        profile=str(data.get("profile", "full")),
        steps=int(data.get("steps", 60)),
        refusals=str(data.get("refusals", "finding")),
        waivers=tuple(data.get("waivers", ())),
        weights=weights,
        msix=bool(data.get("msix", True)),
        queue_pairs=data.get("queue_pairs", 0),
    )
    validate(camp, origin)
    return camp


def validate(camp: Campaign, origin: str = "<campaign>") -> None:
    if camp.target not in TARGETS:
        raise CampaignError(f"{origin}: unknown target {camp.target!r}")
    try:
        get_profile(camp.profile)
    except CampaignError as exc:
        raise CampaignError(f"{origin}: {exc}") from None
    if camp.refusals not in ("finding", "continue"):
        raise CampaignError(f"{origin}: refusals must be 'finding' or 'continue'")
    bad = [w for w in camp.waivers if w not in WAIVERS]
    if bad:
        raise CampaignError(f"{origin}: unknown waivers {bad}; known: {sorted(WAIVERS)}")
    if not 1 <= camp.steps <= 10_000:
        raise CampaignError(f"{origin}: steps must be 1..10000")
    if not isinstance(camp.queue_pairs, int) or not 0 <= camp.queue_pairs <= 4:
        raise CampaignError(f"{origin}: queue_pairs must be an integer 0..4")
    if not any(camp.weights.values()):
        raise CampaignError(f"{origin}: every rule has weight 0")


def campaigns_dir() -> Path:
    """The ``strategies/`` folder of the checkout (or the working directory's)."""
    here = Path.cwd() / "strategies"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[3] / "strategies"


def load(name_or_path: str) -> Campaign:
    path = Path(name_or_path)
    if not path.suffix:
        path = campaigns_dir() / f"{name_or_path}.toml"
    try:
        text = path.read_text()
    except OSError:
        names = ", ".join(sorted(p.stem for p in campaigns_dir().glob("*.toml")))
        raise CampaignError(f"no campaign {name_or_path!r} (looked for {path}); "
                            f"available: {names}") from None
    return parse(text, str(path))


def available() -> list[str]:
    return sorted(p.stem for p in campaigns_dir().glob("*.toml"))
