"""Bridges to other brokers (docs/bridges.md); imported only with [[bridges]]."""
