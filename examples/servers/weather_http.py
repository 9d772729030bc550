"""An example MCP server over Streamable HTTP: weather for a handful of cities.

The data is made up and deterministic (no network access): the same city and day always
give the same weather. Run it with::

    python examples/servers/weather_http.py [--port 9100]

It serves ``http://127.0.0.1:PORT/mcp`` (``--port 0`` picks a free port) and says where on
stderr once it accepts connections. Tools: ``forecast(city, days=3)`` and ``current(city)``;
resource: ``weather://cities``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import socket
import sys
import zlib

import anyio
import uvicorn
from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

HOST = "127.0.0.1"
DEFAULT_PORT = 9100
MAX_DAYS = 7

# City -> (typical temperature in °C, how much it swings day to day).
CITIES: dict[str, tuple[int, int]] = {
    "Amsterdam": (12, 5),
    "Buenos Aires": (19, 6),
    "Cairo": (27, 4),
    "Lisbon": (18, 4),
    "Nairobi": (21, 3),
    "Oslo": (6, 6),
    "Reykjavik": (4, 5),
    "Singapore": (29, 1),
    "Tokyo": (16, 6),
    "Vancouver": (11, 5),
}
CONDITIONS = ("sunny", "partly cloudy", "cloudy", "light rain", "showers", "windy", "fog")


class Weather(BaseModel):
    """The weather in one city on one day."""

    city: str
    day: int
    """0 is today, 1 tomorrow, and so on."""
    condition: str
    high_c: int
    low_c: int
    chance_of_rain: int
    """Percent."""


def _known(city: str) -> str:
    """The canonical spelling of ``city``.

    Raises:
        ToolError: Not a city this server knows.
    """
    for known in CITIES:
        if known.casefold() == city.strip().casefold():
            return known
    raise ToolError(f"Unknown city {city!r}. Known cities: {', '.join(CITIES)}")


def _weather(city: str, day: int) -> Weather:
    # crc32, not hash(): str hashes change from one process to the next.
    seed = zlib.crc32(f"{city}/{day}".encode())
    typical, swing = CITIES[city]
    high = typical + seed % (2 * swing + 1) - swing
    condition = CONDITIONS[(seed >> 8) % len(CONDITIONS)]
    rainy = condition in ("light rain", "showers")
    return Weather(
        city=city,
        day=day,
        condition=condition,
        high_c=high,
        low_c=high - 4 - (seed >> 16) % 5,
        chance_of_rain=60 + (seed >> 4) % 40 if rainy else (seed >> 4) % 30,
    )


server = MCPServer(
    "weather",
    instructions="Made-up weather for a few cities. Read weather://cities for the list.",
    log_level="WARNING",
)


@server.tool(description="Forecast for the next few days (1 to 7, today first).")
def forecast(city: str, days: int = 3) -> list[Weather]:
    if not 1 <= days <= MAX_DAYS:
        raise ToolError(f"days must be between 1 and {MAX_DAYS}, not {days}")
    known = _known(city)
    return [_weather(known, day) for day in range(days)]


@server.tool(description="The weather in a city right now.")
def current(city: str) -> Weather:
    return _weather(_known(city), 0)


@server.resource("weather://cities", name="cities", mime_type="text/plain")
def cities() -> str:
    return "\n".join(CITIES)


class _Server(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            # Read back from the socket, so --port 0 reports the port actually bound.
            port = self.servers[0].sockets[0].getsockname()[1]
            print(f"weather server listening on http://{HOST}:{port}/mcp", file=sys.stderr, flush=True)


async def serve(port: int) -> None:
    """Serve until SIGINT or SIGTERM."""
    config = uvicorn.Config(server.streamable_http_app(), host=HOST, port=port, log_level="warning")
    await _Server(config).serve()


def main() -> None:
    parser = argparse.ArgumentParser(description="Example MCP server: made-up weather over Streamable HTTP.")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}; 0 picks one")
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.WARNING)
    # uvicorn shuts down gracefully, then re-raises the Ctrl-C; no traceback for that.
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(serve, args.port)


if __name__ == "__main__":
    main()
