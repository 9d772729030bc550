"""One server's catalog: fetch_catalog, the x-mcp-header map and Mcp-Param-* headers."""

from __future__ import annotations

from typing import Any

import pytest

from toolway.registry.catalog import (
    _MAX_PAGES,
    EMPTY,
    LISTS,
    ServerCatalog,
    fetch_catalog,
    param_header_map,
    param_headers,
)

ALL_CAPS = {"tools": {}, "prompts": {}, "resources": {}}


class FakeServer:
    """A fake `fetch`: answers list methods from pages keyed by (method, cursor)."""

    def __init__(self, pages: dict[tuple[str, str | None], dict[str, Any]] | None = None) -> None:
        self.pages = pages or {}
        self.calls: list[tuple[str, dict[str, Any] | None]] = []

    async def __call__(self, method: str, params: dict[str, Any] | None) -> dict[str, Any]:
        self.calls.append((method, params))
        cursor = params.get("cursor") if params else None
        return self.pages.get((method, cursor), {})


# --- fetch_catalog --------------------------------------------------------------------------------


async def test_nothing_declared_fetches_nothing() -> None:
    server = FakeServer()
    cat = await fetch_catalog({}, server)
    assert server.calls == []
    assert cat.items == {}
    assert cat.ttl_ms is None
    assert cat.private is False
    assert cat.param_headers == {}


@pytest.mark.parametrize(
    ("capabilities", "methods"),
    [
        ({"tools": {}}, ["tools/list"]),
        ({"prompts": {"listChanged": True}}, ["prompts/list"]),
        ({"resources": {}}, ["resources/list", "resources/templates/list"]),
        (
            {"tools": {}, "resources": {"subscribe": True}},
            ["tools/list", "resources/list", "resources/templates/list"],
        ),
        (ALL_CAPS, list(LISTS)),
        ({"logging": {}, "completions": {}, "experimental": {}}, []),
    ],
)
async def test_only_declared_capabilities_are_fetched(capabilities: dict[str, Any], methods: list[str]) -> None:
    server = FakeServer()
    cat = await fetch_catalog(capabilities, server)
    assert [m for m, _ in server.calls] == methods
    assert set(cat.items) == set(methods)
    for method in methods:
        assert cat.get(method) == ()


async def test_first_page_has_no_params() -> None:
    server = FakeServer()
    await fetch_catalog({"tools": {}}, server)
    assert server.calls == [("tools/list", None)]


async def test_pages_are_followed_via_next_cursor() -> None:
    server = FakeServer(
        {
            ("tools/list", None): {"tools": [{"name": "a"}], "nextCursor": "p2"},
            ("tools/list", "p2"): {"tools": [{"name": "b"}, {"name": "c"}], "nextCursor": "p3"},
            ("tools/list", "p3"): {"tools": [{"name": "d"}]},
            ("prompts/list", None): {"prompts": [{"name": "p"}], "nextCursor": "q"},
            ("prompts/list", "q"): {"prompts": [{"name": "q"}]},
        }
    )
    cat = await fetch_catalog({"tools": {}, "prompts": {}}, server)
    assert [t["name"] for t in cat.get("tools/list")] == ["a", "b", "c", "d"]
    assert [p["name"] for p in cat.get("prompts/list")] == ["p", "q"]
    assert server.calls == [
        ("tools/list", None),
        ("tools/list", {"cursor": "p2"}),
        ("tools/list", {"cursor": "p3"}),
        ("prompts/list", None),
        ("prompts/list", {"cursor": "q"}),
    ]


@pytest.mark.parametrize("next_cursor", ["", None, 5, ["x"], {"c": 1}, True])
async def test_paging_stops_at_an_empty_or_non_string_cursor(next_cursor: Any) -> None:
    server = FakeServer({("tools/list", None): {"tools": [{"name": "a"}], "nextCursor": next_cursor}})
    cat = await fetch_catalog({"tools": {}}, server)
    assert len(server.calls) == 1
    assert cat.get("tools/list") == ({"name": "a"},)


