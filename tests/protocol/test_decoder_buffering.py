"""How the Decoder keeps input: parsed from the bytes as fed, only a cut-short
packet kept (in its spill), nothing at all once every packet is taken."""

from __future__ import annotations

from midge.protocol.codec import Decoder, encode
from midge.protocol.packets import PingReq, Publish

BIG = encode(Publish("t", b"x" * 5000))
PING = encode(PingReq())


def take_all(decoder: Decoder) -> list[object]:
    packets = []
    while (packet := decoder.next_packet()) is not None:
        packets.append(packet)
    return packets


def test_an_idle_decoder_keeps_no_input() -> None:
    decoder = Decoder()
    decoder.feed(PING + PING)
    assert len(take_all(decoder)) == 2
    assert decoder.buffered() == 0
    assert decoder._buffer == b""  # the fed bytes are let go, not kept till the next feed


def test_a_packet_in_one_byte_reads_comes_out_whole_once() -> None:
    decoder = Decoder()
    for index in range(len(BIG) - 1):
        decoder.feed(BIG[index : index + 1])
        assert decoder.next_packet() is None
        assert decoder.buffered() == index + 1
    decoder.feed(BIG[-1:] + PING)
    assert take_all(decoder) == [Publish("t", b"x" * 5000), PingReq()]
    assert decoder.buffered() == 0


def test_complete_packets_left_unread_are_not_held_for_an_earlier_packets_length() -> None:
    """A reader that stops taking packets (a publisher held back) and is fed
    more must still get every complete packet, whatever the last cut-short
    packet's length was."""
    decoder = Decoder()
    decoder.feed(BIG[:100])
    assert decoder.next_packet() is None  # 5000 bytes needed, 100 there
    decoder.feed(BIG[100:] + PING + PING)
    assert decoder.next_packet() == Publish("t", b"x" * 5000)
    decoder.feed(PING)  # two PINGREQs were not taken yet
    assert take_all(decoder) == [PingReq(), PingReq(), PingReq()]


def test_input_fed_while_not_read_is_counted() -> None:
    decoder = Decoder()
    decoder.feed(PING + BIG[:10])
    decoder.feed(BIG[10:20])
    assert decoder.buffered() == len(PING) + 20
