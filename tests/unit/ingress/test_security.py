"""DNS-rebinding protection: HostOriginCheck."""

from __future__ import annotations

import pytest

from toolway.ingress.security import HostOriginCheck

DEFAULT = ["localhost", "127.0.0.1", "::1"]


@pytest.fixture
def check() -> HostOriginCheck:
    return HostOriginCheck(DEFAULT, DEFAULT)


# --- Host -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "localhost:8080",
        "localhost:80",
        "localhost:",
        "LOCALHOST",
        "LocalHost:8080",
        "127.0.0.1",
        "127.0.0.1:65535",
        "[::1]",
        "[::1]:8080",
        "::1",  # unbracketed (malformed but unambiguous)
    ],
)
def test_allowed_hosts(check: HostOriginCheck, host: str) -> None:
    assert check.problem(host, None) is None


@pytest.mark.parametrize(
    "host",
    [
        "evil.com",
        "evil.com:8080",
        "localhost.evil.com",
        "localhost.",
        "127.0.0.2",
        "127.0.0.1.nip.io",
        "0.0.0.0",
        "[::2]:8080",
        "[::ffff:127.0.0.1]",
        "",
        " localhost",
        "localhost:8080:9090",
        "user@localhost",
    ],
)
def test_disallowed_hosts_are_refused_with_421(check: HostOriginCheck, host: str) -> None:
    problem = check.problem(host, None)
    assert problem is not None
    status, reason = problem
    assert status == 421
    assert repr(host) in reason


@pytest.mark.parametrize("host", ["[::1]evil.com", "[::1]:8080:junk", "[::1]@evil.com", "[::1"])
def test_malformed_bracketed_hosts_are_refused(check: HostOriginCheck, host: str) -> None:
    problem = check.problem(host, None)
    assert problem is not None
    assert problem[0] == 421


def test_missing_host_is_refused_with_421(check: HostOriginCheck) -> None:
    problem = check.problem(None, None)
    assert problem is not None
    assert problem[0] == 421


def test_host_is_checked_before_origin(check: HostOriginCheck) -> None:
    problem = check.problem("evil.com", "http://evil.com")
    assert problem is not None
    assert problem[0] == 421


def test_allowed_hosts_config_is_case_insensitive() -> None:
    check = HostOriginCheck(["MyHost.Example"], [])
    assert check.problem("myhost.example:443", None) is None
    assert check.problem("MYHOST.EXAMPLE", None) is None


@pytest.mark.parametrize("host", [None, "", "anything", "evil.com:1", "[::1]:8080"])
def test_star_allows_any_host_even_a_missing_one(host: str | None) -> None:
    assert HostOriginCheck(["*"], ["*"]).problem(host, None) is None


def test_star_among_other_hosts_allows_all() -> None:
    assert HostOriginCheck(["localhost", "*"], []).problem("evil.com", None) is None


def test_no_allowed_hosts_refuses_everything() -> None:
    assert HostOriginCheck([], ["*"]).problem("localhost", None) == (421, "Host 'localhost' is not allowed")


def test_accepts_any_iterable_once() -> None:
    check = HostOriginCheck(iter(["localhost"]), (h for h in ["localhost"]))
    assert check.problem("localhost", "http://localhost") is None
    assert check.problem("localhost", "http://localhost:1") is None


# --- Origin ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost",
        "http://localhost:3000",
        "https://localhost",
        "HTTP://LOCALHOST:3000",
        "http://127.0.0.1:8080",
        "http://[::1]:8080",
        "http://[::1]",
        "vscode-webview://localhost",
        "http://localhost:99999",  # port out of range: the host still decides
    ],
)
def test_allowed_origins(check: HostOriginCheck, origin: str) -> None:
    assert check.problem("localhost", origin) is None


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.com",
        "https://evil.com:443",
        "http://localhost.evil.com",
        "http://evil.com/localhost",
        "http://evil.com?localhost",
        "http://evil.com#localhost",
        "http://127.0.0.2",
        "null",  # sandboxed iframes and file:// pages
        "",
        "localhost",  # not a URL: no host part
        "file://",
        "http://",
        "http://[::1",  # unbalanced bracket: urlsplit raises ValueError
        "http://[not-an-ip]",
        "*",
    ],
)
def test_disallowed_origins_are_refused_with_403(check: HostOriginCheck, origin: str) -> None:
    problem = check.problem("localhost", origin)
    assert problem is not None
    status, reason = problem
    assert status == 403
    assert repr(origin) in reason


def test_missing_origin_is_fine(check: HostOriginCheck) -> None:
    # Non-browser clients send no Origin.
    assert check.problem("localhost:8080", None) is None


@pytest.mark.parametrize("origin", ["null", "http://evil.com", "", "garbage"])
def test_star_allows_any_origin(origin: str) -> None:
    assert HostOriginCheck(["localhost"], ["*"]).problem("localhost", origin) is None


def test_allowed_origins_config_is_case_insensitive() -> None:
    check = HostOriginCheck(["localhost"], ["App.Example.COM"])
    assert check.problem("localhost", "https://app.example.com") is None
    assert check.problem("localhost", "https://APP.EXAMPLE.com:8443") is None


def test_origin_star_does_not_open_the_host_check() -> None:
    problem = HostOriginCheck(["localhost"], ["*"]).problem("evil.com", "http://localhost")
    assert problem is not None
    assert problem[0] == 421
