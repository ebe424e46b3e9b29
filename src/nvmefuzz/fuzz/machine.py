"""The Hypothesis state machine: a hostile-but-legal host choosing steps.

How it works
------------
``build_machine(campaign)`` returns a ``RuleBasedStateMachine`` subclass whose rules each
draw the arguments of one host action and hand a ``Step`` to the ``Session``; the session
does all the work, so everything decided here ends up in the trace and replays without
Hypothesis.  Which rules the machine has, how often and when each applies is the campaign's
weights and ``rules`` (``register``).

Every example starts with power-on and up to the campaign's ``queue_pairs`` I/O queue pairs
(sizes, IEN and vector drawn); ``restart`` resets the controller as a driver does and builds
pairs again; queue ids flow through the bundles ``cqs`` and ``sqs``.
Preconditions read the twin's host view (which queues exist, which SQ has room) so most
steps are legal; a share of every rule's draws is deliberately invalid (bad queue ids,
sizes, vectors, doorbell values, opcodes, fields) or hostile but valid (an SQ tail rung
past the host's own, so stale entries are fetched).

Guidance from the example's own past: Set Features draws CDW11 from the values that mean
something for the FID drawn (``arguments``); half of the I/O commands reuse the SLBA of a
recent one, most often the one just before, so commands race on the same blocks (such a
Compare takes the blocks and data of a recent Write, so it can match); the ``read_back``
rule repeats one of the reads that show what earlier steps changed (``readback``), and a
migration may do one or two of them right after it; it may also let the guest run on (twice,
half a latency passes and every CQ with commands outstanding is consumed).

Guidance from the target's insides (the model's; QEMU shows none), all of which
``steer=False`` drops (the unguided baseline):

* a migration that lost state (``Session.lost``: the migrated model differs from its twin
  inside) no known finding explains (``explained``) reads back everything the example
  changed, queued events with one AER each until an AER is left waiting: a loss the model
  sees becomes one the guest sees;
* the machine migrates unasked (``migrations steered``, at most ``STEERED`` per example,
  and once more at its end) when an example is in hard states (``hardness``) or has changed
  something (a read-back) no migration of the run started from, then lets the guest run
  on, so commands caught in flight finish on the destination and are compared (a change
  never migrated cannot show a loss); ``hardness.Memory`` holds what the run's migrations
  started from, and changes only between batches: within a batch the same choices give the
  same steps;
* ``target()`` reports the most hard states a migration of the example started from.

A divergence ``known`` matches (``fuzz.known``: a finding already in the corpus, by root
cause or signature) ends the example quietly: a run keeps looking for new ways to lose state.
"""

from __future__ import annotations

import re
import sys
from typing import Any, Hashable

from hypothesis import event, strategies as st, target
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, multiple

from nvmefuzz.errors import Divergence
from nvmefuzz.fuzz.arguments import (ENABLE_FAULTS, FEATURE_DATA, NS_SPECIFIC, RECENT,
                                    feature_values, pairs)
from nvmefuzz.fuzz.batch import Observer
from nvmefuzz.fuzz.campaign import Campaign
from nvmefuzz.fuzz import hardness
from nvmefuzz.fuzz.known import Known
from nvmefuzz.fuzz.readback import aer_waits, key as read_key, read_backs
from nvmefuzz.fuzz.rules import io_sqs, register
from nvmefuzz.fuzz.session import HARD_PREFIX, Session, lost_paths
from nvmefuzz.protocol.spec import AdminOpcode as A, IoOpcode as IO
from nvmefuzz.targets import TargetConfig
from nvmefuzz.targets.base import HOLD_IO, NS_CHANGED
from nvmefuzz.trace.schema import Step, Trace, Verdict

#: migrations one example may be steered into (each costs a save, a restore, a state diff)
STEERED = 3
#: AERs a read-back of everything sends at most, one per queued event
EVENTS_DRAINED = 4
#: virtual time a migration's ``settle`` lets pass, in two halves: one I/O latency of the model
SETTLE_NS = 20_000


