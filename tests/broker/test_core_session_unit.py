"""Session as plain data: packet id allocation and the bounded queue."""

from __future__ import annotations

import pytest

from midge.broker.session import MAX_PACKET_ID, Awaiting, InflightMessage, Session
from midge.message import Message


def in_flight(session: Session, *packet_ids: int) -> None:
    for packet_id in packet_ids:
        session.inflight[packet_id] = InflightMessage(
            packet_id, Message("t", b"", 1), Awaiting.PUBACK, packet_id
        )


def test_packet_ids_start_at_1_and_count_up():
    """[MQTT-2.3.1-1] ids are non-zero."""
    session = Session("c", persistent=False)
    assert [session.allocate_packet_id() for _ in range(3)] == [1, 2, 3]


def test_packet_ids_wrap_from_65535_to_1():
    """[MQTT-2.3.1-1] after 65535 comes 1, never 0."""
    session = Session("c", persistent=False)
    ids = [session.allocate_packet_id() for _ in range(MAX_PACKET_ID)]
    assert ids == list(range(1, 65536))
    assert session.allocate_packet_id() == 1
    assert session.allocate_packet_id() == 2


def test_packet_ids_skip_ids_in_flight():
    """[MQTT-2.3.1-2] a new id is one not used by a message still in flight."""
    session = Session("c", persistent=False)
    in_flight(session, 1, 2, 4)
    assert session.allocate_packet_id() == 3
    assert session.allocate_packet_id() == 5


def test_packet_ids_skip_in_flight_across_the_wrap():
    session = Session("c", persistent=False)
    for _ in range(MAX_PACKET_ID - 2):
        session.allocate_packet_id()  # next is 65534
    in_flight(session, 65535, 1, 2)
    assert session.allocate_packet_id() == 65534
    assert session.allocate_packet_id() == 3


def test_the_only_free_id_is_found():
    session = Session("c", persistent=False)
    in_flight(session, *(i for i in range(1, MAX_PACKET_ID + 1) if i != 40000))
    assert session.allocate_packet_id() == 40000


def test_no_free_id_raises():
    session = Session("c", persistent=False)
    in_flight(session, *range(1, MAX_PACKET_ID + 1))
    with pytest.raises(RuntimeError):
        session.allocate_packet_id()


def test_queue_bounds_and_byte_accounting():
    """can_queue: count and byte bounds, 0 meaning no bound; bytes = topic + payload."""
    session = Session("c", persistent=True)
    message = Message("tt", b"12345678")  # 10 bytes
    assert session.can_queue(message, 2, 20)
    session.enqueue(1, message)
    session.enqueue(2, message)
    assert session.queued_bytes == 20
    assert not session.can_queue(message, 3, 20)  # bytes
    assert not session.can_queue(message, 2, 0)  # count
    assert session.can_queue(message, 0, 0)  # no bounds
    assert session.can_queue(Message("", b""), 3, 20)  # zero bytes still fits
    assert session.dequeue() == (1, message)
    assert session.queued_bytes == 10
    session.clear_queue()
    assert len(session.queue) == 0
    assert session.queued_bytes == 0
