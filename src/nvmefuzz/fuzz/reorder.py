"""Completion order across steps, for targets that complete concurrent commands in any order.

How it works
------------
QEMU completes I/O through the block layer's thread pool: commands outstanding together
queue their completions in whatever order the pool finishes them, and the CQ receives them
in that order.  ``compare.canonical_order`` forgets the order inside one step; what one step
cannot settle this module carries over to later ones.  A guest sees such a reordering in two
ways:

* it consumes posted entries a few at a time: the twin consumes A where the migrated side
  consumes B, and each consumes the other one in a later step;
* the CQ is full: the controller posts whichever completion came first into the last free
  slot and holds the rest until the host frees a slot, so each side *shows* a completion the
  other is still holding.

``Ledger.reconcile`` takes both sides' canonical observations of one step and what each host
knows (``HostView``: the commands outstanding, the CQ each SQ posts to, CQ sizes, and the CQs
whose controller head is known to be the host's own, followed by ``DoorbellTap``) and returns
the two lists with the legal differences taken out; the usual positional comparison runs on
what is left.  A completion is known by (SQID, CID), unique while its command is outstanding.

The rules, per step:

1. Both sides consumed as many completions, and show as many posted per CQ (and as many
   entries of each outstanding command's CID posted more than once, unless the host rang
   its SQ past its own tail); otherwise the lists are compared as they are (a lost, an extra
   or a duplicated completion).  Entries whose CID belongs to no outstanding command, or
   that several entries carry, are strays (rule 5), however often a CID recurs.
2. Every completion a side shows, consumed or posted, is remembered until both hosts have
   retired its command.  Once both sides have shown it, status, DW0 and DW1 must agree.
3. A completion both sides consumed, in whatever steps, is compared whole (label, data) in
   the step where the second side consumes it: the host gives no other command the buffer
   of one outstanding, so what it reads there is still the command's own data.  Except the
   data of a Read or Compare the host had outstanding together with a write to any of its
   blocks (Write, Write Zeroes, Write Uncorrectable, or a Dataset Management, whose ranges
   the host does not track), in any step (``HostView.racy``): NVMe orders no two commands,
   so what it returns depends on which finished first.
4. A completion one side has shown and the other has not is a debt.  It is legal only while
   the owing side may still hold it: its command is outstanding there and its CQ may be full.
   The CQ has room for certain when the controller's head is the host's (the host rang what
   it consumed) and fewer than size - 1 entries are posted: at rest a controller with a free
   slot holds no completion.  A debt owed where there is room shows as that completion
   missing.  If the owing host forgot the command (a reset, a deleted SQ) the debt lapses: it
   is never posted.
5. Completions the host cannot pair with a command it submitted (``cqe/unknown``: stale SQ
   entries fetched again after the host rang a tail past its own, or a completion posted
   twice, or a CID that several posted entries carry on both sides alike) have no key; they
   are matched by content (CQ, SQID, CID, status, DW0, DW1).  Such
   completions complete in any order too, so one side may show a set the other shows in a
   later step.  One a side consumed and the other has not is owed, as in rule 4, until the
   owing side's CQ has room and does not show it posted: then it is a difference.

Nothing else is forgiven: a lost or duplicated completion, or one with another status, result
or data, is still a difference.
"""

from __future__ import annotations

from collections import Counter
from typing import Mapping

import attrs

from nvmefuzz.fuzz import hardness
from nvmefuzz.fuzz.actions import Observation
from nvmefuzz.host.driver import Host
from nvmefuzz.protocol import regs
from nvmefuzz.protocol.spec import IoOpcode as IO
from nvmefuzz.targets.base import Target

Key = tuple[int, int]                        # (SQID, CID)
Stray = tuple[int, int, int, int, int, int]  # (CQID, SQID, CID, status, DW0, DW1)


@attrs.frozen
class HostView:
    """What one side's host knows after a step, as far as completion order goes."""

    outstanding: frozenset[Key]              # submitted and not yet consumed
    cq_of: Mapping[int, int]                 # SQID -> CQID
    cq_size: Mapping[int, int]               # CQID -> entries
    synced: frozenset[int]                   # CQs whose controller head is the host's head
    racy: frozenset[Key] = frozenset()       # Reads outstanding with a write to their blocks
    overrun: frozenset[int] = frozenset()    # SQs rung past the host's tail (HostSQ.overrun)

    @classmethod
    def of(cls, host: Host, tap: DoorbellTap) -> HostView:
        return cls(frozenset((q, cid) for q, sq in host.sqs.items() for cid in sq.outstanding),
                   {q: sq.cqid for q, sq in host.sqs.items()},
                   {q: cq.size for q, cq in host.cqs.items()},
                   tap.synced(host), _racy(host),
                   frozenset(q for q, sq in host.sqs.items() if sq.overrun))


