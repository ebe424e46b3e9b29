"""The Hypothesis state machine as plain pytest tests: no campaign finds anything in `full`."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import attrs
import pytest
from hypothesis import Phase, given, settings, strategies as st

from nvmefuzz.errors import Divergence, MigrationRefused
from nvmefuzz.fuzz.batch import batch_settings, run_batch
from nvmefuzz.fuzz.campaign import available, load
from nvmefuzz.fuzz.machine import SETTLE_NS, STEERED, Observer, build_machine
from nvmefuzz.fuzz.rules import BUILT
from nvmefuzz.fuzz.runner import run_campaign
from nvmefuzz.model import profiles
from nvmefuzz.protocol.spec import AdminOpcode as A, IoOpcode as IO
from nvmefuzz.targets.base import NS_CHANGED
from nvmefuzz.trace.schema import Step

CORPUS = Path(__file__).resolve().parents[1] / "corpus"


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


def _run(camp, examples: int = 6, steps: int = 25, steer: bool = True,
         derandomize: bool = False) -> Observer:
    obs = Observer()
    test = build_machine(camp, obs, steer=steer).TestCase
    test.settings = settings(max_examples=examples, stateful_step_count=steps, deadline=None,
                             database=None, derandomize=derandomize)
    test("runTest").runTest()
    return obs


def _only(**weights: int):
    """The default campaign with every rule off except ``weights``, and no I/O queue pair
    built at power-on."""
    camp = load("default")
    return attrs.evolve(camp, weights={r: weights.get(r, 0) for r in camp.weights},
                        queue_pairs=0)


def test_campaign_queue_pairs_are_built_at_power_on():
    """With no queue-creating rule, I/O runs only on the pairs the campaign starts with."""
    with_pairs = _run(attrs.evolve(_only(io=3, consume=1), queue_pairs=2))
    assert with_pairs.stats["action:create_cq"] > 0 and with_pairs.stats["action:io"] > 0
    without = _run(_only(io=3, consume=1, migrate=1))
    assert not without.stats["action:create_cq"] and not without.stats["action:io"]


def test_a_migration_looks_at_what_it_may_have_lost():
    """Read-backs right after a migration: register reads with no read rule enabled."""
    obs = _run(_only(migrate=3, advance=1), examples=10)
    assert obs.stats["migrations"] > 0
    assert obs.stats["action:reg_read"] > 0          # what enabling set: CC, CSTS, AQA, ...
    assert obs.stats["action:reg_read"] <= 2 * obs.stats["migrations"]


def test_queue_creating_weight_counts_while_queues_are_few():
    """Copies of create_cq past the first apply only below BUILT I/O CQs; the first always."""
    rules = [r for r in build_machine(_only(create_cq=3, io=1)).setup_state().rules
             if r.function.__name__.startswith("create_cq")]
    assert len(rules) == 3

    class Fake:
        def __init__(self, cqs: int) -> None:
            self.host = SimpleNamespace(sqs={0: SimpleNamespace(free=lambda: 1)},
                                        cqs=dict.fromkeys(range(cqs + 1)))

    def applicable(cqs: int) -> int:
        return sum(all(p(Fake(cqs)) for p in r.preconditions) for r in rules)
    assert applicable(0) == applicable(BUILT - 1) == 3
    assert applicable(BUILT) == applicable(BUILT + 3) == 1


def test_reset_weight_past_the_first_copy_waits_for_io_outstanding():
    """Copies of reset, shutdown and restart past the first apply only while an I/O SQ has
    commands outstanding (an AER on the admin SQ does not count), or while the controller
    failed at enable; the first always."""
    rules = build_machine(_only(reset=3, shutdown=2, restart=2, io=1)).setup_state().rules

    def machine(io: bool, failed: bool) -> SimpleNamespace:
        sq = lambda n: SimpleNamespace(outstanding=dict.fromkeys(range(n)))  # noqa: E731
        return SimpleNamespace(host=SimpleNamespace(sqs={0: sq(1), 1: sq(int(io))}, cqs={}),
                               failed=failed)

    def applicable(name: str, io: bool, failed: bool = False) -> int:
        return sum(all(p(machine(io, failed)) for p in r.preconditions) for r in rules
                   if r.function.__name__.split("_")[0] == name)
    assert [applicable(n, False) for n in ("reset", "shutdown", "restart")] == [1, 1, 1]
    assert [applicable(n, True) for n in ("reset", "shutdown", "restart")] == [3, 2, 2]
    assert [applicable(n, False, True) for n in ("reset", "shutdown", "restart")] == [3, 2, 2]


def test_restart_resets_and_builds_the_queue_pairs_again():
    """restart is a driver's controller reset: with no other rule building queues, I/O runs
    only on the pairs restarts build, and every restart is counted as a reset."""
    obs = _run(_only(restart=1, io=3, consume=1), examples=10)
    assert obs.stats["action:disable"] > 0 and obs.stats["resets"] >= obs.stats["action:disable"]
    assert obs.stats["action:create_sq"] > 0 and obs.stats["action:io"] > 0


def test_reset_storm_resets_a_controller_with_io_in_flight():
    """The campaign's promise: a share of its resets meet I/O in flight (and AERs).  Before
    the campaign started with queue pairs and held its resets for busy moments, none of 200
    resets in 30 examples did.  Four batches of 30 examples, pooled: the share of one batch
    ranges from a few percent to half (over 20 seeds the median is about 0.2)."""
    obs = Observer()
    for seed in range(1, 5):
        assert run_batch(build_machine(load("reset-storm"), obs), batch_settings(30, 60),
                         seed) is None
    resets = obs.stats["resets"]
    assert resets > 120
    assert obs.stats["reset with I/O in flight"] >= 0.1 * resets
    assert obs.stats["reset with AER requests outstanding"] > 0


def test_a_migration_may_let_the_guest_run_on():
    """Settling after a migration: time passes and CQs with commands outstanding are consumed,
    with neither the advance nor the consume rule enabled.  A fixed seed: ten random
    examples now and then hold no migration with a command outstanding (once in a suite
    run, none in 60 runs of this test alone)."""
    obs = _run(attrs.evolve(_only(io=3, migrate=3), queue_pairs=1), examples=10,
               derandomize=True)
    assert obs.stats["migrations"] > 0 and obs.stats["action:io"] > 0
    assert 0 < obs.stats["action:advance"] <= obs.stats["migrations"]
    assert obs.stats["action:consume"] >= obs.stats["action:advance"]


SET_ERR_REC = {"opc": int(A.SET_FEATURES), "cdw10": 0x05, "cdw11": 0x10, "nsid": 1}
#: two events of two types queued with no AER outstanding: a namespace change (Notice) and a
#: temperature above its threshold (SMART / Health)
TWO_EVENTS = (Step("environment", {"event": NS_CHANGED, "arg": 1}),
              Step("admin", {"opc": int(A.SET_FEATURES), "cdw10": 0x0B, "cdw11": 0x2}),
              Step("admin", {"opc": int(A.SET_FEATURES), "cdw10": 0x04, "cdw11": 0x100}))


def _migrate_after_set_features(profile: str, explained: frozenset = frozenset(),
                                steer: bool = True,
                                first: tuple = (Step("admin", SET_ERR_REC),)) -> list[str]:
    """Power on, take the steps ``first`` (set Error Recovery), migrate drawing no
    read-backs and no settling; the actions of the steps the migration took (it raises if
    one of them diverges)."""
    machine = build_machine(load("default").with_profile(profile), explained=explained,
                            steer=steer)
    taken: list[str] = []

    @given(st.none())
    @settings(max_examples=1, database=None, phases=[Phase.generate])
    def drive(_):
        m = machine()
        try:
            m.power_on(pairs=[])
            m.hold = True                      # no steered migration: only the one asked
            for step in first:
                m.do(step.action, **step.args)
            before = len(m.steps)
            m.r_migrate(data=None, looks=0, settle=False)
            taken.extend(s.action for s in m.steps[before:])
        finally:
            m.session.close()
    drive()
    return taken


def test_a_migration_that_lost_state_reads_back_what_the_example_changed():
    """Nothing lost (`full`): the migration alone.  Error Recovery lost: the migration reads
    back everything the example changed, whatever it drew, and the Get Features shows it."""
    assert _migrate_after_set_features("full") == ["migrate"]
    with pytest.raises(Divergence) as exc:
        _migrate_after_set_features("full-without-features.err_rec")
    assert exc.value.signature == "divergence:cqe/admin/GET_FEATURES/fid=0x05/dw0"


def test_a_loss_of_queued_events_is_read_back_with_an_aer_per_event():
    """Only the oldest queued event survives: one AER collects it on both sides, the second
    shows the loss."""
    assert _migrate_after_set_features("full", first=TWO_EVENTS).count("aer") == 0
    with pytest.raises(Divergence) as exc:
        _migrate_after_set_features("full+aer-queue-keeps-oldest", first=TWO_EVENTS)
    assert exc.value.signature == "divergence:cqe/admin/ASYNC_EVENT_REQUEST/missing"


def test_without_guidance_a_loss_is_not_read_back():
    """The read-back follows what the model shows inside: guidance the unguided baseline
    (``steer=False``) goes without."""
    assert _migrate_after_set_features("full-without-features.err_rec", steer=False) == [
        "migrate"]


def test_a_loss_known_findings_explain_is_not_read_back():
    """Error Recovery lost, but a known finding shows that: the migration alone."""
    assert _migrate_after_set_features("full-without-features.err_rec",
                                       frozenset({"features.err_rec"})) == ["migrate"]


def _one_example(machine, body) -> list[str]:
    """Run ``body`` on a new instance of ``machine`` as Hypothesis runs an example, teardown
    included; the actions the example took (a divergence ends it early and is raised)."""
    taken: list[str] = []

    @given(_=st.none())
    @settings(max_examples=1, database=None, phases=[Phase.generate])
    def drive(_):
        m = machine()
        try:
            body(m)
        finally:
            m.teardown()
            taken.extend(s.action for s in m.steps)
    drive()
    return taken


def _examples(machine, *examples: list[dict]) -> list[list[str]]:
    """Run each example (power on, then ``admin`` steps with these arguments) on its own
    instance of ``machine``; the actions each example took."""
    def body(steps: list[dict]):
        def run(m):
            m.power_on(pairs=[])
            for args in steps:
                m.do("admin", **args)
        return run
    return [_one_example(machine, body(steps)) for steps in examples]


def test_steering_migrates_where_no_migration_of_the_run_started_from():
    """The first step after power-on, and the first Set Features that makes a new read-back
    available, are followed by a migration nobody drew; the same change again is not."""
    (taken,) = _examples(build_machine(_only(migrate=1)), [SET_ERR_REC, SET_ERR_REC])
    assert taken == ["enable", "admin", "migrate", "admin"]
    (unsteered,) = _examples(build_machine(_only(migrate=1), steer=False), [SET_ERR_REC] * 2)
    assert unsteered == ["enable", "admin", "admin"]


def test_steering_migrates_again_from_deeper_in_a_hard_state():
    """AERs outstanding: one, two, three (each a depth of its own), then four (every slot
    used).  A steered migration follows each of the first three; three is the most one
    example steers, and the example ends with the last one, from the fourth."""
    def body(m):
        m.power_on(pairs=[])
        for _ in range(4):
            m.do("aer")
    taken = _one_example(build_machine(_only(migrate=1)), body)
    assert [a for a in taken if a in ("aer", "migrate")] == ["aer", "migrate"] * 4


def _write_in_flight(profile: str, steer: bool, wait: int = 0) -> list[str]:
    """Power on with one queue pair, send a Write, let ``wait`` ns pass and migrate with a
    settle if ``wait`` (else only what steering does); the actions the example took (a
    divergence ends it early)."""
    def body(m):
        m.power_on(pairs=[(8, 8, True, 0)])
        m.do("io", qid=1, opc=int(IO.WRITE), slba=0, nlb=1, pattern=1)
        if wait:
            m.r_advance(ns=wait)
            m.r_migrate(None, looks=0, settle=True)
    return _one_example(build_machine(attrs.evolve(_only(migrate=1), profile=profile),
                                      steer=steer), body)


def test_a_steered_migration_with_io_in_flight_lets_the_guest_run_on():
    """A Write in flight is a hard state no migration started from: the machine migrates,
    then lets half a latency pass and consumes the CQ, twice, so what the command did across
    the migration is compared (the unguided machine leaves it in flight).  No migration of
    the run has started from a controller in no hard state: the example ends with one."""
    built = ["enable", "create_cq", "create_sq", "io"]
    settle = ["advance", "consume"] * 2
    assert _write_in_flight("full", steer=True) == [*built, "migrate", *settle, "migrate"]
    assert _write_in_flight("full", steer=False) == built


def test_a_command_restarted_on_the_destination_is_late_for_the_first_look():
    """Half a latency after a Write, a migration: the source completes it (and interrupts)
    half a latency later, a destination that issues it again a full latency later.  The
    settle's first half sees the difference (a full latency at once would see both done)."""
    done = _write_in_flight("full", steer=False, wait=SETTLE_NS // 2)
    # the faithful design: the Write completes at the first look, so there is no second
    assert done[3:] == ["io", "advance", "migrate", "advance", "consume"]
    with pytest.raises(Divergence, match="irq/missing"):
        _write_in_flight("full+inflight-restarted", steer=False, wait=SETTLE_NS // 2)


def test_steering_memory_changes_only_between_batches():
    """Within a batch every example steers alike (Hypothesis replays choices and must get the
    same steps); the next batch does not migrate again where the last one did."""
    machine = build_machine(_only(migrate=1))
    first, second = _examples(machine, [SET_ERR_REC], [SET_ERR_REC])
    assert first == second == ["enable", "admin", "migrate"]
    machine.before_batch()
    assert _examples(machine, [SET_ERR_REC]) == [["enable", "admin"]]


def _set(fid: int, cdw11: int) -> dict:
    return {"opc": int(A.SET_FEATURES), "cdw10": fid, "cdw11": cdw11, "nsid": 1}


#: five Set Features, each of a feature no earlier step changed
FIVE_SETS = [_set(0x05, 0x10), _set(0x06, 1), _set(0x08, 0x0105), _set(0x0B, 0x2),
             _set(0x04, 0x150)]


def test_steering_is_capped_per_example_and_the_example_ends_with_a_last_migration():
    """Five new features set: STEERED migrations follow the first ones, and the example's
    end migrates once more for the two the cap left unmigrated; the next batch, whose run
    has migrated from every one of them, migrates nowhere."""
    assert STEERED == 3
    machine = build_machine(_only(migrate=1))
    (first,) = _examples(machine, FIVE_SETS)
    assert first == ["enable", *["admin", "migrate"] * 3, "admin", "admin", "migrate"]
    machine.before_batch()
    (second,) = _examples(machine, FIVE_SETS)
    assert second == ["enable", *["admin"] * 5]
    # nothing new changed since the last migration: the end adds none
    assert _examples(build_machine(_only(migrate=1)), [SET_ERR_REC]) == [
        ["enable", "admin", "migrate"]]


def test_the_last_migration_shows_a_loss_past_the_cap_and_the_unguided_machine_has_none():
    """A design that loses the Error Recovery feature: set fourth, past the cap, only the
    example's last migration (and its read-back) shows it.  The unguided machine ends the
    same example with no migration, so sees nothing."""
    late = [_set(0x06, 1), _set(0x08, 0x0105), _set(0x0B, 0x2), SET_ERR_REC]
    camp = _only(migrate=1).with_profile("full-without-features.err_rec")
    with pytest.raises(Divergence, match="cqe"):
        _examples(build_machine(camp), late)
    assert _examples(build_machine(camp, steer=False), late) == [["enable", *["admin"] * 4]]


def _lost_intx_status(steer: bool, ring: bool) -> list[str]:
    """Pin-based interrupts on a design that does not save the INTx status: an admin
    completion's status bit left set, a migration, then a CQ head doorbell if ``ring``; the
    actions the example took (a divergence ends it early).  The bit stays set as in QEMU:
    the head rung on the empty admin CQ first takes ``cq_pending`` below zero, so consuming
    the completion does not bring it back to the zero that clears the bit."""
    camp = load("mutant-hunt-intx").with_profile("full-without-irq_status")
    camp = attrs.evolve(camp, weights={r: int(r == "migrate") for r in camp.weights})
    assert not camp.msix

    def body(m):
        m.power_on(pairs=[])
        m.do("ring_cq", qid=0)
        m.do("admin", opc=int(A.DELETE_IO_SQ), cdw10=0)     # an error, and an interrupt
        assert m.session.twin.ctrl.irq_status == 1
        m.r_migrate(None, looks=0, settle=False)
        if ring:
            m.do("ring_cq", qid=0)
    return _one_example(build_machine(camp, steer=steer), body)


def test_a_lost_intx_status_is_shown_before_the_reads_set_it_again():
    """The loss inside is read back with CQ head doorbells first: the twin's INTx status
    stays set and its line asserted, the destination's line drops.  The read-backs (admin
    commands) first would set the lost bit again on both sides and hide it.  The unguided
    machine sees it only if the guest rings next."""
    with pytest.raises(Divergence, match="irq/extra"):
        _lost_intx_status(steer=True, ring=False)
    assert _lost_intx_status(steer=False, ring=False) == ["enable", "ring_cq", "admin",
                                                         "migrate"]
    with pytest.raises(Divergence, match="irq/extra"):
        _lost_intx_status(steer=False, ring=True)


def test_steered_migrations_are_counted_and_dropped_with_the_guidance():
    """A run counts its steered migrations; the unguided machine makes none."""
    camp = attrs.evolve(_only(io=3, aer=1, migrate=1), queue_pairs=1)
    guided, unguided = _run(camp, examples=8), _run(camp, examples=8, steer=False)
    assert guided.stats["migrations steered"] > 0
    assert unguided.stats["migrations steered"] == 0


def test_a_run_steers_less_as_its_batches_remember():
    """``run_campaign`` keeps one memory for all its batches: once the first batch has
    migrated from the states and changes the campaign reaches easily, later batches steer
    fewer migrations (with a memory per batch each would steer about as many)."""
    per_batch: list[int] = []
    run_campaign(load("default"), seed=1, examples=80, batch=20,
                 progress=lambda r: per_batch.append(r.stats["migrations steered"]
                                                     - sum(per_batch)))
    assert len(per_batch) == 4 and per_batch[0] > 0
    assert max(per_batch[1:]) < per_batch[0]
    assert sum(per_batch[1:]) < 3 * per_batch[0] * 0.8


def _refuse_a_full_cq(ctrl) -> None:
    """A design that refuses to save while a CQ holds waiting completions, and whose error
    path leaves the source exactly as it was."""
    if any(cq.waiting for cq in ctrl.cqs.values()):
        raise MigrationRefused("a CQ holds waiting completions")


def test_sq_exhaustion_saves_with_sq_entries_not_fetched_and_runs_on_after_a_refusal(
        monkeypatch):
    """The campaign's point: migrations start with SQ entries rung but not fetched (request
    pools used up by I/O in flight), and a design that refuses such a save is not stopped
    there: the refusal is counted and the source's next steps are compared with its twin's."""
    camp = load("sq-exhaustion")
    full = Observer()
    test = build_machine(camp.with_profile("full"), full).TestCase
    test.settings = settings(max_examples=30, stateful_step_count=80, deadline=None,
                             database=None, derandomize=True)
    test("runTest").runTest()
    assert full.stats["migrated with SQ entries not fetched"] > 0
    assert full.stats["refusals"] == 0

    refusing = attrs.evolve(profiles.get("full"), name="full-refusing-a-full-cq",
                            pre_save=_refuse_a_full_cq)
    monkeypatch.setitem(profiles.PROFILES, refusing.name, refusing)
    seen = Observer()
    test = build_machine(camp.with_profile(refusing.name), seen).TestCase
    test.settings = settings(max_examples=30, stateful_step_count=80, deadline=None,
                             database=None, derandomize=True)
    test("runTest").runTest()           # a refusal is no finding, and nothing else differs
    assert seen.stats["refusals"] > 0 and seen.stats["migrations"] > 0
