"""Midge: an MQTT broker, client library and command-line toolkit."""

__version__ = "0.1.0"