def _racy(host: Host) -> frozenset[Key]:
    """Outstanding Reads and Compares that share a block with an outstanding write (any block
    of the namespace for a Dataset Management: its ranges are in its buffer)."""
    io = [((q, cid), cmd.opc, cmd.span) for q, sq in host.sqs.items()
          for cid, cmd in sq.outstanding.items() if cmd.span is not None]
    writes = [(span, opc == IO.DATASET_MANAGEMENT) for _, opc, span in io
              if opc in hardness.WRITES or opc == IO.DATASET_MANAGEMENT]

    def hit(read: tuple[int, int, int], write: tuple[int, int, int], anywhere: bool) -> bool:
        return read[0] == write[0] and (anywhere or hardness.overlap(*read[1:], *write[1:]))

    return frozenset(key for key, opc, span in io if opc in hardness.READS
                     and any(hit(span, w, dsm) for w, dsm in writes))


class DoorbellTap:
    """A side's bus (for its host and its actions) that follows the CQ heads it wrote.

    The controller's head of a CQ is the last value written to its head doorbell: 0 when the
    CQ was created, then whatever the host rang.  The tap notes every head doorbell write and
    recognises a CQ the host (re)created by its host object; any other write to a register
    (CC, NSSR, ...) or an odd access to the doorbells may have reset the controller or moved
    a head behind the host's back, so the CQs the host had then are never trusted again.
    With shadow doorbells a head may be written to memory only, so I/O CQs are not trusted
    while they are on.  Every other call goes to the target.
    """

    def __init__(self, target: Target) -> None:
        self.target = target
        self.heads: dict[int, int] = {}          # CQID -> last head doorbell value
        self.known: dict[int, object] = {}       # CQID -> the host CQ the head belongs to
        self.doubtful: set[int] = set()          # CQs whose controller head is uncertain
        self.mmio_read = target.mmio_read
        self.mem_read = target.mem_read
        self.mem_write = target.mem_write
        self.advance = target.advance

    def __getattr__(self, name: str):
        return getattr(self.target, name)

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        doorbell = regs.decode_doorbell(offset) if size == 4 else None
        if doorbell is not None:
            if doorbell[1]:
                self.heads[doorbell[0]] = value
        elif offset + size > regs.DOORBELL_BASE or offset not in QUIET_REGISTERS:
            self.doubtful.update(self.known)
        self.target.mmio_write(offset, size, value)

    def synced(self, host: Host) -> frozenset[int]:
        """The CQs of ``host`` whose controller head is known to equal the host's head.

        Called after every step: a CQ first seen here was created by this step, which rang
        no head doorbell of it after creating it (no action does)."""
        out = []
        for q, cq in host.cqs.items():
            if self.known.get(q) is not cq:       # created since: the controller starts at 0
                self.known[q], self.heads[q] = cq, 0
                self.doubtful.discard(q)
            if (q not in self.doubtful and self.heads.get(q) == cq.head
                    and not (host.shadow and q)):
                out.append(q)
        return frozenset(out)


#: registers a host may write without touching queue state (interrupt mask set / clear)
QUIET_REGISTERS = frozenset({0x0C, 0x10})


@attrs.frozen
class Shown:
    """A completion as one side showed it: (status, DW0, DW1), and where."""

    content: tuple[int, int, int]
    label: str | None                        # its cqe/ label once consumed
    posted: str                              # posted/admin or posted/io
    qid: int


@attrs.define
class _Look:
    """One side's completions in one step."""

    consumed: dict[Key, Observation] = attrs.Factory(dict)   # paired with a command
    loose: list[Observation] = attrs.Factory(list)           # cqe/unknown
    strays: Counter = attrs.Factory(Counter)                  # posted, of no command
    dups: dict[Key, int] = attrs.Factory(dict)                # CIDs posted more than once
    posted: dict[int, int] = attrs.Factory(dict)              # CQID -> entries posted
    shown: dict[Key, Shown] = attrs.Factory(dict)


