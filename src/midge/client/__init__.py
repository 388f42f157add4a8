"""An asyncio MQTT 3.1 / 3.1.1 client built on Midge's sans-IO protocol package.

    async with Client("127.0.0.1", 1883) as client:
        await client.subscribe("sensors/#", qos=1)
        await client.publish("sensors/t1", "21.5", qos=1)
        async for message in client.messages():
            print(message.topic, message.payload)

`ClientProtocol` (in `midge.client.protocol`) is the state machine under it,
usable without asyncio.
"""

from midge.client.client import Client
from midge.client.errors import (
    CannotConnect,
    ClientError,
    ConnectionLost,
    ConnectionRefused,
    ConnectTimeout,
    KeepAliveTimeout,
    NotConnected,
    PacketIdsExhausted,
    SubscribeError,
)
from midge.client.events import Message
from midge.client.protocol import ClientProtocol, ConnectOptions
from midge.client.streams import MessageStream
from midge.protocol.packets import Will

__all__ = [
    "CannotConnect",
    "Client",
    "ClientError",
    "ClientProtocol",
    "ConnectOptions",
    "ConnectTimeout",
    "ConnectionLost",
    "ConnectionRefused",
    "KeepAliveTimeout",
    "Message",
    "MessageStream",
    "NotConnected",
    "PacketIdsExhausted",
    "SubscribeError",
    "Will",
]
