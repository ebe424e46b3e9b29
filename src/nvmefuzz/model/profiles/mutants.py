"""The mutant catalogue: deliberately broken variants of ``full`` that measure the fuzzer.

``full`` saves every schema path and is observationally perfect, so any guest-visible
difference a mutant of it shows is the injected bug.  ``MUTANTS`` holds three kinds:

* ``field``: one per path ``full`` saves, named ``full-without-<path>`` (the destination keeps
  the power-on value).  ``field_mutants()`` builds them from the live schema, so a new state
  field gets a mutant without anyone writing one;
* ``behaviour``: hand-written bugs of the kinds migration code gets wrong (hooks in
  ``mutant_hooks``), named ``full+<slug>``;
* ``shipped``: the bug classes real NVMe migration code shipped (reference notes
  ``qemu-migration.md`` section 4), also ``full+<slug>``.

``NOT_KILLABLE`` lists the mutants no trace can tell from ``full``, each with the argument.
The model restores CQs before SQs and links an SQ to its CQ by id only, so "CQs restored after
SQs" cannot happen as such; ``full+sqs-unlinked-from-cqs`` injects its QEMU consequence (an SQ
initialised before its CQ is missing from the CQ's SQ list, so room on the CQ never kicks it).
"""

from __future__ import annotations

from typing import Any

import attrs

from nvmefuzz.model import snapshot as snap
from nvmefuzz.model.profiles import full, mutant_hooks as h
from nvmefuzz.model.profiles.base import Profile

BASE = full.PROFILE
FIELD, BEHAVIOUR, SHIPPED = "field", "behaviour", "shipped"
PREFIX = "full+"
QEMU_RACE = "reference/qemu-migration.md s1.7 (pre_save re-arms SQ BHs after cancelling them)"


def field_mutants(base: Profile | None = None) -> dict[str, Profile]:
    """One mutant per path ``base`` saves; by default ``full`` over ``snapshot.SCHEMA`` as it
    is now, so the list follows the model's state."""
    if base is None:
        base = attrs.evolve(BASE, saves=frozenset(snap.SCHEMA))
    return {m.name: m for m in (base.without(p) for p in sorted(base.saves))}


def _mutant(slug: str, description: str, source: str, **hooks: Any) -> Profile:
    cls = h.AfterCapture if "after_capture" in hooks else Profile
    hooks = {"pre_save": BASE.pre_save, "post_load": BASE.post_load, **hooks}
    return cls(name=PREFIX + slug, description=description, source=source, saves=BASE.saves,
               **hooks)


