"""TLS termination on the agent port, and the client certificate handed to the app.

uvicorn terminates TLS (`ssl_*` options) but does not put the peer certificate in the
ASGI scope. These protocol classes read it from the connection's TLS object once, when
the connection is made, and add the ASGI TLS extension (`scope["extensions"]["tls"]`)
to every request and WebSocket on it, with the parsed certificate under
`toolway.peer` for `auth/mtls.py`.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from toolway.auth.mtls import PEER_KEY, PeerCertificate


def tls_extension(transport: asyncio.BaseTransport) -> dict[str, Any] | None:
    """The ASGI TLS extension for a connection; None when it is not TLS."""
    ssl_object = transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject):
        return None
    der = ssl_object.getpeercert(binary_form=True)
    peer = PeerCertificate.from_der(der) if der else None
    version = ssl_object.version()
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_name": peer.subject if peer is not None else None,
        "client_cert_error": None,
        "tls_version": version,
        "cipher_suite": None,
        PEER_KEY: peer,
    }


class TlsHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the TLS extension in each request's scope."""

    _tls: dict[str, Any] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._tls = tls_extension(transport)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._tls is not None:
            self.scope["extensions"] = {"tls": self._tls}  # type: ignore[dict-item]


class TlsWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, with the TLS extension in the connection's scope."""

    _tls: dict[str, Any] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._tls = tls_extension(transport)

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        # The app task was created but has not run yet: it will see the extension.
        if self._tls is not None and scope is not None:
            scope.setdefault("extensions", {})["tls"] = self._tls
