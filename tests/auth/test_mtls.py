"""The identity a verified client certificate yields: its subject CN or a SAN, as configured."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
import trustme

from toolway.auth.mtls import MtlsAuthenticator, PeerCertificate
from toolway.config.auth import MtlsConfig
from toolway.protocol.errors import AuthenticationFailed


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.mark.parametrize(
    ("identity_from", "expected"),
    [("cn", "agent-cn"), ("san_dns", "agent.example.test"), ("san_email", "agent@example.test")],
)
def test_identity_from_subject_or_san(ca: trustme.CA, identity_from: Any, expected: str) -> None:
    cert = ca.issue_cert("agent.example.test", "agent@example.test", common_name="agent-cn")
    der = ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())
    peer = PeerCertificate.from_der(der)
    config = MtlsConfig(cert_file="c", key_file="k", ca_file="a", identity_from=identity_from)
    identity = MtlsAuthenticator(config).authenticate(peer)
    assert (identity.subject, identity.scheme) == (expected, "mtls")
    with pytest.raises(AuthenticationFailed, match="has no san_uri"):
        MtlsAuthenticator(MtlsConfig(cert_file="c", key_file="k", ca_file="a", identity_from="san_uri")).authenticate(
            peer
        )


def test_no_certificate_is_no_credential() -> None:
    config = MtlsConfig(cert_file="c", key_file="k", ca_file="a")
    with pytest.raises(AuthenticationFailed) as refused:
        MtlsAuthenticator(config).authenticate(None)
    assert refused.value.error is None
