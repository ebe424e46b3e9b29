"""The qtest line codec: pure, runs everywhere."""

from __future__ import annotations

import pytest

from nvmefuzz.errors import (
    DeviceProtocolError, QtestCommandFailed, QtestProtocolError, TargetError,
)
from nvmefuzz.targets import qtest_codec as Q

STREAM = (b"IRQ raise 20\nOK 0x0000000000101b36\nIRQ lower 20\nIRQ raise 5\n"
          b"OK\nFAIL could not advance time\nOK 0x00ff10\nERR invalid argument size\n"
          b"OK AAEC\nOK 1000\n")
EXPECTED = [Q.Irq(20, 1), Q.Reply(True, "0x0000000000101b36"), Q.Irq(20, 0), Q.Irq(5, 1),
            Q.Reply(True, ""), Q.Reply(False, "could not advance time", "FAIL"),
            Q.Reply(True, "0x00ff10"), Q.Reply(False, "invalid argument size", "ERR"),
            Q.Reply(True, "AAEC"), Q.Reply(True, "1000")]


def test_requests_are_formatted_as_qemu_parses_them():
    assert Q.format_read(4, 0xC000001C) == "readl 0xc000001c"
    assert Q.format_read(8, 0) == "readq 0x0"
    assert Q.format_write(4, 0xC0001000, 3) == "writel 0xc0001000 0x3"
    assert Q.format_write(8, 0xC0000028, 0x18000) == "writeq 0xc0000028 0x18000"
    assert Q.format_mem_read(0x10000, 16) == "read 0x10000 0x10"
    assert Q.format_mem_write(0x10, b"\x00\xab") == "write 0x10 0x2 0x00ab"
    assert Q.format_b64read(0x20, 3) == "b64read 0x20 0x3"
    assert Q.format_b64write(0x20, b"\x00\x01\x02") == "b64write 0x20 0x3 AAEC"
    assert Q.format_memset(0x1000, 8, 0) == "memset 0x1000 0x8 0x0"
    assert Q.format_clock_step(1) == "clock_step 0x1"
    assert Q.format_clock_step() == "clock_step"
    assert Q.format_outl(0xCF8, 0x80002000) == "outl 0xcf8 0x80002000"
    assert Q.format_inl(0xCFC) == "inl 0xcfc"
    assert Q.format_irq_intercept_in("ioapic") == "irq_intercept_in ioapic"
    assert Q.request("readl 0x0") == b"readl 0x0\n"


@pytest.mark.parametrize("bad", [
    lambda: Q.format_read(3, 0), lambda: Q.format_write(4, 0, 1 << 32),
    lambda: Q.format_write(4, -1, 0), lambda: Q.format_mem_read(0, 0),
    lambda: Q.format_mem_write(0, b""), lambda: Q.format_b64write(0, b""),
    lambda: Q.format_clock_step(0), lambda: Q.format_outl(0x10000, 0),
    lambda: Q.format_irq_intercept_in("a b"), lambda: Q.request("readl 0\nreadl 4"),
    lambda: Q.format_memset(0, 1, 256),
])
def test_requests_qemu_would_abort_on_are_refused(bad):
    with pytest.raises(QtestProtocolError):
        bad()


def test_whole_stream_splits_irq_lines_from_replies():
    p = Q.ReplyParser()
    assert p.feed(STREAM) == EXPECTED
    assert p.pending == 0


def test_byte_at_a_time_gives_the_same_events():
    p = Q.ReplyParser()
    got = []
    for i in range(len(STREAM)):
        got += p.feed(STREAM[i:i + 1])
    assert got == EXPECTED


def test_chunks_split_anywhere_and_partial_lines_wait():
    p = Q.ReplyParser()
    assert p.feed(b"IRQ rai") == []
    assert p.pending == 7
    assert p.feed(b"se 3\nOK 0x1") == [Q.Irq(3, 1)]
    assert p.feed(b"2\r\n") == [Q.Reply(True, "0x12")]


@pytest.mark.parametrize("garbage", [
    b"HELLO\n", b"IRQ sideways 3\n", b"IRQ raise x\n", b"IRQ raise\n", b"\xff\xfe\n", b"\n",
    b"ok 1\n",
])
def test_garbage_is_a_protocol_error(garbage):
    with pytest.raises(QtestProtocolError) as info:
        Q.ReplyParser().feed(garbage)
    assert isinstance(info.value, DeviceProtocolError)


def test_an_endless_line_is_refused():
    p = Q.ReplyParser()
    with pytest.raises(QtestProtocolError):
        p.feed(b"OK " + b"0" * (Q.MAX_LINE + 1))


def test_reply_values_and_data():
    assert Q.Reply(True, "0x0000000000101b36").value() == 0x101B36
    assert Q.Reply(True, "1000").value() == 1000
    assert Q.Reply(True, "0x00ff10").data(3) == b"\x00\xff\x10"
    assert Q.Reply(True, "AAEC").b64(3) == b"\x00\x01\x02"
    with pytest.raises(QtestCommandFailed) as info:
        Q.Reply(False, "could not advance time", "FAIL").value("clock_step")
    assert isinstance(info.value, TargetError) and "could not advance time" in str(info.value)
    for bad in (lambda: Q.Reply(True, "").value(), lambda: Q.Reply(True, "0x00ff").data(3),
                lambda: Q.Reply(True, "00ff").data(2), lambda: Q.Reply(True, "0xzz").data(1),
                lambda: Q.Reply(True, "!!!").b64(1), lambda: Q.Reply(True, "AAEC").b64(2)):
        with pytest.raises(QtestProtocolError):
            bad()


def test_requests_go_back_to_back_and_stay_one_line_each():
    """``requests`` is ``request`` for every line, in one pass; a line break inside is refused."""
    lines = ["readl 0x0", "writel 0x4 0x1", "clock_step 0x1"]
    assert Q.requests(lines) == b"".join(Q.request(x) for x in lines)
    for bad in (["readl 0\nreadl 4"], ["readl 0", "readl 4\r"], ["readl 0\n", "x"]):
        with pytest.raises(QtestProtocolError):
            Q.requests(bad)


def test_repeated_short_replies_are_parsed_once():
    """The same short line gives the same event object; long lines are parsed every time."""
    p = Q.ReplyParser()
    first = p.feed(b"OK\nOK 0x00000000\n")
    again = p.feed(b"OK\nOK 0x00000000\n")
    assert first == again == [Q.Reply(True, ""), Q.Reply(True, "0x00000000")]
    assert all(a is b for a, b in zip(first, again))
    data = b"OK 0x" + b"ab" * 64 + b"\n"
    one, two = p.feed(data), p.feed(data)
    assert one == two and one[0] is not two[0]
    assert one[0].data(64) == b"\xab" * 64
