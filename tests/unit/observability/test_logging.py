"""Log output: one JSON object per line on stderr."""

from __future__ import annotations

import orjson
import pytest
import structlog

from toolway.observability.logging import configure


def test_json_log_format_is_one_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure("info", "json")
    try:
        structlog.get_logger("toolway.test").info("call", method="ping")
        (line,) = capsys.readouterr().err.strip().splitlines()
        record = orjson.loads(line)
        assert record["event"] == "call" and record["level"] == "info" and "timestamp" in record
    finally:
        structlog.reset_defaults()
