"""Interrupts: MSI-X messages per CQ vector, pin-based INTx level, INTMS/INTMC masking.

Rules from the reference digest section 5 (QEMU ``nvme_irq_assert``, ``nvme_irq_deassert``,
``nvme_irq_check``) and section 8 items 11 and 14.  ``Controller.irq_log`` records
``("msix", vector)`` per message and ``("intx", level)`` per change of the INTx line.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings, strategies as st

from nvmefuzz.protocol.spec import DNR, Status as S


def latency(rig) -> int:
    return rig.ctrl.config.io_latency_ns


class TestMsix:
    def test_admin_completion_signals_vector_0(self, rig):
        """The admin CQ uses MSI-X vector 0."""
        rig.ctrl.irq_log.clear()
        rig.admin(rig.nop())
        assert rig.ctrl.irq_log == [("msix", 0)]

    def test_io_completion_signals_its_cq_vector(self, rig):
        """Each I/O CQ signals the vector named by Create I/O CQ IV."""
        rig.io_pair(1, iv=5)
        rig.io_pair(2, iv=9)
        rig.ctrl.irq_log.clear()
        rig.flush(2)
        rig.ctrl.advance(latency(rig))
        rig.flush(1)
        rig.ctrl.advance(latency(rig))
        assert rig.ctrl.irq_log == [("msix", 9), ("msix", 5)]

    def test_every_posting_pass_signals_while_cq_not_empty(self, rig):
        """A new CQE signals again even if earlier CQEs were not consumed yet."""
        rig.io_pair(1, iv=3)
        rig.ctrl.irq_log.clear()
        rig.flush(1)
        rig.ctrl.advance(latency(rig))
        rig.flush(1)
        rig.ctrl.advance(latency(rig))
        assert rig.ctrl.irq_log == [("msix", 3), ("msix", 3)]
        assert len(rig.peek(1)) == 2

    def test_commands_fetched_together_signal_once_per_pass(self, rig):
        """Admin commands fetched in one pass are posted in one pass: one message."""
        rig.ctrl.irq_log.clear()
        for _ in range(3):
            rig.place(0, rig.nop())
        rig.ring_sq(0)
        assert rig.ctrl.irq_log == [("msix", 0)]
        assert len(rig.harvest(0)) == 3

    def test_cq_with_ien_0_posts_without_interrupt(self, rig):
        """IEN = 0: the CQE is written but no message is sent."""
        rig.io_pair(1, ien=0, iv=4)
        rig.ctrl.irq_log.clear()
        rig.flush(1)
        rig.ctrl.advance(latency(rig))
        assert [c.status for c in rig.peek(1)] == [0]
        assert rig.ctrl.irq_log == []

    def test_consuming_cqes_sends_nothing_with_msix(self, rig):
        """MSI-X has no deassert: emptying a CQ leaves the log untouched."""
        rig.place(0, rig.nop())
        rig.ring_sq(0)
        rig.ctrl.irq_log.clear()
        rig.harvest(0)
        assert rig.ctrl.irq_log == []

    def test_msix_mode_never_drives_intx(self, rig):
        """With MSI-X, irq_status stays 0 and INTMS/INTMC writes never change INTx."""
        rig.admin(rig.nop())
        rig.write("INTMS", 0xFFFF_FFFF)
        rig.write("INTMC", 0xFFFF_FFFF)
        rig.admin(rig.nop())
        assert rig.ctrl.irq_status == 0 and rig.ctrl.intx == 0
        assert all(kind == "msix" for kind, _ in rig.ctrl.irq_log)


class TestIntx:
    def test_cqe_asserts_intx_and_sets_vector_bit(self, intx_rig):
        """A posted CQE sets irq_status bit 0 and raises the INTx line."""
        r = intx_rig
        r.place(0, r.nop())
        r.ring_sq(0)
        assert r.ctrl.irq_log == [("intx", 1)]
        assert (r.ctrl.irq_status, r.ctrl.intx) == (1, 1)

    def test_emptying_the_cq_deasserts_intx(self, intx_rig):
        """A CQ head doorbell that empties the only pending CQ lowers the line."""
        r = intx_rig
        r.admin(r.nop())
        assert r.ctrl.irq_log == [("intx", 1), ("intx", 0)]
        assert (r.ctrl.irq_status, r.ctrl.intx, r.ctrl.cq_pending) == (0, 0, 0)

    def test_partial_consumption_keeps_intx_asserted(self, intx_rig):
        """The line stays up while the CQ still holds unconsumed entries."""
        r = intx_rig
        r.place(0, r.nop())
        r.place(0, r.nop())
        r.ring_sq(0)
        r.harvest(0, limit=1)
        assert r.ctrl.intx == 1 and r.ctrl.irq_log == [("intx", 1)]
        r.harvest(0)
        assert r.ctrl.intx == 0 and r.ctrl.irq_log == [("intx", 1), ("intx", 0)]

    def test_intms_masks_and_intmc_unmasks_the_level(self, intx_rig):
        """Setting the vector's INTMS bit lowers the line; clearing it via INTMC raises it."""
        r = intx_rig
        r.place(0, r.nop())
        r.ring_sq(0)
        r.write("INTMS", 0x1)
        assert r.ctrl.intx == 0
        r.write("INTMC", 0x1)
        assert r.ctrl.intx == 1
        assert r.ctrl.irq_log == [("intx", 1), ("intx", 0), ("intx", 1)]

    def test_masking_other_vectors_keeps_the_level(self, intx_rig):
        """Only the bits of vectors with pending completions matter."""
        r = intx_rig
        r.place(0, r.nop())
        r.ring_sq(0)
        r.write("INTMS", 0xFFFF_FFFE)
        assert r.ctrl.intx == 1 and r.ctrl.irq_log == [("intx", 1)]

    def test_completion_while_masked_asserts_on_unmask(self, intx_rig):
        """A CQE posted while vector 0 is masked records irq_status but raises INTx later."""
        r = intx_rig
        r.write("INTMS", 0x1)
        r.place(0, r.nop())
        r.ring_sq(0)
        assert (r.ctrl.irq_status, r.ctrl.intx, r.ctrl.irq_log) == (1, 0, [])
        r.write("INTMC", 0x1)
        assert r.ctrl.irq_log == [("intx", 1)]

    @settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.tuples(st.sampled_from(["INTMS", "INTMC"]),
                              st.integers(min_value=0, max_value=0xFFFF_FFFF)), max_size=10))
    def test_intx_level_is_irq_status_and_not_intms(self, make_rig, writes):
        """After any INTMS/INTMC writes, INTx == (irq_status & ~INTMS != 0), logged on change."""
        r = make_rig(msix=False)
        r.enable()
        r.place(0, r.nop())
        r.ring_sq(0)                             # vector 0 pending
        mask = 0
        for name, value in writes:
            level, seen = r.ctrl.intx, len(r.ctrl.irq_log)
            r.write(name, value)
            mask = mask | value if name == "INTMS" else mask & ~value
            assert r.read("INTMS") == mask
            expected = int(bool(r.ctrl.irq_status & ~mask & 0xFFFF_FFFF))
            assert r.ctrl.intx == expected == int(not mask & 1)
            assert r.ctrl.irq_log[seen:] == ([] if expected == level else [("intx", expected)])

    def test_all_cqs_share_vector_0_and_line_drops_when_last_cq_empties(self, intx_rig):
        """Without MSI-X every CQ uses bit 0; it clears only when cq_pending reaches 0."""
        r = intx_rig
        r.io_pair(1, iv=0)
        r.flush(1)
        r.ctrl.advance(latency(r))
        assert (r.ctrl.cq_pending, r.ctrl.intx) == (1, 1)
        r.admin(r.nop())                         # admin CQ fills and empties again
        assert (r.ctrl.cq_pending, r.ctrl.intx, r.ctrl.irq_status) == (1, 1, 1)
        r.harvest(1)
        assert (r.ctrl.cq_pending, r.ctrl.intx, r.ctrl.irq_status) == (0, 0, 0)

    def test_iv_nonzero_refused_without_msix(self, intx_rig):
        """Create I/O CQ with IV != 0 fails with Invalid Interrupt Vector | DNR under INTx."""
        r = intx_rig
        assert r.create_cq(1, 7, iv=1) == S.INVALID_IRQ_VECTOR | DNR
        assert r.create_cq(1, 7, iv=31, ien=0) == S.INVALID_IRQ_VECTOR | DNR
        assert r.create_cq(1, 7, iv=0) == 0

    def test_cq_with_ien_0_never_asserts_intx(self, intx_rig):
        """IEN = 0 CQs neither set irq_status nor count in cq_pending."""
        r = intx_rig
        r.io_pair(1, ien=0)
        r.ctrl.irq_log.clear()
        r.flush(1)
        r.ctrl.advance(latency(r))
        assert len(r.peek(1)) == 1
        assert (r.ctrl.irq_status, r.ctrl.cq_pending, r.ctrl.irq_log) == (0, 0, [])

    def test_deleting_a_nonempty_cq_deasserts(self, intx_rig):
        """Delete I/O CQ of a non-empty IEN CQ decrements cq_pending and drops the line."""
        r = intx_rig
        r.io_pair(1, iv=0)
        r.flush(1)
        r.ctrl.advance(latency(r))
        assert r.delete_sq(1) == 0
        assert (r.ctrl.cq_pending, r.ctrl.intx) == (1, 1)
        r.ctrl.irq_log.clear()
        assert r.delete_cq(1) == 0
        # the deletion lowers the line, then Delete CQ's own completion raises and clears it
        assert r.ctrl.irq_log == [("intx", 0), ("intx", 1), ("intx", 0)]
        assert (r.ctrl.cq_pending, r.ctrl.intx, r.ctrl.irq_status) == (0, 0, 0)

    def test_repeated_cq_head_doorbell_leaves_intx_stuck(self, intx_rig):
        """QEMU quirk: once cq_pending went negative, emptying a CQ no longer clears the bit."""
        r = intx_rig
        r.admin(r.nop())
        r.ring_cq(0)                             # CQ already empty: cq_pending -> -1
        r.admin(r.nop())
        assert r.ctrl.cq_pending == -1
        assert (r.ctrl.irq_status, r.ctrl.intx) == (1, 1)

    def test_controller_reset_keeps_irq_status_cq_pending_and_line(self, intx_rig):
        """QEMU quirk: CC.EN 1->0 clears INTMS but not irq_status, cq_pending or the pin."""
        r = intx_rig
        r.place(0, r.nop())
        r.ring_sq(0)
        r.disable()
        assert r.read("INTMS") == 0
        assert (r.ctrl.irq_status, r.ctrl.cq_pending, r.ctrl.intx) == (1, 1, 1)
        assert r.ctrl.irq_log == [("intx", 1)]
