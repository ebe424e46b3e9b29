"""nvmefuzz diff: the model and QEMU side by side, without migrations."""

from __future__ import annotations

from collections import Counter

import attrs
import pytest
from click.testing import CliRunner

from nvmefuzz.cli import main
from nvmefuzz.fuzz import campaign as campaigns
from nvmefuzz.fuzz import diff as D
from nvmefuzz.fuzz.diff import configs, diff_steps, generate, group
from nvmefuzz.fuzz.session import Session
from nvmefuzz.targets import open_target
from nvmefuzz.targets.base import QEMU_VIEW, TargetConfig
from nvmefuzz.trace.schema import Step, Trace

from tests.fuzz.test_session import ENABLE, write

AGREE = [Step("enable", {}), Step("create_cq", {"qid": 1, "size": 8, "iv": 1}),
         Step("create_sq", {"qid": 1, "size": 8, "cqid": 1}),
         Step("io", {"qid": 1, "opc": 1, "slba": 4, "nlb": 2, "pattern": 7}),
         Step("migrate", {}), Step("environment", {"event": "ns_changed"}),
         Step("io", {"qid": 1, "opc": 2, "slba": 4, "nlb": 2}), Step("consume", {"qid": 1}),
         Step("admin", {"opc": 6, "cdw10": 2, "length": 4096})]
#: a known disagreement (NSFEAT: features the model does not implement), and the step showing it
NSFEAT = "cqe/admin/IDENTIFY/cns=0x00/data.nsfeat"
ID_NS = Step("admin", {"opc": 6, "cdw10": 0, "nsid": 1, "length": 4096})


def test_the_model_shows_each_msix_vector_once_per_look_in_the_qemu_view():
    """QEMU shows one message dword per vector: three completions on vector 1 seen in one
    look are one event there, and in the model's QEMU view; the plain model shows all three."""
    writes = [Step("io", {**write(1, i, i).args, "ring": i == 2}) for i in range(3)]
    steps = [ENABLE, Step("create_cq", {"qid": 1, "size": 8, "iv": 1}),
             Step("create_sq", {"qid": 1, "size": 8, "cqid": 1}), *writes,
             Step("advance", {"ns": 10**6})]
    seen = {}
    for view in ({}, QEMU_VIEW):
        s = Session(TargetConfig(**view))
        s.on_step = lambda i, step, twin, mig: seen.setdefault(bool(view), []).extend(
            fields["events"] for label, fields in twin if label == "irq")
        try:
            for step in steps:
                s.apply(step)
        finally:
            s.close()
    assert seen[False][-1] == (("msix", 1),) * 3
    assert seen[True][-1] == (("msix", 1),)
    assert len(seen[False]) == len(seen[True])


def test_generated_examples_have_no_migrations():
    """Examples come from the campaign's machine with the migrate rule off."""
    camp = campaigns.load("default")
    drawn = generate(camp, 5, seed=3)
    assert len(drawn) == 5
    assert all(s.action != "migrate" for steps in drawn for s in steps)
    assert max(len(steps) for steps in drawn) > 10


def test_io_and_queues_agree_between_model_and_qemu(qemu_binary):
    """Queue creation, a write and a read back: the same on both (migrate/environment skipped)."""
    found, ran = diff_steps("t", AGREE, *configs())
    assert found is None and ran == len(AGREE)


def test_identify_nvm_controller_agrees_between_model_and_qemu(qemu_binary):
    """Identify CNS 06h (VSL, DMRL, DMRSL, DMSL): the model computes DMRSL from the block size
    when the controller starts, as QEMU does; before and after a reset."""
    identify = Step("admin", {"opc": 6, "cdw10": 6, "length": 4096})
    steps = [Step("enable", {}), identify, Step("disable", {}), Step("enable", {}), identify]
    found, ran = diff_steps("t", steps, *configs())
    assert found is None and ran == len(steps)


