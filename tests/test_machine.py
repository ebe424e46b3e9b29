"""The Hypothesis state machine as plain pytest tests: no campaign finds anything in `full`."""

from __future__ import annotations

from hypothesis import settings

from nvmefuzz.fuzz.campaign import available, load
from nvmefuzz.fuzz.machine import Observer, build_machine


def machine_test(name: str, examples: int, steps: int):
    """The TestCase of campaign ``name`` on the `full` profile with a small budget."""
    camp = load(name).with_profile("full")
    test = build_machine(camp).TestCase
    test.settings = settings(max_examples=examples, stateful_step_count=steps, deadline=None)
    test.__doc__ = f"Campaign {name} cannot tell a `full` migration from its twin."
    return test


TestDefault = machine_test("default", 25, 30)
TestCqPressure = machine_test("cq-pressure", 8, 40)
TestAerStorm = machine_test("aer-storm", 8, 30)
TestDoorbellChaos = machine_test("doorbell-chaos", 8, 30)
TestResetStorm = machine_test("reset-storm", 8, 30)
TestInflightMigration = machine_test("inflight-migration", 8, 30)

#: campaigns added to strategies/ later get a small run too
for _name in sorted(set(available()) - {"default", "cq-pressure", "aer-storm",
                                        "doorbell-chaos", "reset-storm",
                                        "inflight-migration"}):
    _cls = f"TestCampaign_{_name.replace('-', '_')}"
    globals()[_cls] = machine_test(_name, 5, 30)
    globals()[_cls].__name__ = globals()[_cls].__qualname__ = _cls


def test_machine_drives_sessions_and_migrations():
    """A run of the default machine executes steps and migrations and reports examples."""
    obs = Observer()
    test = build_machine(load("default"), obs).TestCase
    test.settings = settings(max_examples=10, stateful_step_count=30, deadline=None,
                             database=None)
    test("runTest").runTest()
    assert obs.stats["examples"] >= 10
    assert obs.stats["steps"] > obs.stats["examples"]
    assert obs.stats["migrations"] > 0
    assert obs.stats["action:enable"] >= obs.stats["examples"]
    assert obs.last_failure is None


def test_bare_machine_only_counts():
    """A bare machine keeps the shape but runs no session steps."""
    obs = Observer()
    test = build_machine(load("default"), obs, bare=True).TestCase
    test.settings = settings(max_examples=5, stateful_step_count=10, deadline=None,
                             database=None)
    test("runTest").runTest()
    assert obs.stats["examples"] >= 5 and obs.stats["steps"] > 0
    assert obs.stats["migrations"] == 0 and not obs.stats["action:enable"]
