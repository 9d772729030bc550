"""mTLS: the client certificate the TLS layer verified (against `auth.mtls.ca_file`) names the caller.

The TLS handshake has already checked the chain, validity dates and the key proof; an
unverifiable certificate never gets this far. This module turns the verified leaf into
an identity: its subject CN or first DNS/URI/email SAN, as configured, with team, roles
and scopes from `auth.mtls.identities` (a certificate carries none of its own).
"""

from __future__ import annotations

from dataclasses import dataclass

from toolway.auth.identity import Identity
from toolway.config.auth import Grant, MtlsConfig
from toolway.protocol.errors import AuthenticationFailed

# The key under `scope["extensions"]["tls"]` (the ASGI TLS extension) where the listener
# leaves the parsed certificate, so it is parsed once per connection, not per request.
PEER_KEY = "toolway.peer"


@dataclass(frozen=True, slots=True)
class PeerCertificate:
    """What the gateway reads from a verified client certificate."""

    subject: str  # RFC 4514
    cn: str | None
    san_dns: tuple[str, ...]
    san_uri: tuple[str, ...]
    san_email: tuple[str, ...]

    @classmethod
    def from_der(cls, der: bytes) -> PeerCertificate:
        # Imported here: cryptography costs ~8 MB of memory, and only TLS listeners parse certificates.
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        cert = x509.load_der_x509_certificate(der)
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns = tuple(san.get_values_for_type(x509.DNSName))
            uri = tuple(san.get_values_for_type(x509.UniformResourceIdentifier))
            email = tuple(san.get_values_for_type(x509.RFC822Name))
        except x509.ExtensionNotFound:
            dns, uri, email = (), (), ()
        cn = cns[0].value if cns else None
        return cls(
            subject=cert.subject.rfc4514_string(),
            cn=cn if isinstance(cn, str) else None,
            san_dns=dns,
            san_uri=uri,
            san_email=email,
        )


class MtlsAuthenticator:
    def __init__(self, config: MtlsConfig) -> None:
        self._from = config.identity_from
        self._grants = dict(config.identities)
        self._none = Grant()

    def authenticate(self, peer: PeerCertificate | None) -> Identity:
        """The identity of a verified peer. Raises AuthenticationFailed without a usable certificate."""
        if peer is None:
            raise AuthenticationFailed("no client certificate was presented", error=None)
        if self._from == "cn":
            subject = peer.cn
        else:
            values = {"san_dns": peer.san_dns, "san_uri": peer.san_uri, "san_email": peer.san_email}[self._from]
            subject = values[0] if values else None
        if not subject:
            raise AuthenticationFailed(f"the client certificate ({peer.subject}) has no {self._from} to name it by")
        grant = self._grants.get(subject, self._none)
        return Identity(
            subject=subject,
            scheme="mtls",
            team=grant.team,
            roles=frozenset(grant.roles),
            scopes=frozenset(grant.scopes),
            claims={"certificate_subject": peer.subject},
        )
