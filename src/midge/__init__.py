"""Midge: an MQTT broker, client library and command-line toolkit."""

__version__ = "0.1.0"


def compiled() -> bool:
    """Whether the hot modules run compiled by mypyc (`scripts/compile`)."""
    from midge.broker import broker  # noqa: PLC0415 - only when asked

    return not (broker.__file__ or "").endswith(".py")
