"""TLS for listeners: a server context with modern defaults, and client identities."""

from __future__ import annotations

import ssl
from typing import Any

from midge.broker.config import ConfigError, ListenerConfig

_MINIMUM_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def server_context(listener: ListenerConfig) -> ssl.SSLContext:
    """The SSLContext of a `tls` or `wss` listener; ConfigError names a file it cannot use."""
    # PROTOCOL_TLS_SERVER starts from Python's secure defaults (no SSLv3,
    # no compression, forward-secret ciphers first); we only raise the floor.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _MINIMUM_VERSIONS[listener.tls_version]
    where = f"listener {listener.host}:{listener.port}"
    try:
        context.load_cert_chain(listener.certfile, listener.keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{where}: cannot use certfile {listener.certfile!r} with keyfile "
            f"{listener.keyfile!r}: {exc}"
        ) from None
    if listener.cafile:
        try:
            context.load_verify_locations(cafile=listener.cafile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{where}: cannot use cafile {listener.cafile!r}: {exc}") from None
        # With a CA but no requirement, a client may still present a certificate.
        context.verify_mode = (
            ssl.CERT_REQUIRED if listener.require_certificate else ssl.CERT_OPTIONAL
        )
    return context


def certificate_identity(peercert: Any) -> str | None:
    """The common name (CN) of a verified client certificate, if there is one.

    asyncio gives `peercert` only for a certificate the handshake verified
    against the listener's CA; anything else is None here.
    """
    if not isinstance(peercert, dict):
        return None
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName" and isinstance(value, str):
                return value
    return None
