"""The config loader: file → substitution → env overrides → validated model, and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolway.config import ConfigError, GatewayConfig, HttpServerConfig, StdioServerConfig, load_config
from toolway.config.loader import load_config_text

EXAMPLE = """\
listen: {host: 127.0.0.1, port: 8080}
admin: {host: 127.0.0.1, port: 8081}
store: sqlite:///./toolway.db
servers:
  - name: files
    transport: stdio
    command: [python, -m, some.server]
    env: {KEY: value}
  - name: web
    transport: streamable-http
    url: http://127.0.0.1:9100/mcp
    headers: {X-Api-Key: "${WEB_KEY}"}
"""


def write(tmp_path: Path, text: str, name: str = "toolway.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=environ or {})
    return str(info.value)


def test_empty_file_gives_all_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, ""), environ={}) == GatewayConfig()


def test_example_config_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, EXAMPLE), environ={"WEB_KEY": "s3cret"})

    files, web = config.servers
    assert isinstance(files, StdioServerConfig)
    assert files.command == ["python", "-m", "some.server"]
    assert files.env == {"KEY": "value"}
    assert isinstance(web, HttpServerConfig)
    assert web.headers == {"X-Api-Key": "s3cret"}
    assert (config.listen.port, config.admin.port) == (8080, 8081)


def test_load_config_text_names_its_source() -> None:
    with pytest.raises(ConfigError, match=r"^inline: lisen: unknown field"):
        load_config_text("lisen: {}", source="inline", environ={})


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml", environ={})


def test_unreadable_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"{tmp_path}: cannot read the config file"):
        load_config(tmp_path, environ={})


def test_yaml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    message = error_of(tmp_path, "listen:\n  port: [8080\nadmin: {}\n")
    assert message.startswith(f"{tmp_path / 'toolway.yaml'}:3:")
    assert "invalid YAML" in message


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert "top level must be a mapping" in error_of(tmp_path, "- a\n- b\n")


def test_unknown_key_names_its_path_and_the_allowed_keys(tmp_path: Path) -> None:
    message = error_of(tmp_path, "listen: {host: 127.0.0.1, prot: 1}\n")
    assert message == (f"{tmp_path / 'toolway.yaml'}: listen.prot: unknown field; expected one of: host, port")


def test_unknown_key_inside_a_server_drops_the_union_tag(tmp_path: Path) -> None:
    message = error_of(tmp_path, "servers: [{name: a, transport: stdio, command: [x], comand: [y]}]\n")
    assert ": servers.0.comand: unknown field; expected one of: " in message


def test_missing_command(tmp_path: Path) -> None:
    message = error_of(tmp_path, "servers: [{name: a, transport: stdio}]\n")
    assert message == f"{tmp_path / 'toolway.yaml'}: servers.0.command: Field required"


def test_out_of_range_value_shows_what_was_given(tmp_path: Path) -> None:
    message = error_of(tmp_path, "listen: {port: 70000}\n")
    assert message.endswith(": listen.port: Input should be less than or equal to 65535 (got 70000)")


def test_bad_transport_lists_the_allowed_values(tmp_path: Path) -> None:
    message = error_of(tmp_path, "servers: [{name: a, transport: grpc, url: 'http://x'}]\n")
    assert message.endswith(
        ": servers.0.transport: must be one of 'stdio', 'streamable-http', 'sse', 'websocket', 'auto' (got 'grpc')"
    )


def test_missing_transport_lists_the_allowed_values(tmp_path: Path) -> None:
    message = error_of(tmp_path, "servers: [{name: a, command: [x]}]\n")
    assert message.endswith(
        ": servers.0.transport: Field required; expected one of 'stdio', 'streamable-http', 'sse', 'websocket', 'auto'"
    )


def test_duplicate_server_names(tmp_path: Path) -> None:
    server = "{name: a, transport: stdio, command: [x]}"
    assert "server name 'a' is used more than once" in error_of(tmp_path, f"servers: [{server}, {server}]\n")


def test_bad_name_pattern_and_several_errors_one_per_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, "servers: [{name: Files, transport: streamable-http, url: 'ftp://x'}]\n")
    lines = message.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(": servers.0.name: String should match pattern '^[a-z0-9_-]+$' (got 'Files')")
    assert lines[1].endswith(": servers.0.url: must be an http:// or https:// URL (got 'ftp://x')")


def test_double_underscore_in_name_is_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, "servers: [{name: a__b, transport: stdio, command: [x]}]\n")
    assert ": servers.0.name: must not contain '__'" in message


def test_substitution_with_and_without_default(tmp_path: Path) -> None:
    text = "store: 'sqlite:///${DIR}/${NAME:-toolway}.db'\nlisten: {host: '${HOST:-}'}\n"
    config = load_config(write(tmp_path, text), environ={"DIR": "/var/lib"})
    assert config.store == "sqlite:////var/lib/toolway.db"
    assert config.listen.host == ""


def test_substitution_reaches_list_items_but_not_keys(tmp_path: Path) -> None:
    text = "servers: [{name: a, transport: stdio, command: ['${PY}', x], env: {'${K}': v}}]\n"
    config = load_config(write(tmp_path, text), environ={"PY": "python3", "K": "nope"})
    server = config.servers[0]
    assert isinstance(server, StdioServerConfig)
    assert server.command == ["python3", "x"]
    assert server.env == {"${K}": "v"}


def test_missing_variable_names_variable_and_path(tmp_path: Path) -> None:
    message = error_of(tmp_path, EXAMPLE)
    assert message.startswith(f"{tmp_path / 'toolway.yaml'}: servers.1.headers.X-Api-Key: ")
    assert "environment variable WEB_KEY is not set" in message


def test_dollar_dollar_escapes_a_literal(tmp_path: Path) -> None:
    text = "cursor_secret: 'a$${HOME}b-sixteen-chars'\n"
    config = load_config(write(tmp_path, text), environ={"HOME": "/root"})
    assert config.cursor_secret == "a${HOME}b-sixteen-chars"


def test_malformed_reference_is_an_error(tmp_path: Path) -> None:
    assert "malformed '${' reference" in error_of(tmp_path, "cursor_secret: '${WEB-KEY}'\n")


def test_override_sets_an_int(tmp_path: Path) -> None:
    environ = {"TOOLWAY_LISTEN__PORT": "8090", "TOOLWAY_ADMIN__ENABLED": "false", "TOOLWAY_CONFIG": "x.yaml"}
    config = load_config(write(tmp_path, ""), environ=environ)
    assert config.listen.port == 8090
    assert config.admin.enabled is False


def test_override_keeps_header_case_and_string_value(tmp_path: Path) -> None:
    environ = {
        "WEB_KEY": "k",
        "TOOLWAY_SERVERS__1__HEADERS__X-Api-Key": "override",
        "TOOLWAY_SERVERS__1__HEADERS__X-Tenant": "42",
        "TOOLWAY_SERVERS__0__ENV__Debug": "true",
        "TOOLWAY_SERVERS__1__URL": "https://example.test/mcp",
    }
    config = load_config(write(tmp_path, EXAMPLE), environ=environ)
    files, web = config.servers
    assert isinstance(web, HttpServerConfig)
    assert web.headers == {"X-Api-Key": "override", "X-Tenant": "42"}
    assert web.url == "https://example.test/mcp"
    assert isinstance(files, StdioServerConfig)
    assert files.env == {"KEY": "value", "Debug": "true"}


def test_override_parses_flow_lists_and_keeps_dates_as_text(tmp_path: Path) -> None:
    environ = {
        "WEB_KEY": "k",
        "TOOLWAY_SERVERS__0__COMMAND": "[uvx, files-server]",
        "TOOLWAY_SERVERS__0__ERA": "2026-07-28",
    }
    server = load_config(write(tmp_path, EXAMPLE), environ=environ).servers[0]
    assert isinstance(server, StdioServerConfig)
    assert server.command == ["uvx", "files-server"]
    assert server.era == "2026-07-28"


def test_override_creates_missing_mappings(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""), environ={"TOOLWAY_LOGGING__LEVEL": "debug"})
    assert config.logging.level == "debug"


def test_override_with_bad_index_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^TOOLWAY_SERVERS__5__URL: servers\.5 does not exist"):
        load_config(write(tmp_path, EXAMPLE), environ={"WEB_KEY": "k", "TOOLWAY_SERVERS__5__URL": "x"})


def test_override_into_absent_list_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^TOOLWAY_SERVERS__0__URL: servers is not set"):
        load_config(write(tmp_path, ""), environ={"TOOLWAY_SERVERS__0__URL": "x"})


def test_invalid_override_value_names_the_variable(tmp_path: Path) -> None:
    message = error_of(tmp_path, "", {"TOOLWAY_LISTEN__PORT": "70000"})
    assert message.endswith(
        "listen.port: Input should be less than or equal to 65535 (got 70000) (set by TOOLWAY_LISTEN__PORT)"
    )


def test_era_written_as_a_bare_date_in_the_file_stays_a_string(tmp_path: Path) -> None:
    text = "servers: [{name: a, transport: stdio, command: [x], era: 2026-07-28}]\n"
    assert load_config(write(tmp_path, text), environ={}).servers[0].era == "2026-07-28"
