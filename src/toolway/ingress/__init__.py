"""Agent-facing adapters: bytes in, messages to the protocol layer, bytes out."""
