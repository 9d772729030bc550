"""The admin API behind a bearer token (`admin.token_env`): it registers servers, flips kill
switches and approves tools, so off loopback it must never be open. Real gateway, real HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from typer.testing import CliRunner

from toolway.app import StartupError
from toolway.cli.main import app as cli
from toolway.lifetime import running
from toolway.testing import gateway_config, running_gateway

TOKEN = "s3cret-admin-token-0123456789"
ADMIN = {"host": "127.0.0.1", "port": 0, "token_env": "TW_TEST_ADMIN_TOKEN"}


async def test_admin_routes_need_the_token_and_probes_do_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TW_TEST_ADMIN_TOKEN", TOKEN)
    async with running_gateway(servers=[], store_dir=tmp_path, admin=ADMIN) as gw:
        assert gw.admin_url is not None
        async with aiohttp.ClientSession() as http:
            for path in ("/healthz", "/readyz", "/metrics"):  # probes and scrapers stay open
                async with http.get(gw.admin_url + path) as response:
                    assert response.status == 200, path
            for credential in (None, "Bearer wrong-token-0123456789", f"Basic {TOKEN}", TOKEN):
                headers = {"Authorization": credential} if credential else {}
                for method, path in (("GET", "/admin/traffic"), ("POST", "/admin/kill"), ("GET", "/v0.1/servers")):
                    async with http.request(method, gw.admin_url + path, headers=headers, json={}) as response:
                        assert response.status == 401, (method, path, credential)
                        assert response.headers["WWW-Authenticate"].startswith("Bearer")
                        assert "admin.token_env" in (await response.json())["error"]
            good = {"Authorization": f"Bearer {TOKEN}"}
            async with http.get(gw.admin_url + "/admin/traffic", headers=good) as response:
                assert response.status == 200

        # The CLI sends TOOLWAY_ADMIN_TOKEN; without it, it is refused with the gateway's reason.
        args = ["traffic", "--admin-url", gw.admin_url]
        refused = await asyncio.to_thread(CliRunner().invoke, cli, args, env={"TOOLWAY_ADMIN_TOKEN": ""})
        assert refused.exit_code != 0 and "admin.token_env" in refused.output
        allowed = await asyncio.to_thread(CliRunner().invoke, cli, args, env={"TOOLWAY_ADMIN_TOKEN": TOKEN})
        assert allowed.exit_code == 0, allowed.output


async def test_an_admin_port_off_loopback_needs_a_token(tmp_path: Path) -> None:
    config = gateway_config([], tmp_path, admin={"host": "0.0.0.0", "port": 0})
    with pytest.raises(StartupError, match=r"refusing to serve the admin API on 0\.0\.0\.0 without a token"):
        async with running(config):
            pass


@pytest.mark.parametrize(("value", "problem"), [(None, "is not set"), ("short", "holds fewer than 16 characters")])
async def test_a_token_variable_that_is_unset_or_short_stops_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str | None, problem: str
) -> None:
    if value is None:
        monkeypatch.delenv("TW_TEST_ADMIN_TOKEN", raising=False)
    else:
        monkeypatch.setenv("TW_TEST_ADMIN_TOKEN", value)
    config = gateway_config([], tmp_path, admin=ADMIN)
    with pytest.raises(StartupError, match=f"TW_TEST_ADMIN_TOKEN {problem}"):
        async with running(config):
            pass
