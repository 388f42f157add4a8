"""An asyncio MQTT 3.1 / 3.1.1 / 5.0 client built on Midge's sans-IO protocol package.

    async with Client("127.0.0.1", 1883) as client:
        await client.subscribe("sensors/#", qos=1)
        await client.publish("sensors/t1", "21.5", qos=1)
        async for message in client.messages():
            print(message.topic, message.payload)

MQTT 5.0: `Client(..., protocol_version=5, properties=Properties(...))`,
`publish(..., properties=...)`, `subscribe(..., no_local=True, ...)`,
`request(topic, payload)` / `reply(message, payload)`.

`ClientProtocol` (in `midge.client.protocol`) is the state machine under it,
usable without asyncio.
"""

from midge.client.client import Client
from midge.client.errors import (
    AuthenticationError,
    CannotConnect,
    ClientError,
    ConnectionLost,
    ConnectionRefused,
    ConnectTimeout,
    KeepAliveTimeout,
    NotConnected,
    PacketIdsExhausted,
    PacketTooLarge,
    PublishError,
    SubscribeError,
    UnsubscribeError,
)
from midge.client.events import Message
from midge.client.options import Authenticator, ServerLimits
from midge.client.protocol import ClientProtocol, ConnectOptions
from midge.client.streams import MessageStream
from midge.protocol.packets import Subscription, Will
from midge.protocol.properties import Properties

__all__ = [
    "AuthenticationError",
    "Authenticator",
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
    "PacketTooLarge",
    "Properties",
    "PublishError",
    "ServerLimits",
    "SubscribeError",
    "Subscription",
    "UnsubscribeError",
    "Will",
]
