"""A home-automation app with its MQTT broker inside (docs/embedding.md).

Sensors publish temperatures to home/<room>/temperature over MQTT; the app
switches each room's fan (home/<room>/fan, retained, so a fan that connects
later learns its state) and refuses readings that are not numbers before
any subscriber sees them.

    python examples/embedding/home_automation.py --port 1883
    mosquitto_pub -t home/kitchen/temperature -m 27.5
    mosquitto_sub -t 'home/+/fan' -v
"""

from __future__ import annotations

import argparse
import asyncio
import logging

import midge

TOO_WARM = 25.0  # degrees Celsius


class Devices(midge.Hooks):
    """Logs devices coming and going; drops readings that are not numbers."""

    def on_connect(self, client: midge.ClientInfo) -> None:
        print(f"device {client.client_id} connected from {client.address}", flush=True)

    def on_disconnect(self, client: midge.ClientInfo, reason: str) -> None:
        print(f"device {client.client_id} left: {reason}", flush=True)

    def on_publish(self, client: midge.ClientInfo | None, message: midge.Message) -> bool:
        if message.topic.endswith("/temperature"):
            try:
                float(message.payload)
            except ValueError:
                print(f"refused reading {message.payload!r} on {message.topic}", flush=True)
                return False
        return True


async def control_fans(broker: midge.Broker, readings: int | None = None) -> None:
    """React to each temperature; return after `readings` of them (None: never)."""
    async with broker.subscribe("home/+/temperature", qos=1) as temperatures:
        handled = 0
        async for message in temperatures:
            room = message.topic.split("/")[1]
            fan = "on" if float(message.payload) > TOO_WARM else "off"
            await broker.publish(f"home/{room}/fan", fan, qos=1, retain=True)
            print(f"{room}: {float(message.payload):.1f} C, fan {fan}", flush=True)
            handled += 1
            if readings is not None and handled >= readings:
                return


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=1883, help="0 picks a free port")
    parser.add_argument("--data-dir", default="home-data", help="where sessions are kept")
    parser.add_argument("--readings", type=int, help="stop after this many readings")
    args = parser.parse_args()
    logging.basicConfig(level="WARNING")
    async with midge.Broker(port=args.port, data_dir=args.data_dir, hooks=[Devices()]) as broker:
        print(f"broker listening on port {broker.port}", flush=True)
        await control_fans(broker, args.readings)


if __name__ == "__main__":
    asyncio.run(main())
