"""The aggregated catalog view and RFC 6570 template matching."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from toolway.registry.catalog import LISTS, ServerCatalog
from toolway.router.view import View, build_view, template_pattern
from toolway.upstream.client import Negotiated

# --- template_pattern -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "uri", "matches"),
    [
        ("file:///{path}", "file:///a.txt", True),
        ("file:///{path}", "file:///dir/a.txt", False),  # {x} is one segment
        ("file:///{path}", "file:///", True),  # an empty expansion
        ("file:///{+path}", "file:///dir/sub/a.txt", True),  # {+x} crosses slashes
        ("file:///{+path}", "file:///", True),
        ("db://{table}/{id}", "db://users/42", True),
        ("db://{table}/{id}", "db://users/42/extra", False),
        ("db://{table}/{id}", "db://users", False),
        ("weather://{city}", "weather://paris?units=c", False),  # ? ends a simple expansion
        ("weather://{city}", "weather://paris#frag", False),
        ("weather://{city}{?units}", "weather://paris?units=c", True),
        ("doc://x{#frag}", "doc://x#section", True),
        ("doc://x{/seg}", "doc://x/a", True),
        ("doc://x{.ext}", "doc://x.json", True),
        ("doc://x{;p}", "doc://x;p=1", True),
        ("doc://x{&q}", "doc://x&q=1", True),
        ("a.b://{x}", "a.b://y", True),
        ("a.b://{x}", "aXb://y", False),  # '.' is literal, not "any character"
        ("a+b://{x}", "a+b://y", True),
        ("a+b://{x}", "aab://y", False),
        ("a(b)[c]*?^$|\\://{x}", "a(b)[c]*?^$|\\://y", True),
        ("res://{x}", "RES://y", False),  # literal parts are case-sensitive
        ("res://{x}", "res://y\nz", True),  # a newline is not a slash
        ("res://fixed", "res://fixed", True),
        ("res://fixed", "res://fixed2", False),
        ("res://fixed", "xres://fixed", False),  # full match, not search
        ("res://{a}-{b}", "res://1-2", True),
        ("res://{unterminated", "res://{unterminated", True),  # no expression: all literal
        ("res://{unterminated", "res://x", False),
    ],
)
def test_template_pattern(template: str, uri: str, matches: bool) -> None:
    assert bool(template_pattern(template).fullmatch(uri)) is matches


# --- build_view -----------------------------------------------------------------------------------


@dataclass
class Conn:
    """Stand-in for UpstreamConnection: the three attributes build_view reads."""

    name: str
    catalog: ServerCatalog
    negotiated: Negotiated | None


def modern(version: str = "2026-07-28") -> Negotiated:
    return Negotiated(era="modern", protocol_version=version)


def handshake(version: str = "2025-11-25") -> Negotiated:
    return Negotiated(era="handshake", protocol_version=version)


def catalog(
    *,
    tools: list[dict[str, Any]] | None = None,
    prompts: list[dict[str, Any]] | None = None,
    resources: list[dict[str, Any]] | None = None,
    templates: list[dict[str, Any]] | None = None,
    ttl_ms: int | None = 60_000,
    private: bool = False,
) -> ServerCatalog:
    items: dict[str, tuple[dict[str, Any], ...]] = {}
    for method, value in (
        ("tools/list", tools),
        ("prompts/list", prompts),
        ("resources/list", resources),
        ("resources/templates/list", templates),
    ):
        if value is not None:
            items[method] = tuple(value)
    return ServerCatalog(items=items, ttl_ms=ttl_ms, private=private)


def conn(name: str, cat: ServerCatalog | None = None, negotiated: Negotiated | None = None) -> Conn:
    return Conn(name, cat if cat is not None else catalog(), negotiated if negotiated is not None else modern())


def view(*conns: Conn, generation: int = 1) -> View:
    return build_view(generation, list(conns))  # type: ignore[arg-type]


def test_empty_view() -> None:
    v = view()
    assert v.generation == 1
    assert v.lists == {method: [] for method in LISTS}
    assert v.ttl_ms == 0
    assert v.private is True
    assert v.resource_owner == {}
    assert v.templates == ()
    assert v.owner_of("file:///x") is None
    assert v.template_owner("file:///{x}") is None


def test_generation_is_kept() -> None:
    assert view(conn("a"), generation=42).generation == 42


def test_tools_and_prompts_are_namespaced_in_config_order() -> None:
    a = conn("alpha", catalog(tools=[{"name": "t1", "description": "d"}, {"name": "t2"}], prompts=[{"name": "p"}]))
    b = conn("beta_x", catalog(tools=[{"name": "t1", "inputSchema": {"type": "object"}}]))
    v = view(a, b)
    assert v.lists["tools/list"] == [
        {"name": "alpha__t1", "description": "d"},
        {"name": "alpha__t2"},
        {"name": "beta_x__t1", "inputSchema": {"type": "object"}},
    ]
    assert v.lists["prompts/list"] == [{"name": "alpha__p"}]


def test_namespacing_does_not_mutate_the_snapshot() -> None:
    tool = {"name": "t"}
    cat = catalog(tools=[tool])
    view(conn("s", cat))
    assert tool == {"name": "t"}
    assert cat.get("tools/list") == ({"name": "t"},)


@pytest.mark.parametrize("name", [None, 5, ["t"], {"n": 1}])
def test_items_without_a_string_name_are_kept_unchanged(name: Any) -> None:
    item = {"name": name, "x": 1}
    v = view(conn("s", catalog(tools=[item], prompts=[item])))
    assert v.lists["tools/list"] == [item]
    assert v.lists["prompts/list"] == [item]


def test_item_without_a_name_key_is_kept_unchanged() -> None:
    v = view(conn("s", catalog(tools=[{"description": "nameless"}])))
    assert v.lists["tools/list"] == [{"description": "nameless"}]


def test_resources_and_templates_are_not_namespaced() -> None:
    resources = [{"uri": "file:///a", "name": "a"}]
    templates = [{"uriTemplate": "file:///{p}", "name": "files"}]
    v = view(conn("s", catalog(resources=resources, templates=templates)))
    assert v.lists["resources/list"] == resources
    assert v.lists["resources/templates/list"] == templates


def test_first_server_wins_a_uri_collision() -> None:
    a = conn("a", catalog(resources=[{"uri": "file:///shared"}, {"uri": "file:///only-a"}]))
    b = conn("b", catalog(resources=[{"uri": "file:///shared"}, {"uri": "file:///only-b"}]))
    v = view(a, b)
    assert v.owner_of("file:///shared") == "a"
    assert v.owner_of("file:///only-a") == "a"
    assert v.owner_of("file:///only-b") == "b"
    assert view(b, a).owner_of("file:///shared") == "b"
    # both listings stay in the merged list
    assert [r["uri"] for r in v.lists["resources/list"]] == [
        "file:///shared",
        "file:///only-a",
        "file:///shared",
        "file:///only-b",
    ]


def test_resource_with_non_string_uri_has_no_owner() -> None:
    v = view(conn("s", catalog(resources=[{"uri": 5}, {"name": "no uri"}])))
    assert v.resource_owner == {}


def test_owner_of_via_template() -> None:
    a = conn("a", catalog(templates=[{"uriTemplate": "db://{table}/{id}"}]))
    b = conn("b", catalog(templates=[{"uriTemplate": "file:///{+path}"}]))
    v = view(a, b)
    assert v.owner_of("db://users/1") == "a"
    assert v.owner_of("file:///deep/nested/x") == "b"
    assert v.owner_of("db://users/1/2") is None
    assert v.owner_of("http://example.com") is None


def test_listed_resource_beats_an_earlier_servers_template() -> None:
    a = conn("a", catalog(templates=[{"uriTemplate": "file:///{+path}"}]))
    b = conn("b", catalog(resources=[{"uri": "file:///exact"}]))
    v = view(a, b)
    assert v.owner_of("file:///exact") == "b"
    assert v.owner_of("file:///other") == "a"


def test_first_matching_template_wins() -> None:
    a = conn("a", catalog(templates=[{"uriTemplate": "x://{+p}"}]))
    b = conn("b", catalog(templates=[{"uriTemplate": "x://{p}"}]))
    assert view(a, b).owner_of("x://y") == "a"
    assert view(b, a).owner_of("x://y") == "b"


def test_template_owner_by_exact_template_text() -> None:
    a = conn("a", catalog(templates=[{"uriTemplate": "db://{t}"}, {"uriTemplate": 7}]))
    b = conn("b", catalog(templates=[{"uriTemplate": "db://{t}"}, {"uriTemplate": "file:///{p}"}]))
    v = view(a, b)
    assert v.template_owner("db://{t}") == "a"
    assert v.template_owner("file:///{p}") == "b"
    assert v.template_owner("db://{x}") is None
    assert len(v.templates) == 3  # the non-string template is skipped


@pytest.mark.parametrize(
    ("ttls", "expected"),
    [
        ([60_000], 60_000),
        ([60_000, 5_000, 30_000], 5_000),
        ([60_000, None], 0),  # a server that gave no ttlMs promised nothing
        ([None], 0),
        ([0, 100], 0),
    ],
)
def test_ttl_is_the_smallest(ttls: list[int | None], expected: int) -> None:
    conns = [conn(f"s{i}", catalog(ttl_ms=t)) for i, t in enumerate(ttls)]
    assert view(*conns).ttl_ms == expected


@pytest.mark.parametrize(
    ("servers", "private"),
    [
        ([(False, "modern")], False),
        ([(False, "modern"), (False, "modern")], False),
        ([(True, "modern")], True),
        ([(False, "modern"), (True, "modern")], True),
        ([(False, "handshake")], True),
        ([(False, "modern"), (False, "handshake")], True),
        ([(False, None)], True),  # never negotiated
    ],
)
def test_private_if_any_private_or_handshake_server(servers: list[tuple[bool, str | None]], private: bool) -> None:
    conns = []
    for i, (is_private, era) in enumerate(servers):
        negotiated = modern() if era == "modern" else handshake() if era == "handshake" else None
        c = Conn(f"s{i}", catalog(private=is_private), negotiated)
        conns.append(c)
    assert view(*conns).private is private


def test_server_with_empty_catalog_contributes_only_its_ttl_and_scope() -> None:
    empty = Conn("empty", ServerCatalog(items={}), modern())
    full = conn("full", catalog(tools=[{"name": "t"}], ttl_ms=10))
    v = view(full, empty)
    assert v.lists["tools/list"] == [{"name": "full__t"}]
    assert v.ttl_ms == 0  # the empty catalog has ttl None
    assert v.private is False


def test_view_lists_are_independent_of_later_views() -> None:
    c = conn("s", catalog(tools=[{"name": "t"}]))
    v1 = view(c, generation=1)
    v2 = view(c, generation=2)
    v2.lists["tools/list"].append({"name": "injected"})
    assert v1.lists["tools/list"] == [{"name": "s__t"}]


def test_a_killed_server_lists_nothing_but_still_owns_its_resources() -> None:
    killed = conn(
        "off",
        catalog(
            tools=[{"name": "t"}],
            prompts=[{"name": "p"}],
            resources=[{"uri": "file:///a"}],
            templates=[{"uriTemplate": "db://{id}"}],
        ),
    )
    live = conn("on", catalog(tools=[{"name": "t"}, {"name": "gone"}]))
    v = build_view(
        1,
        [killed, live],  # type: ignore[list-item]
        lambda server, tool: (server, tool) == ("on", "gone"),  # a killed tool
        hidden_servers={"off"},
    )
    assert v.lists["tools/list"] == [{"name": "on__t"}]
    assert v.lists["prompts/list"] == [] and v.lists["resources/list"] == []
    assert v.lists["resources/templates/list"] == []
    # A request for its resource still finds its owner, and so gets the kill switch's error.
    assert v.owner_of("file:///a") == "off" and v.owner_of("db://7") == "off"