def _look(obs: list[Observation], view: HostView) -> _Look:
    look = _Look()

    for label, f in obs:
        if label.startswith("cqe/"):
            key = (f["sqid"], f["cid"])
            if label.startswith("cqe/unknown"):     # the host had retired it, or never
                look.loose.append((label, f))         # submitted it: no key (rule 5)
                continue
            look.consumed[key] = (label, f)
            kind = "posted/admin" if view.cq_of.get(key[0], key[0]) == 0 else "posted/io"
            look.shown[key] = Shown((f["status"], f["dw0"], f["dw1"]), label, kind,
                                    view.cq_of.get(key[0], -1))
        elif label.startswith("posted/"):
            look.posted[f["qid"]] = len(f["cqes"])
            keys = Counter((e[0], e[1]) for e in f["cqes"])
            look.dups.update((k, n) for k, n in keys.items()    # a command's CID only: a
                             if n > 1 and k in view.outstanding)  # stray is one by content
            for e in f["cqes"]:
                key = (e[0], e[1])
                if key in view.outstanding and keys[key] == 1:
                    look.shown[key] = Shown(tuple(e[2:5]), None, label, f["qid"])
                else:           # no command, or a CID posted again by a stale entry
                    look.strays[(f["qid"], *e[:5])] += 1
    return look


def _stray(o: Observation) -> Stray:
    """A consumed completion of no command, by content (its label names the CQ)."""
    f = o[1]
    return (int(o[0].rsplit("/q", 1)[1]), f["sqid"], f["cid"], f["status"], f["dw0"], f["dw1"])


def _dups(look: _Look, overrun: frozenset[int]) -> dict[Key, int]:
    """The CIDs of outstanding commands posted more than once that must match in number: on
    an SQ rung past the host's tail, a stale entry of an outstanding command may run again,
    and a full CQ may hold its second completion on one side only."""
    return {k: n for k, n in look.dups.items() if k[0] not in overrun}


def _room(view: HostView, look: _Look) -> set[int]:
    """CQs certain to have a free slot: the controller holds none of their completions."""
    return {q for q in view.synced if look.posted.get(q, 0) < view.cq_size.get(q, 0) - 1}


def _synthetic(key: Key, s: Shown, label: str | None) -> Observation:
    """A completion as an observation of its own, to make a difference visible."""
    if label is not None:
        return (label, {"sqid": key[0], "cid": key[1], "status": s.content[0],
                        "dw0": s.content[1], "dw1": s.content[2]})
    return (s.posted, {"qid": s.qid, "cqes": ((*key, *s.content),)})


def _without_data(o: Observation) -> Observation:
    return (o[0], {k: v for k, v in o[1].items() if k != "data"})


def _sort_key(o: Observation) -> tuple:
    return (o[1]["sqid"], o[1]["cid"], o[0])


