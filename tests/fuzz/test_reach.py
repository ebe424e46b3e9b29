"""What the state machine reaches: I/O commands whose data needs a PRP list, Compares that
match, and a controller that failed to start (CSTS.CFS).

A transfer spanning three or more pages makes PRP2 point to a PRP list, the controller's
longest DMA path (QEMU's ``nvme_map_prp`` walks it, and a migration that re-maps an
in-flight command walks it again on the destination).  The machine must send such commands,
and the host driver must describe them so that the data round-trips."""

from __future__ import annotations

import attrs
import pytest

from nvmefuzz.fuzz.arguments import ENABLE_FAULTS
from nvmefuzz.fuzz.batch import batch_settings, recorded
from nvmefuzz.fuzz.campaign import load
from nvmefuzz.fuzz.machine import build_machine
from nvmefuzz.host import layout as L
from nvmefuzz.host.driver import pattern_bytes
from nvmefuzz.protocol import regs
from nvmefuzz.protocol.spec import IoOpcode as IO
from nvmefuzz.trace.schema import Step

from tests.fuzz.test_hardness import PAIR
from tests.fuzz.test_session import on_twin

def pages(step: Step) -> int:
    """Pages the data of an I/O step spans."""
    offset, length = step.args.get("offset", 0), step.args.get("nlb", 1) * 512
    return -(-(offset % L.PAGE + length) // L.PAGE)


def steps_of(campaign: str, examples: int, seed: int, steps: int = 40) -> list[Step]:
    """Every step the campaign's machine took in ``examples`` examples on the model."""
    machine = build_machine(attrs.evolve(load(campaign), target="model"))
    return [s for example in recorded(machine, batch_settings(examples, steps), seed)
            for s in example]


def test_the_machine_sends_reads_and_writes_that_need_a_prp_list():
    data = [s for s in steps_of("inflight-migration", 20, 1)
            if s.action == "io" and s.args["opc"] in (IO.READ, IO.WRITE)]
    assert data, "no Read or Write in 20 examples"
    listed = [s for s in data if pages(s) >= 3]
    assert listed, f"none of {len(data)} Reads and Writes spans three pages"


def test_a_write_through_a_prp_list_reads_back_whole():
    """24 blocks at offset 3584: four pages, so PRP2 is a list of three entries."""
    write = Step("io", {"qid": 1, "opc": int(IO.WRITE), "slba": 8, "nlb": 24,
                        "pattern": 9, "offset": 3584})
    assert pages(write) == 4
    stored = on_twin(PAIR + [write, Step("advance", {"ns": 100_000})],
                     lambda c: c.store.read(8, 24))
    assert stored == pattern_bytes(9, 24 * 512)


def test_the_machine_sends_compares_that_match_an_earlier_write():
    """A Compare drawn with random data matches one time in 256, so the success path (and
    QEMU's accounting of it) needs Compares of what an earlier Write wrote."""
    io = [s.args for s in steps_of("sq-exhaustion", 60, 3, 60) if s.action == "io"]
    writes = {(a["slba"], a["nlb"], a["pattern"]) for a in io if a["opc"] == IO.WRITE}
    compares = [a for a in io if a["opc"] == IO.COMPARE]
    assert compares, "no Compare in 60 examples"
    matching = [a for a in compares if (a["slba"], a["nlb"], a["pattern"]) in writes]
    assert matching, f"none of {len(compares)} Compares carries what a Write wrote"


@pytest.mark.parametrize("fault", sorted(ENABLE_FAULTS))
def test_a_fault_at_enable_fails_the_controller_until_a_reset(fault):
    faulty = Step("enable", {"asqs": 7, "acqs": 7, **ENABLE_FAULTS[fault]})
    power_cycle = [Step("enable", {"asqs": 7, "acqs": 7}), Step("disable", {})]
    assert on_twin([*power_cycle, faulty], lambda c: c.csts) == regs.CSTS_CFS
    after = on_twin([*power_cycle, faulty, *power_cycle, power_cycle[0]], lambda c: c.csts)
    assert after == regs.CSTS_RDY


def test_the_machine_enables_with_faults():
    """Restarts (``reset-storm``) and the enable rule draw every fault of ``ENABLE_FAULTS``
    (three batches pooled: few enables are faulty, so which faults one batch draws swings
    with the seed)."""
    faults = {fault for seed in (1, 2, 3) for s in steps_of("reset-storm", 60, seed, 60)
              if s.action == "enable"
              for fault, args in ENABLE_FAULTS.items() if args.items() <= s.args.items()}
    assert faults == set(ENABLE_FAULTS)