BEHAVIOURAL: tuple[Profile, ...] = (
    _mutant("admin-cq-phase-reset", "the admin CQ comes back with phase tag 1, as if just "
            "created", "phase tag not restored", decode_state=h.admin_cq_phase_reset),
    _mutant("wrapped-cq-phase", "each CQ's phase tag is re-derived as 'tail at or past head' "
            "instead of saved: wrong once the CQ lapped and the host emptied it",
            "phase tag not restored", decode_state=h.wrapped_cq_phase),
    _mutant("stalled-sq-not-rekicked", "an SQ with unfetched entries at save stays idle on "
            "the destination until its doorbell is rung again", "SQ processing not restarted "
            "after restore", post_load=h.stalled_sq_not_rekicked),
    _mutant("waiting-last-dropped", "the last waiting completion of each full CQ is not "
            "saved (a loop bound off by one)", "waiting completions of a full CQ dropped",
            decode_state=h.waiting_last_dropped),
    _mutant("waiting-reordered", "waiting completions of a full CQ are restored in reverse "
            "order", "waiting completions of a full CQ reordered",
            decode_state=h.waiting_reversed),
    _mutant("waiting-capped", f"only the first {h.SAVE_ARRAY} waiting completions of each "
            "full CQ are saved (a fixed-size array in the migration stream)",
            "waiting completions of a full CQ dropped", decode_state=h.waiting_capped),
    _mutant("aer-queue-keeps-oldest", "only the oldest queued asynchronous event survives "
            "(one pending-event slot)", "queued AER events dropped",
            decode_state=h.aer_queue_keeps_oldest),
    _mutant("aer-queue-capped", f"only the {h.SAVE_ARRAY} oldest queued asynchronous events "
            "are saved (a fixed-size array)", "queued AER events dropped",
            decode_state=h.aer_queue_capped),
    _mutant("aer-mask-notice-only", "only the Notice bit of the AER mask is migrated (like "
            "SPDK's notice_aen_mask); Error and SMART masks are lost", "AER masks lost",
            decode_state=h.aer_mask_notice_only),
    _mutant("aer-reqs-last-dropped", "the most recent outstanding AER is not re-created on "
            "the destination", "outstanding AER requests lost",
            decode_state=h.aer_reqs_last_dropped),
    _mutant("aer-reqs-duplicated", "the newest outstanding AER is re-created twice (from the "
            "AER list and from the admin SQ's outstanding list)",
            "outstanding AER requests duplicated", decode_state=h.aer_reqs_duplicated),
    _mutant("dbbuf-addresses-zero", "shadow doorbells stay enabled but their buffer and "
            "EventIdx addresses are not re-derived (zero)", "shadow doorbell / EventIdx "
            "addresses not re-derived", decode_state=h.dbbuf_addresses_zero),
    _mutant("vector-ien-swapped", "each CQ's interrupt vector and IEN bit are decoded into "
            "each other's place", "interrupt vector or IEN swapped",
            decode_state=h.vector_ien_swapped),
    _mutant("intms-written-to-intmc", "the destination applies the saved INTMS by writing "
            "INTMC, clearing the mask instead of setting it", "INTMS mask lost",
            post_load=h.intms_written_to_intmc),
    _mutant("inflight-replayed-twice", "the source finishes in-flight writes after its state "
            "was captured and the destination runs them again", "in-flight I/O replayed twice "
            "(a duplicate write)", after_capture=h.source_lands_inflight_writes),
    _mutant("inflight-reads-dropped", "only in-flight commands that change the disk are "
            "replayed; in-flight Read, Compare and Flush vanish", "in-flight I/O dropped",
            decode_state=h.inflight_reads_dropped),
    _mutant("inflight-capped", f"only the first {h.SAVE_ARRAY} in-flight I/O commands are "
            "saved (a fixed-size array); the rest vanish", "in-flight I/O dropped",
            decode_state=h.inflight_capped),
    _mutant("inflight-restarted", "in-flight I/O is re-issued on the destination and takes "
            "a full backend latency again", "in-flight I/O replayed late",
            post_load=h.inflight_restarted),
    _mutant("timestamp-rebased", "the Timestamp feature is rebased to the destination's "
            "clock at load, losing the time since it was set", "timestamp rebased",
            post_load=h.timestamp_rebased),
    _mutant("sqs-unlinked-from-cqs", "I/O SQs restored before their CQ are not on the CQ's "
            "SQ list: room on the CQ never re-kicks them", "CQs restored after SQs "
            "(QEMU __nvme_init_cq re-initialises cq->sq_list)",
            post_load=h.sqs_unlinked_from_cqs),
    _mutant("refused-save-stalls-sq", "a save refused for a full CQ leaves SQ processing "
            "stopped on the source, which keeps running", "a refused save that leaves SQ "
            "processing stopped (QEMU v3 error path)",
            pre_save=h.refuse_full_cq_and_stay_stopped),
    _mutant("cq-pending-recounted", "the INTx pending-CQ count is recomputed from non-empty "
            "CQs, counting CQs with interrupts disabled", "derived interrupt state recomputed "
            "wrongly", post_load=h.cq_pending_recounted),
    _mutant("host-behavior-defined-only", "only the four defined bytes of Host Behavior "
            "Support are saved", "feature saved partially",
            decode_state=h.host_behavior_defined_only),
    _mutant("err-rec-low-word", "Error Recovery is saved as its low 16 bits (TLER), upper "
            "bits lost", "feature saved partially", decode_state=h.err_rec_low_word),
    _mutant("used-not-recomputed", "each SQ's count of request objects in use is not "
            "recomputed on import (starts at zero)", "derived 'used' state not recomputed "
            "(Propolis #981 class)", post_load=h.used_not_recomputed),
    _mutant("wrapped-sq-clamped", "an import check takes an SQ head past its tail for "
            "corrupt and clamps it to the tail: a wrapped SQ's unfetched entries vanish",
            "wrong SQ head after import", decode_state=h.wrapped_sq_clamped),
)

