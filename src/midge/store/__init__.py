"""Durable broker state: the Store interface and its implementations."""