async def test_a_server_that_paginates_forever_is_cut_off() -> None:
    calls = 0

    async def endless(method: str, params: dict[str, Any] | None) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return {"tools": [{"name": f"t{calls}"}], "nextCursor": f"c{calls}"}

    cat = await fetch_catalog({"tools": {}}, endless)
    assert calls == _MAX_PAGES
    assert len(cat.get("tools/list")) == _MAX_PAGES


async def test_resources_and_templates_use_their_own_keys() -> None:
    server = FakeServer(
        {
            ("resources/list", None): {"resources": [{"uri": "file:///a"}], "resourceTemplates": [{"x": 1}]},
            ("resources/templates/list", None): {
                "resourceTemplates": [{"uriTemplate": "file:///{p}"}],
                "resources": [{"uri": "wrong"}],
            },
        }
    )
    cat = await fetch_catalog({"resources": {}}, server)
    assert cat.get("resources/list") == ({"uri": "file:///a"},)
    assert cat.get("resources/templates/list") == ({"uriTemplate": "file:///{p}"},)


@pytest.mark.parametrize("page", [None, "tools", 5, {"name": "a"}, True])
async def test_non_list_page_contributes_nothing(page: Any) -> None:
    server = FakeServer({("tools/list", None): {"tools": page}})
    cat = await fetch_catalog({"tools": {}}, server)
    assert cat.get("tools/list") == ()


async def test_non_object_items_are_dropped() -> None:
    server = FakeServer({("tools/list", None): {"tools": [{"name": "a"}, "b", 3, None, ["c"], {"name": "d"}]}})
    cat = await fetch_catalog({"tools": {}}, server)
    assert cat.get("tools/list") == ({"name": "a"}, {"name": "d"})


async def test_items_are_kept_as_sent() -> None:
    tool = {"name": "a", "description": "d", "inputSchema": {"type": "object"}, "_meta": {"x": 1}, "odd": [1]}
    cat = await fetch_catalog({"tools": {}}, FakeServer({("tools/list", None): {"tools": [tool]}}))
    assert cat.get("tools/list") == (tool,)
    assert cat.tool("a") == tool
    assert cat.tool("missing") is None


@pytest.mark.parametrize(
    ("ttls", "expected"),
    [
        ([], None),
        ([60_000], 60_000),
        ([60_000, 1_000, 30_000], 1_000),
        ([0, 5], 0),
        (["60000", 5.5, None], None),  # not integers: ignored
        (["60000", 500], 500),
    ],
)
async def test_ttl_is_the_smallest_integer_ttl_over_all_pages_and_lists(ttls: list[Any], expected: Any) -> None:
    pages: dict[tuple[str, str | None], dict[str, Any]] = {}
    methods = list(LISTS)
    for i, ttl in enumerate(ttls):
        method = methods[i % len(methods)]
        cursor = None if i < len(methods) else f"c{i}"
        pages[(method, cursor)] = {"ttlMs": ttl}
    # chain any extra pages behind the first page of their method
    for i in range(len(methods), len(ttls)):
        pages[(methods[i % len(methods)], None)]["nextCursor"] = f"c{i}"
    cat = await fetch_catalog(ALL_CAPS, FakeServer(pages))
    assert cat.ttl_ms == expected


async def test_ttl_from_later_pages_counts() -> None:
    server = FakeServer(
        {
            ("tools/list", None): {"ttlMs": 10_000, "nextCursor": "n"},
            ("tools/list", "n"): {"ttlMs": 20},
        }
    )
    assert (await fetch_catalog({"tools": {}}, server)).ttl_ms == 20


@pytest.mark.parametrize("ttl", [True, False])
async def test_boolean_ttl_is_ignored(ttl: bool) -> None:
    cat = await fetch_catalog({"tools": {}}, FakeServer({("tools/list", None): {"ttlMs": ttl}}))
    assert cat.ttl_ms is None


async def test_negative_ttl_is_not_kept() -> None:
    cat = await fetch_catalog({"tools": {}}, FakeServer({("tools/list", None): {"ttlMs": -5}}))
    assert cat.ttl_ms is None or cat.ttl_ms >= 0


