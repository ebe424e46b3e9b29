"""The mutant catalogue: generated from the schema, resolvable by name, and its hooks run."""

import pytest

from nvmefuzz.errors import Divergence
from nvmefuzz.fuzz.session import Session
from nvmefuzz.model import snapshot as snap
from nvmefuzz.model.profiles import get
from nvmefuzz.model.profiles import mutant_hooks as h, mutants as m
from nvmefuzz.protocol.spec import AdminOpcode as A, IoOpcode as IO
from nvmefuzz.targets import TargetConfig
from nvmefuzz.trace.schema import Step

#: a short host session that reaches every hard state before migrating twice
RICH = (
    Step("enable", {"asqs": 7, "acqs": 7}),
    Step("create_cq", {"qid": 1, "size": 2, "ien": 1, "iv": 1}),
    Step("create_sq", {"qid": 1, "cqid": 1, "size": 4}),
    Step("dbbuf", {}),
    *[Step("aer", {}) for _ in range(4)],
    Step("admin", {"opc": int(A.SET_FEATURES), "cdw10": 0x0B, "cdw11": 0x2}),
    *[Step("io", {"qid": 1, "opc": int(IO.WRITE), "slba": i, "nlb": 1, "pattern": i})
      for i in range(3)],
    Step("advance", {"ns": 50_000}),
    Step("io", {"qid": 1, "opc": int(IO.READ), "slba": 0, "nlb": 1}),
    Step("environment", {"event": "ns_changed", "arg": 1}),
    Step("admin", {"opc": int(A.SET_FEATURES), "cdw10": 0x04, "cdw11": 0x100}),
    Step("migrate", {}),
    Step("consume", {"qid": 1}),
    Step("advance", {"ns": 50_000}),
    Step("consume", {"qid": 1}),
    Step("admin", {"opc": int(A.GET_LOG_PAGE), "cdw10": 0x02 | 127 << 16,
                   "nsid": 0xFFFFFFFF, "length": 512}),
    Step("admin", {"opc": int(A.GET_FEATURES), "cdw10": 0x0B}),
    Step("migrate", {}),
    Step("io", {"qid": 1, "opc": int(IO.READ), "slba": 1, "nlb": 1}),
    Step("advance", {"ns": 50_000}),
    Step("consume", {"qid": 1}),
    Step("consume", {"qid": 0}),
)


def run(profile: str) -> str:
    session = Session(TargetConfig(profile=profile))
    try:
        for step in RICH:
            session.apply(step)
        return "pass"
    except Divergence as exc:
        return exc.signature
    finally:
        session.close()


def test_rich_session_passes_under_full():
    """The reference design is indistinguishable on the rich session."""
    assert run("full") == "pass"


def test_field_mutants_grow_with_the_schema(monkeypatch):
    """Adding a state field to the schema adds a field mutant without writing one."""
    before = set(m.field_mutants())
    monkeypatch.setattr(snap, "SCHEMA", snap.SCHEMA + ("features.new_field",))
    after = set(m.field_mutants())
    assert after - before == {"full-without-features.new_field"}


def test_field_mutants_cover_every_saved_path():
    """There is exactly one field mutant per path that full saves."""
    names = {n for n, p in m.MUTANTS.items() if n.startswith("full-without-")}
    assert names == {f"full-without-{p}" for p in get("full").saves}


@pytest.mark.parametrize("name", sorted(m.MUTANTS))
def test_every_mutant_resolves_and_runs_its_hooks(name):
    """Each mutant resolves by name, differs from full, and survives a rich session's hooks."""
    profile = get(name)
    assert profile.name == name
    assert profile != get("full")
    result = run(name)
    assert result == "pass" or result.split(":")[0] in ("divergence", "refused", "crashed")


@pytest.mark.parametrize("name", ["full+waiting-last-dropped", "full+waiting-reordered",
                                  "full+vector-ien-swapped", "full+dbbuf-addresses-zero"])
def test_rich_session_catches_mutants_that_touch_its_hard_states(name):
    """Waiting completions, vectors and shadow doorbells are in play, so these are caught."""
    assert run(name).startswith("divergence:")


def test_catalogue_has_the_hand_written_and_shipped_mutants():
    """At least 15 behavioural mutants and the six shipped bug classes are catalogued."""
    kinds = [n for n in m.MUTANTS if n.startswith(m.PREFIX)]
    assert len(m.BEHAVIOURAL) >= 15 and len(m.SHIPPED_BUGS) >= 6
    assert len(kinds) == len(m.BEHAVIOURAL) + len(m.SHIPPED_BUGS)


def test_capped_save_arrays_keep_the_first_entries_only():
    reqs = [{"sqe": bytes([i]) + bytes(63)} for i in range(4)]
    state = {"cq": [{"waiting": list(reqs)}], "aer_queue": list(range(4)),
             "inflight": list(reqs)}
    for hook in (h.waiting_capped, h.aer_queue_capped, h.inflight_capped):
        state = hook(state)
    assert state["cq"][0]["waiting"] == reqs[:h.SAVE_ARRAY]
    assert state["aer_queue"] == list(range(4))[:h.SAVE_ARRAY]
    assert state["inflight"] == reqs[:h.SAVE_ARRAY]


def test_a_clamped_import_empties_only_wrapped_sqs():
    state = {"sq": [{"head": 3, "tail": 1}, {"head": 1, "tail": 3}, {"head": 2, "tail": 2}]}
    assert [(q["head"], q["tail"]) for q in h.wrapped_sq_clamped(state)["sq"]] == [
        (1, 1), (1, 3), (2, 2)]
