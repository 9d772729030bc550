"""TLS toward an upstream that wants a client certificate (mTLS), or a private CA."""

from __future__ import annotations

import ssl

from toolway.config.auth import UpstreamTls


class UpstreamTlsError(Exception):
    """A server's `tls` files cannot be used; the message names the server and the file."""


def client_context(server: str, tls: UpstreamTls) -> ssl.SSLContext:
    """A verifying client context with the configured CA bundle and client certificate.

    Raises:
        UpstreamTlsError: a file cannot be read or holds no usable certificate or key.
    """
    try:
        context = ssl.create_default_context(cafile=tls.ca_file)
        if tls.cert_file is not None:
            context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise UpstreamTlsError(f"servers.{server}.tls: {exc}") from None
    return context