def test_identify_controller_agrees_on_the_firmware_revision(qemu_binary):
    """The qemu target gives QEMU the model's firmware revision (QEMU's default is its own
    version): Identify Controller first differs at CTRATT, a capability the model leaves out."""
    steps = [Step("enable", {}), Step("admin", {"opc": 6, "cdw10": 1, "length": 4096})]
    found, _ = diff_steps("t", steps, *configs())
    assert found is not None and found.label == "cqe/admin/IDENTIFY/cns=0x01/data.ctratt"
    assert found.qemu["data"][64:72] == found.model["data"][64:72] == b"1.0     "


def test_a_disagreement_is_found_by_field_and_can_be_looked_past(qemu_binary):
    """Identify Namespace: the model's NSFEAT claims less than QEMU's (no metadata, no
    protection information): the first disagreement, by field; --ignore counts it instead."""
    steps = [Step("enable", {}), ID_NS]
    found, _ = diff_steps("t", steps, *configs())
    assert found is not None and found.label == NSFEAT and found.step == 1
    assert (found.model["data"][24], found.qemu["data"][24]) == (0x10, 0x34)
    ignored = Counter()
    assert diff_steps("t", steps, *configs(), ignore=(NSFEAT,), ignored=ignored)[0] is None
    assert ignored == {NSFEAT: 1}
    assert list(group([found, found])) == [NSFEAT]


def test_diff_command_lists_disagreements_by_label(qemu_binary, tmp_path):
    """`nvmefuzz diff TRACE` exits 1 and names the label; with --ignore it exits 0."""
    trace = Trace(target=TargetConfig(kind="qemu").to_plain(), campaign="t", seed=0,
                  steps=(Step("enable", {}), ID_NS))
    path = tmp_path / "t.cbor"
    path.write_bytes(trace.encode())
    runner = CliRunner()
    res = runner.invoke(main, ["diff", str(path), "--json", str(tmp_path / "d.json")])
    assert res.exit_code == 1, res.output
    assert NSFEAT in res.output and (tmp_path / "d.json").exists()
    res = runner.invoke(main, ["diff", str(path), "--ignore", NSFEAT])
    assert res.exit_code == 0, res.output


def test_a_deallocate_with_no_range_to_discard_completes_ahead_of_io_fetched_before_it(
        qemu_binary):
    """QEMU completes a deallocate whose every range is skipped (past the end, here) while it
    fetches it, before the Write fetched just ahead of it returns from the backend; the model
    does the same, so the first CQE reaped is the deallocate's on both."""
    steps = [Step("enable", {}), Step("create_cq", {"qid": 1, "size": 16}),
             Step("create_sq", {"qid": 1, "size": 16, "cqid": 1}),
             Step("io", {"qid": 1, "opc": 1, "slba": 16376, "nlb": 8, "pattern": 3,
                         "ring": False}),
             Step("io", {"qid": 1, "opc": 9, "slba": 16380, "nlb": 7,
                         "ranges": [[16380, 7]]}),
             Step("consume", {"qid": 1, "limit": 1}), Step("consume", {"qid": 1})]
    found, ran = diff_steps("t", steps, *configs())
    assert found is None and ran == len(steps)


def test_diff_saves_each_disagreement_as_a_trace_and_shrinks_it(qemu_binary, tmp_path):
    """--save writes the steps up to the disagreement; --minimize deletes the ones it does not
    need with QEMU in the loop; `nvmefuzz diff DIR` replays the result to the same label."""
    noise = [Step("create_cq", {"qid": 1, "size": 8}),
             Step("create_sq", {"qid": 1, "size": 8, "cqid": 1}),
             Step("io", {"qid": 1, "opc": 1, "slba": 4, "nlb": 2, "pattern": 7}),
             Step("consume", {"qid": 1}), Step("reg_read", {"offset": 0x1C, "size": 4})]
    steps = (Step("enable", {}), *noise, ID_NS, *noise[2:])
    trace = Trace(target=TargetConfig(kind="qemu").to_plain(), campaign="t", seed=0,
                  steps=steps)
    (tmp_path / "t.cbor").write_bytes(trace.encode())
    runner = CliRunner()
    res = runner.invoke(main, ["diff", str(tmp_path / "t.cbor"), "--save",
                               str(tmp_path / "saved"), "--minimize", "60"])
    assert res.exit_code == 1, res.output
    (saved,) = (tmp_path / "saved").glob("*.cbor")
    small = Trace.decode(saved.read_bytes())
    assert small.verdict.signature == f"disagreement:{NSFEAT}"
    assert [s.action for s in small.steps] == ["enable", "admin"]   # 12 steps -> 2
    assert small.target["kind"] == "model" and small.verdict.step == 1
    res = runner.invoke(main, ["diff", str(tmp_path / "saved")])
    assert res.exit_code == 1 and NSFEAT in res.output, res.output