@pytest.mark.parametrize(
    ("scopes", "private"),
    [
        ([], False),
        (["public"], False),
        (["public", "public"], False),
        (["private"], True),
        (["public", "private"], True),
        (["PRIVATE", None, 1], False),  # only the exact string counts
    ],
)
async def test_private_if_any_list_said_private(scopes: list[Any], private: bool) -> None:
    pages = {(method, None): {"cacheScope": scope} for method, scope in zip(LISTS, scopes, strict=False)}
    cat = await fetch_catalog(ALL_CAPS, FakeServer(pages))
    assert cat.private is private


async def test_fetch_errors_propagate() -> None:
    class Boom(Exception):
        pass

    async def failing(method: str, params: dict[str, Any] | None) -> dict[str, Any]:
        raise Boom(method)

    with pytest.raises(Boom, match="tools/list"):
        await fetch_catalog({"tools": {}}, failing)


async def test_param_headers_are_collected_per_tool() -> None:
    tools = [
        {
            "name": "search",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "region": {"type": "string", "x-mcp-header": "Region"},
                    "q": {"type": "string"},
                },
            },
        },
        {"name": "plain", "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}}},
        {"name": "no_schema"},
    ]
    cat = await fetch_catalog({"tools": {}}, FakeServer({("tools/list", None): {"tools": tools}}))
    assert cat.param_headers == {"search": {("region",): "Region"}}


async def test_a_nameless_tool_does_not_break_the_catalog() -> None:
    tools = [
        {"description": "no name", "inputSchema": {"type": "object"}},
        {"name": "ok", "inputSchema": {"properties": {"r": {"type": "string", "x-mcp-header": "R"}}}},
    ]
    cat = await fetch_catalog({"tools": {}}, FakeServer({("tools/list", None): {"tools": tools}}))
    assert cat.param_headers.get("ok") == {("r",): "R"}


@pytest.mark.parametrize("name", [["a"], {"n": 1}])
async def test_a_tool_with_an_unhashable_name_does_not_break_the_catalog(name: Any) -> None:
    tools = [{"name": name}, {"name": "ok"}]
    cat = await fetch_catalog({"tools": {}}, FakeServer({("tools/list", None): {"tools": tools}}))
    assert cat.tool("ok") == {"name": "ok"}


def test_empty_catalog() -> None:
    assert EMPTY.items == {}
    assert EMPTY.get("tools/list") == ()
    assert EMPTY.tool("x") is None
    assert EMPTY.ttl_ms is None
    assert EMPTY.private is False


def test_catalog_is_frozen() -> None:
    cat = ServerCatalog(items={})
    with pytest.raises(AttributeError):
        cat.ttl_ms = 5  # type: ignore[misc]


# --- param_header_map -----------------------------------------------------------------------------


def _prop(token: Any = None, type_: Any = "string", **extra: Any) -> dict[str, Any]:
    node: dict[str, Any] = {"type": type_, **extra}
    if token is not None:
        node["x-mcp-header"] = token
    return node


@pytest.mark.parametrize("schema", [None, {}, "schema", 5, [], {"type": "object"}, {"properties": None}])
def test_header_map_of_degenerate_schemas_is_empty(schema: Any) -> None:
    assert param_header_map(schema) == {}


@pytest.mark.parametrize("type_", ["string", "integer", "boolean"])
def test_header_map_top_level_property(type_: str) -> None:
    schema = {"type": "object", "properties": {"x": _prop("X-Token", type_)}}
    assert param_header_map(schema) == {("x",): "X-Token"}


@pytest.mark.parametrize("type_", ["object", "array", "null", "number", None, ["string", "null"], 5])
def test_header_map_ignores_other_types(type_: Any) -> None:
    schema = {"type": "object", "properties": {"x": _prop("X", type_)}}
    assert param_header_map(schema) == {}


@pytest.mark.parametrize("token", [5, None, True, ["X"], {"a": 1}])
def test_header_map_ignores_non_string_tokens(token: Any) -> None:
    node = {"type": "string", "x-mcp-header": token}
    schema = {"type": "object", "properties": {"x": node}}
    assert param_header_map(schema) == {}


def test_header_map_ignores_the_root_itself() -> None:
    assert param_header_map({"type": "string", "x-mcp-header": "Root"}) == {}


