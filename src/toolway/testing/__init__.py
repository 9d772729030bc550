"""Toolway's public test kit: fixture MCP servers, a gateway on port 0, and helpers.

The fixture upstreams need the official `mcp` SDK (installed with `toolway[test]`).
"""

from toolway.testing.gateway import RunningGateway, gateway_config, running_gateway, wait_for_state
from toolway.testing.processes import (
    RunningHttpUpstream,
    http_upstream,
    start_http_upstream,
    stdio_upstream_command,
)

__all__ = [
    "RunningGateway",
    "RunningHttpUpstream",
    "gateway_config",
    "http_upstream",
    "running_gateway",
    "start_http_upstream",
    "stdio_upstream_command",
    "wait_for_state",
]