@attrs.define
class Ledger:
    """Completions shown or consumed by one side and not yet by the other (twin, migrated)."""

    seen: tuple[dict[Key, Shown], dict[Key, Shown]] = attrs.Factory(lambda: ({}, {}))
    consumed: tuple[dict[Key, Observation], dict[Key, Observation]] = attrs.Factory(
        lambda: ({}, {}))
    racy: set[Key] = attrs.Factory(set)
    strays: tuple[dict[Stray, list[Observation]], dict[Stray, list[Observation]]] = (
        attrs.Factory(lambda: ({}, {})))

    def owed(self) -> int:
        """Completions one side has shown (or, of no command, consumed) that the other has
        not (yet)."""
        return (sum(len(a.keys() - b.keys()) for a, b in (self.seen, self.seen[::-1]))
                + sum(len(v) for side in self.strays for v in side.values()))

    def reconcile(self, twin: list[Observation], mig: list[Observation], twin_view: HostView,
                  mig_view: HostView) -> tuple[list[Observation], list[Observation]]:
        views = (twin_view, mig_view)
        looks = (_look(twin, twin_view), _look(mig, mig_view))
        a, b = looks
        overrun = twin_view.overrun | mig_view.overrun
        if (a.posted != b.posted or _dups(a, overrun) != _dups(b, overrun)
                or len(a.consumed) + len(a.loose) != len(b.consumed) + len(b.loose)):
            return twin, mig                              # rule 1: counts differ
        extra: tuple[list[Observation], list[Observation]] = ([], [])
        self.racy |= twin_view.racy | mig_view.racy
        self._remember(looks, extra)
        runs = self._pair(looks)
        self._debts(looks, views, extra)
        self._strays(looks, views, extra)
        self._forget(looks, views)
        return (self._rebuild(twin, runs[0], a, extra[0]),
                self._rebuild(mig, runs[1], b, extra[1]))

    def _remember(self, looks: tuple[_Look, _Look], extra) -> None:
        """Rule 2: note what each side showed; a completion both showed must agree."""
        for x, look in enumerate(looks):
            seen = self.seen[x]
            for key, s in look.shown.items():
                old = seen.get(key)
                seen[key] = s if old is None or s.label else attrs.evolve(s, label=old.label)
        for key in looks[0].shown.keys() | looks[1].shown.keys():
            t, m = self.seen[0].get(key), self.seen[1].get(key)
            if t is not None and m is not None and t.content != m.content:
                label = t.label or m.label
                extra[0].append(_synthetic(key, t, label))
                extra[1].append(_synthetic(key, m, label))

    def _pair(self, looks: tuple[_Look, _Look]) -> tuple[list, list]:
        """Rule 3: completions consumed by both sides, each side's own observation."""
        runs: tuple[list[Observation], list[Observation]] = ([], [])
        for x in (0, 1):
            y = 1 - x
            for key, obs in looks[x].consumed.items():
                if key in looks[y].consumed:
                    if x == 0:
                        other = looks[1].consumed[key]
                        if key in self.racy:              # raced a write to its blocks
                            obs, other = _without_data(obs), _without_data(other)
                        runs[0].append(obs)
                        runs[1].append(other)
                elif key in self.consumed[y]:
                    other = self.consumed[y].pop(key)
                    if key in self.racy:              # raced a write to its blocks
                        obs, other = _without_data(obs), _without_data(other)
                    runs[x].append(obs)
                    runs[y].append(other)
                else:
                    self.consumed[x][key] = obs
        for x in (0, 1):
            runs[x].sort(key=_sort_key)
        return runs

    def _debts(self, looks: tuple[_Look, _Look], views: tuple[HostView, HostView],
               extra) -> None:
        """Rule 4: a completion owed where the CQ has room is missing there."""
        for x in (0, 1):
            y = 1 - x
            view = views[y]
            room = _room(view, looks[y])
            for key, s in self.seen[x].items():
                if (key not in self.seen[y] and key in view.outstanding
                        and view.cq_of.get(key[0]) in room):
                    extra[x].append(_synthetic(key, s, s.label))

    def _strays(self, looks: tuple[_Look, _Look], views: tuple[HostView, HostView],
                extra) -> None:
        """Rule 5: consumed completions of no command, matched by content across steps; one
        owed where the CQ has room and nothing of it is posted is a difference."""
        for x in (0, 1):
            theirs = self.strays[1 - x]
            for o in looks[x].loose:
                k = _stray(o)
                if theirs.get(k):
                    theirs[k].pop()
                    if not theirs[k]:
                        del theirs[k]
                else:
                    self.strays[x].setdefault(k, []).append(o)
        for x in (0, 1):
            y = 1 - x
            room = _room(views[y], looks[y])
            for k in [k for k in self.strays[x] if k[0] in room and not looks[y].strays[k]]:
                extra[x].extend(self.strays[x].pop(k))

    def _forget(self, looks: tuple[_Look, _Look], views: tuple[HostView, HostView]) -> None:
        """Drop completions whose command both hosts retired and neither shows any more."""
        visible = looks[0].shown.keys() | looks[1].shown.keys()
        for key in list(self.seen[0].keys() | self.seen[1].keys()):
            if key not in visible and all(key not in v.outstanding for v in views):
                self.seen[0].pop(key, None)
                self.seen[1].pop(key, None)
        self.racy = {k for k in self.racy if any(k in v.outstanding for v in views)}
        for x in (0, 1):
            waiting = self.consumed[x]
            for key in [k for k in waiting if k not in views[1 - x].outstanding]:
                del waiting[key]                  # the other host forgot it: never consumed

    @staticmethod
    def _rebuild(obs: list[Observation], run: list[Observation], look: _Look,
                 extra: list[Observation]) -> list[Observation]:
        out = list(run)
        for label, f in obs:
            if label.startswith("cqe/"):
                continue
            if label.startswith("posted/"):      # counted (rule 1), entries by rules 2-5
                f = {**f, "cqes": tuple(e for e in f["cqes"] if (e[0], e[1]) not in look.shown
                                        and (f["qid"], *e[:5]) not in look.strays)}
            out.append((label, f))
        return out + extra
