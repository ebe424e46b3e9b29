"""Campaign files: the shipped ones load, and bad ones fail with CampaignError."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nvmefuzz.errors import CampaignError, FormatError
from nvmefuzz.fuzz.campaign import (
    DEFAULT_WEIGHTS, Campaign, available, campaigns_dir, load, parse, validate,
)
from nvmefuzz.fuzz.compare import WAIVERS
from nvmefuzz.fuzz.machine import build_machine

STRATEGIES = Path(__file__).resolve().parents[2] / "strategies"
SIX = ("default", "cq-pressure", "aer-storm", "doorbell-chaos", "reset-storm",
       "inflight-migration")
FILES = sorted(STRATEGIES.glob("*.toml"))


def rule_counts(camp: Campaign) -> dict[str, int]:
    """How many copies of each rule the campaign's machine registers."""
    out: dict[str, int] = {}
    for rule in build_machine(camp).setup_state().rules:
        name = re.sub(r"_\d+$", "", rule.function.__name__)
        out[name] = out.get(name, 0) + 1
    return out


def test_the_six_campaigns_exist():
    """The six named campaigns ship in strategies/ and are listed as available."""
    names = {p.stem for p in FILES}
    assert set(SIX) <= names
    assert set(SIX) <= set(available())
    assert campaigns_dir().resolve() == STRATEGIES


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_campaign_file_loads_and_validates(path):
    """Each file parses, names itself after its file, validates and builds a machine."""
    camp = load(str(path))
    assert camp == load(path.stem)
    assert camp.name == path.stem
    assert camp.description
    validate(camp)
    assert set(camp.weights) == set(DEFAULT_WEIGHTS)
    assert all(0 <= w <= 20 for w in camp.weights.values()) and any(camp.weights.values())
    assert set(camp.waivers) <= set(WAIVERS)
    assert rule_counts(camp) == {r: w for r, w in camp.weights.items() if w}


def test_weights_override_only_what_they_name():
    """Rules a campaign does not name keep their default weight; zero disables a rule."""
    camp = load("cq-pressure")
    assert camp.weights["io"] == 8 and camp.weights["identify"] == 0
    assert camp.weights["aer"] == DEFAULT_WEIGHTS["aer"]
    counts = rule_counts(camp)
    assert counts["io"] == 8 and counts["aer"] == DEFAULT_WEIGHTS["aer"]
    assert "identify" not in counts


def test_minimal_campaign_gets_defaults():
    """A campaign with just a name takes every default."""
    camp = parse('name = "tiny"')
    assert camp == Campaign(name="tiny")
    assert camp.profile == "full" and camp.target == "model" and camp.steps == 60
    assert parse("", "/somewhere/unnamed.toml").name == "unnamed"


def test_with_profile_swaps_only_the_profile():
    """with_profile(None) is the same campaign; a name replaces the profile."""
    camp = load("default")
    assert camp.with_profile(None) is camp
    v3 = camp.with_profile("qemu-v3-patch")
    assert v3.profile == "qemu-v3-patch" and v3.weights == camp.weights


@pytest.mark.parametrize("text,needle", [
    ('name = "x"\nsteps = [', "not valid TOML"),
    ("name = \"x\"\n[weights]\nteleport = 3\n", "teleport"),
    ('name = "x"\nprofile = "qemu-9000"\n', "qemu-9000"),
    ('name = "x"\nwaivers = ["cosmic-rays"]\n', "cosmic-rays"),
    ("name = \"x\"\n[weights]\nio = 21\n", "io"),
    ("name = \"x\"\n[weights]\nio = -1\n", "io"),
    ("name = \"x\"\n[weights]\nio = 1.5\n", "io"),
    ('name = "x"\ntarget = "toaster"\n', "toaster"),
    ('name = "x"\nrefusals = "ignore"\n', "refusals"),
    ('name = "x"\nsteps = 0\n', "steps"),
    ('name = "x"\ncolour = "red"\n', "colour"),
    ('name = "x"\nqueue_pairs = 5\n', "queue_pairs"),
    ('name = "x"\nqueue_pairs = "two"\n', "queue_pairs"),
], ids=["toml", "rule", "profile", "waiver", "weight-high", "weight-negative", "weight-float",
        "target", "refusals", "steps", "key", "pairs-high", "pairs-text"])
def test_bad_campaigns_name_the_bad_entry(text, needle):
    """Every mistake is a CampaignError whose message names the offending entry."""
    with pytest.raises(CampaignError) as info:
        parse(text, "bad.toml")
    assert needle in str(info.value)
    assert "bad.toml" in str(info.value)
    assert isinstance(info.value, FormatError) and isinstance(info.value, ValueError)


def test_all_weights_zero_is_refused():
    """A campaign that disables every rule is refused."""
    body = "\n".join(f"{rule} = 0" for rule in DEFAULT_WEIGHTS)
    with pytest.raises(CampaignError, match="weight 0"):
        parse(f'name = "idle"\n[weights]\n{body}\n')


def test_bad_campaign_file_on_disk(tmp_path):
    """A bad file loaded by path fails with its path and the bad name in the message."""
    bad = tmp_path / "broken.toml"
    bad.write_text('name = "broken"\n[weights]\nwarp_drive = 2\n')
    with pytest.raises(CampaignError, match="warp_drive") as info:
        load(str(bad))
    assert str(bad) in str(info.value)


def test_unknown_campaign_name_lists_the_available_ones():
    """Loading a name that has no file says so and lists the campaigns there are."""
    with pytest.raises(CampaignError, match="no-such-campaign") as info:
        load("no-such-campaign")
    for name in SIX:
        assert name in str(info.value)


def test_unknown_profile_via_with_profile_fails_validation():
    """validate() catches a bad profile put in after loading."""
    with pytest.raises(CampaignError, match="nope"):
        validate(load("default").with_profile("nope"))
