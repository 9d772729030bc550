"""Scope matching with wildcards, team boundaries, and list filtering per identity."""

from __future__ import annotations

import pytest

from toolway.auth.identity import Identity
from toolway.auth.scopes import Authorizer, granted, tool_permission
from toolway.config.auth import TeamConfig


@pytest.mark.parametrize(
    ("scopes", "permission", "expected"),
    [
        ({"tools:call:web/*"}, "tools:call:web/search", True),
        ({"tools:call:web/*"}, "tools:call:webx/search", False),  # `web/` is not a prefix of `webx/`
        ({"tools:call:web/*"}, "tools:call:files/read", False),
        ({"tools:call:web/search"}, "tools:call:web/search", True),
        ({"tools:call:web/search"}, "tools:call:web/searcher", False),
        ({"tools:call:*"}, "tools:call:files/read", True),
        ({"tools:*"}, "prompts:get:web/p", False),
        ({"*:*:web/*"}, "prompts:get:web/p", True),
        ({"*"}, "resources:read:files", True),
        ({"resources:read:files"}, "resources:read:files", True),
        ({"tools:call:w?b/[x]"}, "tools:call:web/x", False),  # only `*` is special
        (set(), "tools:call:web/search", False),
    ],
)
def test_granted(scopes: set[str], permission: str, expected: bool) -> None:
    assert granted(frozenset(scopes), permission) is expected


def _agent(scopes: set[str], team: str | None = None) -> Identity:
    return Identity(subject="a", scheme="jwt", team=team, scopes=frozenset(scopes))


def test_without_teams_every_server_is_in_bounds() -> None:
    authorizer = Authorizer({})
    assert authorizer.sees_server(_agent(set()), "web")
    assert authorizer.allows(_agent({"*"}), "web", tool_permission("web", "x"))


def test_team_boundaries_come_before_scopes() -> None:
    authorizer = Authorizer({"blue": TeamConfig(servers=["web"]), "ops": TeamConfig(servers=["*"])})
    blue = _agent({"*"}, team="blue")
    assert authorizer.allows(blue, "web", tool_permission("web", "x"))
    assert not authorizer.allows(blue, "files", tool_permission("files", "x"))
    assert authorizer.allows(_agent({"*"}, team="ops"), "files", tool_permission("files", "x"))
    # Teams are configured: an identity of no listed team sees no server.
    assert not authorizer.sees_server(_agent({"*"}, team="red"), "web")
    assert not authorizer.sees_server(_agent({"*"}), "web")


def test_filter_items_keeps_only_what_the_identity_may_use() -> None:
    authorizer = Authorizer({})
    items = [{"name": "web__a"}, {"name": "web__b"}, {"name": "files__a"}]
    origins = [("web", "a"), ("web", "b"), ("files", "a")]
    kept = authorizer.filter_items(_agent({"tools:call:web/*"}), "tools/list", items, origins)
    assert kept == items[:2]
    resources = authorizer.filter_items(
        _agent({"resources:read:files"}),
        "resources/list",
        [{"uri": "u1"}, {"uri": "u2"}],
        [("web", None), ("files", None)],
    )
    assert resources == [{"uri": "u2"}]