def build_machine(camp: Campaign, observer: Observer | None = None,
                  known: Known | None = None,
                  bare: bool = False, steer: bool = True,
                  explained: frozenset[str] = frozenset(),
                  memory: hardness.Memory | None = None) -> type[RuleBasedStateMachine]:
    """The state machine class for ``camp`` (its TestCase runs it under pytest).

    ``bare`` keeps the machine's shape (rules, weights, strategies, preconditions) but makes
    every step a no-op that is only counted: the baseline for measuring the fuzz loop's own
    cost on top of Hypothesis.  ``steer=False`` drops the guidance (read-backs after a loss
    inside, steered migrations, ``target()``): a baseline.
    ``explained``: lost state paths known findings already show (no read-back of them all).
    ``memory``: what the run's migrations started from (one per run, kept across its
    batches; a new one by default).
    """
    cfg = TargetConfig(kind=camp.target, profile=camp.profile, msix=camp.msix)
    obs = observer or Observer()
    memory = memory if memory is not None else hardness.Memory()

    class Machine(RuleBasedStateMachine):
        cqs = Bundle("cqs")
        sqs = Bundle("sqs")

        def __init__(self) -> None:
            super().__init__()
            self.session = Session(cfg, camp.waivers, camp.refusals)
            self.host = self.session.twin_host
            self.steps: list[Step] = []
            self.dead = False
            self.hardest = 0        # most hard states present together at one migration
            self.readable: dict[tuple, Step] = {}    # reads that show what steps changed
            self.lbas: list[int] = []                # SLBAs of the latest I/O commands
            self.writes: list[tuple[int, int, int]] = []   # (SLBA, NLB, pattern), latest Writes
            self.local: set[Hashable] = set()        # what migrations started from
            self.unmigrated: list[tuple] = []        # read-backs no migration has followed
            self.steered = 0                         # migrations steered in this example
            self.failed = False                      # the last enable failed (CSTS.CFS)
            self.hold = True               # no steering now: power-on, or a steered migration

        @classmethod
        def before_batch(cls) -> None:
            memory.commit()

        # -------------------------------------------------------------- plumbing
        def do(self, action: str, **args: Any) -> None:
            if bare:
                self.session.stats["steps"] += 1
                return
            if self.dead:
                return
            step = Step(action, {k: v for k, v in args.items() if v is not None})
            self.steps.append(step)
            try:
                self.session.apply(step)
            except Divergence as exc:
                verdict = Verdict.of(exc, len(self.steps) - 1, self._since())
                if known and known.match(self._trace(verdict), self._lost()):
                    self.dead = True
                    event(f"known finding: {exc.signature}")
                    return
                obs.finding(self._trace(verdict))
                raise
            for read in read_backs(step):
                if (k := read_key(read)) not in self.readable:
                    self.readable[k] = read
                    self.unmigrated.append(k)
            if steer and not self.hold:
                self._steer(asked=step.action == "migrate")

        def _steer(self, asked: bool, capped: bool = True) -> None:
            """Migrate if the example is in hard states, or has changed something (a read-back),
            no migration of the run started from (``hardness.Memory``); note what one did.
            ``asked``: the step was a migration; ``capped``: at most ``STEERED`` steered."""
            if not asked and capped and self.steered >= STEERED:
                return                         # capped: no need to measure (a hot path)
            keys = [self.session.migrated_depths if asked else self.session.hard_depths(),
                    *self.unmigrated]
            if not asked:
                if all(k in self.local or k in memory.seen for k in keys):
                    return
                self.steered += 1
                self.session.stats["migrations steered"] += 1
                self.hold = True
                self.r_migrate(None, looks=0, settle=True)
                self.hold = False
            self.local.update(keys)
            self.unmigrated = []

        def _lost(self) -> list[str] | None:
            """What the example's migrations lost, on the model (None: QEMU shows nothing)."""
            on_model = hasattr(self.session.twin, "ctrl")
            return sorted(lost_paths(self.session.stats)) if on_model else None

        def _since(self) -> int:
            idx = [i for i, s in enumerate(self.steps) if s.action == "migrate"]
            return len(self.steps) - 1 - idx[-1] if idx else -1

        def _trace(self, verdict: Verdict) -> Trace:
            return Trace(target=cfg.to_plain(), campaign=camp.name, seed=obs.seed,
                         steps=tuple(self.steps), verdict=verdict, waivers=camp.waivers,
                         refusals=camp.refusals)

        def teardown(self) -> None:
            try:   # ended normally (teardown runs in a ``finally``): a last steered migration
                if steer and not (self.dead or self.hold or sys.exc_info()[0]):
                    self._steer(asked=False, capped=False)
            finally:
                if steer:
                    target(float(self.hardest), label=hardness.TARGET)
                    memory.pending |= self.local
                stats = self.session.stats
                stats.update({f"waived:{k}": v
                              for k, v in self.session.comparator.suppressed.items()})
                obs.example_done(stats)
                self.session.close()

        @initialize(targets=(cqs, sqs), pairs=pairs(camp.queue_pairs))
        def power_on(self, pairs: list[tuple[int, int, bool, int]]) -> Any:
            self.do("enable", asqs=7, acqs=7)
            built = self._build(pairs)
            self.hold = False
            return built

        def _build(self, pairs: list[tuple[int, int, bool, int]]) -> Any:
            """Create I/O queue pairs 1, 2, ... (CQ and SQ of the same id), as a driver does."""
            for qid, (cq_size, sq_size, ien, iv) in enumerate(pairs, 1):
                self.do("create_cq", qid=qid, size=cq_size, ien=int(ien), iv=iv, pc=1)
                self.do("create_sq", qid=qid, cqid=qid, size=sq_size, pc=1)
            return multiple(*(q for q in self.host.sqs if q))

        # -------------------------------------------------------------- controller state
        def r_enable(self, asqs: int, acqs: int, fault: str) -> None:
            """Enable with a driver's ``fault`` (``ENABLE_FAULTS``) or none ("")."""
            self.do("enable", **{"asqs": asqs, "acqs": acqs, **ENABLE_FAULTS.get(fault, {})})
            self.failed = 0 not in self.host.sqs

        def r_reset(self) -> None:
            self.do("disable")
            self.failed = False       # a disable clears CSTS.CFS

        def r_shutdown(self, shn: int) -> None:
            self.do("shutdown", shn=shn)

        def r_restart(self, shn: int, asqs: int, acqs: int,
                      pairs: list[tuple[int, int, bool, int]], aer: bool, fault: str) -> Any:
            """A driver's controller reset: shut down (``shn``) or not, disable, enable, build
            I/O queue pairs again and send an AER, whatever was outstanding.  A ``fault`` at
            enable (``ENABLE_FAULTS``) leaves it failed (CSTS.CFS) until the next reset."""
            if shn:
                self.do("shutdown", shn=shn)
            self.do("disable")
            self.r_enable(asqs, acqs, fault)
            if self.failed:
                return multiple()
            built = self._build(pairs)
            if aer:
                self.do("aer", reap=False)
            return built

        def r_register_write(self, offset: int, value: int) -> None:
            self.do("reg_write", offset=offset, size=4, value=value)

        def r_register_read(self, offset: int) -> None:
            self.do("reg_read", offset=offset, size=8 if offset in (0, 0x28, 0x30) else 4)

        def r_migrate(self, data: st.DataObject, looks: int, settle: bool) -> None:
            self.session.migrated_from, self.session.migrated_depths = [], frozenset()
            self.do("migrate")                 # the session notes the hard states it left
            for name in self.session.migrated_from:
                event(f"{HARD_PREFIX}{name}")
            self.hardest = max(self.hardest, len(self.session.migrated_from))
            for _ in range(looks if self.readable else 0):   # what may the migration have lost?
                self.r_read_back(data)
            if steer and set(self.session.lost) - explained:   # a loss no known finding shows
                self._read_everything()
            if settle:
                self._settle()

        def _read_everything(self) -> None:
            """Every read of what the example changed; queued events by AERs until one waits
            (one AER collects one event).  A lost INTx status first: CQ head doorbells show
            it, where the reads' own completions would set it again on both sides."""
            for qid in sorted(self.host.cqs) if "irq_status" in self.session.lost else ():
                self.do("ring_cq", qid=qid)
            for read in list(self.readable.values()):
                for _ in range(EVENTS_DRAINED if read.action == "aer" else 1):
                    self.do(read.action, **read.args)
                    if read.action == "aer" and aer_waits(self.host):
                        break

        def _settle(self) -> None:
            """The guest runs on, twice: half a latency passes, every CQ with commands
            outstanding is consumed (a command restarted on the destination is late)."""
            for _ in range(2):
                cqs = sorted({sq.cqid for sq in self.host.sqs.values() if sq.outstanding})
                if cqs:
                    self.do("advance", ns=SETTLE_NS // 2)
                for cqid in cqs:
                    self.do("consume", qid=cqid)

        # -------------------------------------------------------------- queues
        def r_create_cq(self, qid: int, size: int, ien: bool, iv: int, pc: int,
                        misalign: int) -> Any:
            self.do("create_cq", qid=qid, size=size, ien=int(ien), iv=iv, pc=pc,
                    misalign=misalign or None)
            return qid if qid in self.host.cqs else multiple()

        def r_create_sq(self, qid: int, cqid: int, size: int, pc: int) -> Any:
            self.do("create_sq", qid=qid, cqid=cqid, size=size, pc=pc)
            return qid if qid in self.host.sqs else multiple()

        def r_delete_sq(self, qid: int) -> None:
            self.do("delete_sq", qid=qid)

        def r_delete_cq(self, qid: int) -> None:
            self.do("delete_cq", qid=qid)

        # -------------------------------------------------------------- I/O and doorbells
        def r_io(self, data: st.DataObject, opc: int, slba: int, nlb: int, pattern: int,
                 offset: int, ring: bool, nsid: int, again: bool) -> None:
            qid = data.draw(st.sampled_from(io_sqs(self)), label="qid")
            if opc == IO.FLUSH and self.session.held():
                return       # QEMU holds it or not by its drive's past: see docs/qemu-target.md
            if again and opc == IO.COMPARE and self.writes:
                # the blocks and data of an earlier Write: a Compare that matches, unless
                # they changed since (a random pattern matches one time in 256)
                slba, nlb, pattern = self.writes[-min(data.draw(RECENT, label="recent"),
                                                      len(self.writes))]
            elif again and self.lbas:  # the blocks of an earlier command: commands that race
                slba = self.lbas[-min(data.draw(RECENT, label="recent"), len(self.lbas))]
            self.lbas = [*self.lbas[-7:], slba]
            if opc == IO.WRITE:
                self.writes = [*self.writes[-7:], (slba, nlb, pattern)]
            extra: dict[str, Any] = {}
            if opc == IO.DATASET_MANAGEMENT:
                extra["ranges"] = [[slba, nlb]]
            self.do("io", qid=qid, opc=int(opc), slba=slba, nlb=nlb, pattern=pattern,
                    offset=offset or None, ring=None if ring else False,
                    nsid=None if nsid == 1 else nsid, **extra)

        def r_ring_sq(self, data: st.DataObject, ahead: int) -> None:
            qid = data.draw(st.sampled_from(sorted(self.host.sqs)), label="qid")
            sq = self.host.sqs[qid]
            # ``ahead``: a valid tail past the host's, so the controller fetches stale entries
            self.do("ring_sq", qid=qid,
                    value=(sq.tail + ahead) % sq.size if ahead and sq.size > 1 else None)

        def r_ring_cq(self, data: st.DataObject) -> None:
            qid = data.draw(st.sampled_from(sorted(self.host.cqs)), label="qid")
            self.do("ring_cq", qid=qid)

        def r_bad_doorbell(self, data: st.DataObject, cq: bool, qid: int) -> None:
            queues = self.host.cqs if cq else self.host.sqs
            if qid in queues:
                value = data.draw(st.integers(queues[qid].size, 0xFFFF), label="value")
            else:
                value = data.draw(st.integers(0, 0xFFFF), label="value")
            self.do("ring_cq" if cq else "ring_sq", qid=qid, value=value)

        def r_consume(self, data: st.DataObject, limit: int, ring: bool) -> None:
            qid = data.draw(st.sampled_from(sorted(self.host.cqs)), label="qid")
            self.do("consume", qid=qid, limit=limit, ring=None if ring else False)

        def r_advance(self, ns: int) -> None:
            self.do("advance", ns=ns)

        # -------------------------------------------------------------- admin commands
        def r_aer(self, reap: bool) -> None:
            self.do("aer", reap=None if reap else False)

        def r_identify(self, cns: int, nsid: int) -> None:
            self.do("admin", opc=int(A.IDENTIFY), cdw10=cns, nsid=nsid, length=4096)

        def r_get_log_page(self, lid: int, rae: bool, numd: int, offset: int,
                           nsid: int) -> None:
            self.do("admin", opc=int(A.GET_LOG_PAGE), nsid=nsid,
                    cdw10=lid | int(rae) << 15 | numd << 16, cdw12=offset,
                    length=min((numd + 1) * 4, 4096))

        def r_get_features(self, fid: int, sel: int, cdw11: int, nsid: int) -> None:
            length = FEATURE_DATA.get(fid, 0)
            self.do("admin", opc=int(A.GET_FEATURES), cdw10=fid | sel << 8, cdw11=cdw11,
                    length=length or None, nsid=(nsid or None) if fid in NS_SPECIFIC else None)

        def r_set_features(self, data: st.DataObject, fid: int, save: bool, pattern: int,
                           nsid: int) -> None:
            cdw11 = data.draw(st.sampled_from(feature_values(fid)), label="cdw11")
            length = FEATURE_DATA.get(fid, 0)
            self.do("admin", opc=int(A.SET_FEATURES), cdw10=fid | int(save) << 31,
                    cdw11=cdw11, nsid=(nsid or None) if fid in NS_SPECIFIC else None,
                    length=length or None, pattern=pattern if length else None)

        def r_temperature_event(self, hi: int) -> None:
            self.do("admin", opc=int(A.SET_FEATURES), cdw10=0x0B, cdw11=0x2)
            self.do("admin", opc=int(A.SET_FEATURES), cdw10=0x04, cdw11=hi)

        def r_abort(self, data: st.DataObject) -> None:
            pending = sorted((q, c) for q, s in self.host.sqs.items() for c in s.outstanding)
            pick = data.draw(st.sampled_from(pending + [(0, 0xBEEF), (9, 0)]), label="cmd")
            self.do("admin", opc=int(A.ABORT), cdw10=pick[0] | pick[1] << 16)

        def r_bad_admin(self, opc: int, fuse: int, psdt: int) -> None:
            self.do("admin", opc=opc, fuse=fuse or None, psdt=psdt or None)

        def r_dbbuf(self, misalign: int) -> None:
            self.do("dbbuf", misalign=misalign or None)

        def r_ns_changed(self) -> None:
            self.do("environment", event=NS_CHANGED, arg=1)

        def r_hold_io(self, on: bool) -> None:
            self.do("environment", event=HOLD_IO, arg=int(on))

        def r_read_back(self, data: st.DataObject) -> None:
            read = data.draw(st.sampled_from(list(self.readable.values())), label="read")
            self.do(read.action, **read.args)

    register(Machine, camp)
    # the name keys Hypothesis' example database: one key per campaign, target and profile
    Machine.__name__ = Machine.__qualname__ = re.sub(
        r"\W", "_", f"Machine_{camp.name}_{camp.target}_{camp.profile}")
    return Machine
