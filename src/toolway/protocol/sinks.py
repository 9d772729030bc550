"""The way back to a handshake-era client while its call runs: its POST's event stream.

Notifications are queued on the stream. Server->client requests get an id of the
session's own (so two upstreams' ids never collide), wait for the client's answer
(a later POST, matched by that id), and are refused at once when the client did
not declare the capability they need.
"""

from __future__ import annotations

import asyncio
from typing import Any

from toolway.protocol.errors import ClientRpcError, MissingClientCapability, UpstreamTimeout
from toolway.sessions.downstream import DownstreamSession
from toolway.sessions.hub import Hub
from toolway.sessions.streams import EventStream

CLIENT_ANSWER_SECONDS = 600.0  # a person may be filling in an elicitation form


def require_capability(capabilities: dict[str, Any], method: str, params: dict[str, Any] | None) -> None:
    """Raise MissingClientCapability unless the client declared what `method` needs."""
    needed = {
        "sampling/createMessage": "sampling",
        "elicitation/create": "elicitation",
        "roots/list": "roots",
    }
    capability = needed.get(method)
    if capability is None:
        return
    declared = capabilities.get(capability)
    if not isinstance(declared, dict):
        raise MissingClientCapability(f"the client did not declare the {capability!r} capability that {method} needs")
    if method == "elicitation/create" and (params or {}).get("mode") == "url" and "url" not in declared:
        raise MissingClientCapability("the client did not declare URL-mode elicitation (elicitation.url)")


class HandshakeSink:
    def __init__(
        self, session: DownstreamSession, stream: EventStream, hub: Hub, timeout: float = CLIENT_ANSWER_SECONDS
    ) -> None:
        self._session = session
        self._stream = stream
        self._hub = hub
        self._timeout = timeout

    def notify(self, method: str, params: dict[str, Any]) -> None:
        self._stream.push({"jsonrpc": "2.0", "method": method, "params": params})

    async def request(self, method: str, params: dict[str, Any] | None) -> dict[str, Any]:
        require_capability(self._session.client_capabilities, method, params)
        request_id = self._session.next_request_id()
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._session.pending[request_id] = future
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
            if method == "elicitation/create" and params.get("mode") == "url" and "elicitationId" in params:
                # Its completion will come later, outside any request: send it to this client.
                self._hub.expect_elicitation(str(params["elicitationId"]), self._session.standalone)
        self._stream.push(message)
        try:
            async with asyncio.timeout(self._timeout):
                answer = await future
        except TimeoutError:
            self.notify("notifications/cancelled", {"requestId": request_id, "reason": "no answer in time"})
            raise UpstreamTimeout("<client>", f"no answer to {method} within {self._timeout:g}s") from None
        except asyncio.CancelledError:
            # The server gave up on its question: so must the client.
            self.notify("notifications/cancelled", {"requestId": request_id, "reason": "the server cancelled it"})
            raise
        finally:
            self._session.pending.pop(request_id, None)
        if "error" in answer:
            raise ClientRpcError(answer["error"] if isinstance(answer["error"], dict) else {"code": -32603})
        result = answer.get("result")
        return result if isinstance(result, dict) else {}
