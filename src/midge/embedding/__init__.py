"""Midge inside another asyncio program: `midge.Broker`, event hooks, views."""