def test_header_map_follows_nested_properties_chains() -> None:
    schema = {
        "type": "object",
        "properties": {
            "region": _prop("Region"),
            "target": {
                "type": "object",
                "properties": {
                    "account": _prop("Account", "integer"),
                    "deep": {"type": "object", "properties": {"flag": _prop("Flag", "boolean")}},
                    "untagged": _prop(),
                },
            },
            "plain": _prop(),
        },
    }
    assert param_header_map(schema) == {
        ("region",): "Region",
        ("target", "account"): "Account",
        ("target", "deep", "flag"): "Flag",
    }


def test_header_map_does_not_descend_into_other_keywords() -> None:
    schema = {
        "type": "object",
        "properties": {
            "list": {"type": "array", "items": {"type": "object", "properties": {"x": _prop("InArray")}}},
            "choice": {"anyOf": [{"type": "object", "properties": {"y": _prop("InAnyOf")}}]},
            "ref": {"$ref": "#/$defs/z"},
        },
        "$defs": {"z": {"type": "object", "properties": {"z": _prop("InDefs")}}},
        "additionalProperties": {"type": "object", "properties": {"w": _prop("InAdditional")}},
    }
    assert param_header_map(schema) == {}


def test_header_map_skips_non_dict_property_nodes() -> None:
    schema = {"properties": {"a": "string", "b": None, "c": [_prop("C")], "d": _prop("D")}}
    assert param_header_map(schema) == {("d",): "D"}


def test_header_map_on_an_object_node_with_token_still_descends() -> None:
    schema = {"properties": {"o": {"type": "object", "x-mcp-header": "O", "properties": {"i": _prop("I")}}}}
    assert param_header_map(schema) == {("o", "i"): "I"}


def test_header_map_of_a_deep_schema_does_not_recurse() -> None:
    schema: dict[str, Any] = _prop("Deep")
    for i in range(5000):
        schema = {"type": "object", "properties": {f"p{i}": schema}}
    found = param_header_map(schema)
    assert list(found.values()) == ["Deep"]
    assert len(next(iter(found))) == 5000


# --- param_headers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "header"),
    [
        ("eu-west", "eu-west"),
        (42, "42"),
        (0, "0"),
        (-7, "-7"),
        (True, "true"),
        (False, "false"),
        (1.5, "1.5"),
        ("", ""),
        ("a b", "a b"),
    ],
)
def test_param_headers_render_values(value: Any, header: str) -> None:
    assert param_headers({("x",): "X"}, {"x": value}) == {"Mcp-Param-X": header}


@pytest.mark.parametrize("value", ["日本", "café", " padded", "line\nbreak", "=?base64?QQ==?="])
def test_param_headers_wrap_unsafe_values_in_the_base64_sentinel(value: str) -> None:
    from toolway.protocol.modern import decode_header_value

    out = param_headers({("x",): "X"}, {"x": value})
    assert out["Mcp-Param-X"].startswith("=?base64?")
    assert decode_header_value(out["Mcp-Param-X"]) == value


@pytest.mark.parametrize("arguments", [None, {}, {"x": None}, {"x": [1]}, {"x": {"a": 1}}, "x", ["x"], 5])
def test_param_headers_omit_missing_or_non_scalar_values(arguments: Any) -> None:
    assert param_headers({("x",): "X"}, arguments) == {}


def test_param_headers_follow_nested_paths() -> None:
    header_map = {("a",): "A", ("t", "acct"): "Acct", ("t", "deep", "f"): "F", ("t", "gone"): "Gone"}
    arguments = {"a": "1", "t": {"acct": 99, "deep": {"f": False}}}
    assert param_headers(header_map, arguments) == {
        "Mcp-Param-A": "1",
        "Mcp-Param-Acct": "99",
        "Mcp-Param-F": "false",
    }


@pytest.mark.parametrize("middle", [None, "string", 5, ["acct"], True])
def test_param_headers_nested_path_through_a_non_object(middle: Any) -> None:
    assert param_headers({("t", "acct"): "Acct"}, {"t": middle}) == {}


def test_param_headers_with_an_empty_map() -> None:
    assert param_headers({}, {"x": 1}) == {}