def test_diff_minimize_needs_save(tmp_path):
    """--minimize shrinks what --save writes: alone it is a usage error (exit 2)."""
    res = CliRunner().invoke(main, ["diff", "-c", "default", "--minimize", "5"])
    assert res.exit_code == 2 and "--save" in res.output


def test_diff_of_a_corrupt_trace_is_a_harness_error(tmp_path):
    """A trace that does not decode: exit 2 naming the file (1 would read as disagreements)."""
    (tmp_path / "bad.cbor").write_bytes(b"\xa1not cbor at all")
    res = CliRunner().invoke(main, ["diff", str(tmp_path / "bad.cbor")])
    assert res.exit_code == 2, res.output
    assert "bad.cbor" in res.output


def _stand_in(cfg: TargetConfig, backend: str):
    """A model target in QEMU's place, so no QEMU is needed.  Its backend finishes the
    commands due together in fetch order ("fifo"), last-fetched first ("lifo", as QEMU's
    thread pool may), or loses the last one fetched ("lose")."""
    from nvmefuzz.targets.model import ModelTarget

    target = ModelTarget(attrs.evolve(cfg, kind="model", **QEMU_VIEW))
    ctrl = target.ctrl

    def advance(ns: int) -> None:
        ctrl.now += ns
        due = [r for r in ctrl.inflight if r.due <= ctrl.now]
        if backend == "lose" and len(due) > 1:
            ctrl.inflight.remove(due.pop())
        for req in due if backend != "lifo" else reversed(due):
            ctrl.inflight.remove(req)
            ctrl.finish_io(req)
            ctrl._run()

    ctrl.advance = advance
    return target


FILL_ONE_SLOT = [Step("enable", {}), Step("create_cq", {"qid": 1, "size": 2, "iv": 1}),
                 Step("create_sq", {"qid": 1, "size": 4, "cqid": 1}),
                 Step("io", {"qid": 1, "opc": 1, "slba": 0, "nlb": 1, "pattern": 1,
                             "ring": False}),
                 Step("io", {"qid": 1, "opc": 1, "slba": 8, "nlb": 1, "pattern": 2}),
                 Step("consume", {"qid": 1}), Step("consume", {"qid": 1})]


def _diff_against(monkeypatch, backend: str) -> tuple:
    monkeypatch.setattr(D, "open_target", lambda cfg, **kw: _stand_in(cfg, backend)
                        if cfg.kind == "qemu" else open_target(cfg))
    posted: list = []

    def note(i, step, model, qemu) -> None:
        posted.append([dict(side).get("posted/io", {}).get("cqes") for side in (model, qemu)])

    return diff_steps("t", FILL_ONE_SLOT, *configs(), on_step=note), posted


@pytest.mark.parametrize("backend", ["fifo", "lifo"])
def test_which_completion_takes_the_last_free_cq_slot_is_timing(monkeypatch, backend):
    """Two Writes rung together into a CQ with one free slot: the model posts the first
    fetched and holds the other; a backend that finishes the second first posts that one.
    Each side shows a completion the other legally holds until the host consumes it: no
    disagreement."""
    (found, ran), posted = _diff_against(monkeypatch, backend)
    assert found is None and ran == len(FILL_ONE_SLOT)
    model, qemu = posted[4]                      # CID 0 posted first on the model
    assert model[0][1] == 0 and qemu[0][1] == (1 if backend == "lifo" else 0)


def test_a_completion_the_backend_loses_is_still_a_disagreement(monkeypatch):
    """The first consume frees the slot: the model posts the completion it held and signals
    it, the losing backend has nothing to post."""
    (found, _), _ = _diff_against(monkeypatch, "lose")
    assert found is not None and found.step == 5 and found.label == "irq/missing"
