"""A stdio MCP server that only speaks protocol version 2024-11-05, which Toolway does not bridge.

A real peer for the compatibility test: newline-delimited JSON-RPC on stdin/stdout.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    for line in sys.stdin:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if "id" not in message or "method" not in message:
            continue  # notifications and answers
        if message["method"] == "initialize":
            reply = {
                "result": {
                    "protocolVersion": "2024-11-05",
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "old-timer", "version": "0.9"},
                }
            }
        else:
            reply = {"error": {"code": -32601, "message": f"Method not found: {message['method']}"}}
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": message["id"], **reply}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