SHIPPED_BUGS: tuple[Profile, ...] = (
    attrs.evolve(BASE.without("csts"), name=PREFIX + "csts-not-migrated",
                 description="CSTS is not part of the migrated register image",
                 source="SPDK nvmf/vfio-user #2362 (fix review.spdk.io 11418)"),
    _mutant("enabled-flag-stale", "a cached 'enabled' flag is not recomputed on import: "
            "doorbells are refused until CC is written", "Propolis #981 (a)",
            post_load=h.enabled_flag_stale),
    _mutant("sq-head-wrong", "each I/O SQ's head is imported one entry back (last fetched "
            "instead of next to fetch)", "Propolis #981 (b): wrong SQ head after import",
            decode_state=h.sq_head_one_back),
    _mutant("cq-eventidx-not-lagging", "with shadow doorbells the destination sets each CQ's "
            "EventIdx to its tail, so head updates never wake it", "Propolis #1008 / omicron "
            "#9726: lost wake-up", post_load=h.cq_eventidx_at_tail),
    _mutant("sq-cq-association-lost", "the import links I/O SQ n to CQ n when that CQ "
            "exists, whatever CQ it was created on", "Propolis PR #953 review",
            decode_state=h.sq_paired_by_id),
    _mutant("source-fetches-after-capture", "after capture the source drains, posts and "
            "fetches on (writes reach the shared disk); the destination runs those commands "
            "again", QEMU_RACE, after_capture=h.source_keeps_fetching),
)

FIELDS: dict[str, Profile] = field_mutants(BASE)
MUTANTS: dict[str, Profile] = {**FIELDS, **{m.name: m for m in BEHAVIOURAL + SHIPPED_BUGS}}
KIND: dict[str, str] = {**dict.fromkeys(FIELDS, FIELD),
                        **{m.name: BEHAVIOUR for m in BEHAVIOURAL},
                        **{m.name: SHIPPED for m in SHIPPED_BUGS}}

_W = "full-without-"
NOT_KILLABLE: dict[str, str] = {
    _W + "cap": "CAP is read-only and computed from the Config, which both sides share: the "
                "power-on value always equals the saved one",
    _W + "vs": "VS is a read-only constant (1.4): the power-on value is the saved value",
    _W + "nssr": "NSSR writes are ignored (CAP.NSSRS=0, no handler), so it is always 0, its "
                 "power-on value",
    _W + "temperature": "the composite temperature comes from the Config and nothing changes "
                        "it: the power-on value is the saved value",
    _W + "smart_critical_warning": "nothing in the model sets it (the temperature warning "
                                   "bit is computed when the SMART log is read): always 0",
    _W + "page_size": "vocabulary limit: page_size changes only when a controller starts "
                      "with CC.MPS != 0, and the host driver enables with MPS=0, or with an "
                      "MPS above MPSMAX that fails the start (CSTS.CFS) and leaves page_size "
                      "as it was (a raw CC write leaves the driver without queues, and its "
                      "buffers are contiguous, so PRP walks agree); always 4096 when commands "
                      "can run. A valid MPS above 0 at enable would make it killable",
}


def killable() -> list[str]:
    return [n for n in MUTANTS if n not in NOT_KILLABLE]


__all__ = ["BASE", "KIND", "MUTANTS", "NOT_KILLABLE", "field_mutants", "killable"]
