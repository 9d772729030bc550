"""Egress control: metadata and link-local refused with the rule named, allow lists, and the
per-connection check in the gateway's HTTP client. Nothing here sends traffic off loopback:
refused addresses are refused before any connection is attempted."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp import web

from toolway.config.policy import EgressConfig
from toolway.policy.egress import Egress
from toolway.protocol.errors import EgressDenied
from toolway.upstream.http import new_client_session


def egress(**config: Any) -> Egress:
    return Egress(EgressConfig.model_validate(config))


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is a cloud metadata address"),
        ("http://[fd00:ec2::254]/", "fd00:ec2::254 is a cloud metadata address"),
        ("http://169.254.10.1:8080/mcp", "169.254.10.1 is a link-local address"),
        ("http://[fe80::1]/mcp", "fe80::1 is a link-local address"),
        ("http://[::ffff:169.254.169.254]/", "is a cloud metadata address"),
        ("http://0.0.0.0:9000/mcp", "0.0.0.0 is an unspecified address"),
        (
            "http://metadata.google.internal/computeMetadata/v1/",
            "metadata.google.internal is a cloud metadata host name",
        ),
    ],
)
async def test_metadata_and_link_local_are_refused_by_default(url: str, says: str) -> None:
    with pytest.raises(EgressDenied) as caught:
        await egress().check_upstream(url)
    assert says in caught.value.message
    assert caught.value.message.startswith(f"upstream {url}: ")


async def test_the_refusal_says_how_to_allow_it_and_an_allow_entry_does() -> None:
    with pytest.raises(EgressDenied, match=r"add 169\.254\.169\.254 \(or a CIDR holding it\) to egress\.allow"):
        await egress().check_upstream("http://169.254.169.254/")
    await egress(allow=["169.254.0.0/16"]).check_upstream("http://169.254.169.254/")
    listed = egress(allow=["metadata.google.internal", "169.254.169.254"])
    listed.check_addresses("http://metadata.google.internal/", "metadata.google.internal", [])


async def test_loopback_is_allowed_by_default_and_names_are_resolved() -> None:
    await egress().check_upstream("http://127.0.0.1:9/mcp")
    await egress().check_upstream("http://localhost:9/mcp")  # resolves to loopback
    with pytest.raises(EgressDenied, match=r"localhost \((127\.0\.0\.1|::1)\) is a loopback address and"):
        await egress(allow_loopback=False).check_upstream("http://localhost:9/mcp")


async def test_private_ranges_follow_allow_private() -> None:
    await egress().check_upstream("http://10.1.2.3/mcp")
    with pytest.raises(EgressDenied, match=r"10\.1\.2\.3 is a private address and egress\.allow_private is false"):
        await egress(allow_private=False).check_upstream("http://10.1.2.3/mcp")
    await egress(allow_private=False, allow=["10.1.0.0/16"]).check_upstream("http://10.1.2.3/mcp")


async def test_a_non_empty_allow_list_admits_only_what_it_lists() -> None:
    rules = egress(allow=["*.example.com", "127.0.0.0/8"])
    await rules.check_upstream("http://127.0.0.1:9/mcp")
    rules.check_addresses("https://api.example.com/mcp", "api.example.com", [])
    with pytest.raises(EgressDenied, match=r"10\.0\.0\.1 matches no entry of egress\.allow \(\*\.example\.com, 127"):
        await rules.check_upstream("http://10.0.0.1/mcp")


async def test_an_unresolvable_name_is_refused_unless_start_up_defers_it() -> None:
    url = "http://no-such-host.invalid/mcp"
    with pytest.raises(EgressDenied, match=r"cannot resolve 'no-such-host\.invalid' to check it"):
        await egress().check_upstream(url)
    await egress().check_upstream(url, unresolvable_ok=True)


async def test_every_connection_is_checked_when_the_name_is_resolved() -> None:
    """A name checked at start-up may later resolve elsewhere; the client's resolver refuses it then."""

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        allowed = new_client_session(resolver=egress().resolver())
        async with allowed, allowed.get(f"http://localhost:{port}/") as resp:
            assert await resp.text() == "ok"
        refused = new_client_session(resolver=egress(allow_loopback=False).resolver())
        async with refused:
            with pytest.raises(aiohttp.ClientConnectorError) as caught:
                async with refused.get(f"http://localhost:{port}/"):
                    pass
        assert "egress refused: upstream //localhost:" in str(caught.value)
        assert "is a loopback address and egress.allow_loopback is false" in str(caught.value)
    finally:
        await runner.cleanup()
