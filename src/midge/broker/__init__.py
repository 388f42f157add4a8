"""The broker: sans-IO state machines (connection, session, router) and thin asyncio front ends."""
