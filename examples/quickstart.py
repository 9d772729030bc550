"""`make run`: start the example weather server, then the gateway in front of it and the notes server.

Environment: WEATHER_PORT (default 9100; 0 picks a free port), and any TOOLWAY_* override,
e.g. TOOLWAY_LISTEN__PORT=0. Ctrl-C stops the gateway, its stdio child and the weather server.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

from toolway.config import ConfigError, load_config
from toolway.lifetime import serve

ROOT = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)/mcp")


def start_weather(port: str) -> tuple[subprocess.Popen[str], int]:
    """Start the weather server and wait until it says where it listens (bounded by its own start)."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples/servers/weather_http.py"), "--port", port],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        sys.stderr.write(line)
        match = _LISTENING.search(line)
        if match:
            # Keep its later output flowing so the pipe never fills.
            threading.Thread(target=_pump, args=(proc.stderr,), daemon=True).start()
            return proc, int(match.group(1))
    raise SystemExit(f"the weather server exited with code {proc.wait()} before it was ready")


def _pump(stream: object) -> None:
    for line in stream:  # type: ignore[attr-defined]
        sys.stderr.write(line)


def main() -> int:
    os.chdir(ROOT)
    weather, port = start_weather(os.environ.get("WEATHER_PORT", "9100"))
    try:
        environ = {**os.environ, "WEATHER_PORT": str(port), "PYTHON": sys.executable}
        try:
            config = load_config(ROOT / "examples/quickstart.yaml", environ)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
        return serve(config)
    finally:
        weather.terminate()
        try:
            weather.wait(5)
        except subprocess.TimeoutExpired:
            weather.kill()


if __name__ == "__main__":
    sys.exit(main())
