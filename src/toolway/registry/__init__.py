"""The registry: what the gateway knows about its upstream servers and their tools."""

from toolway.registry.store import ServerRecord, Store, StoreError, ToolRecord

__all__ = ["ServerRecord", "Store", "StoreError", "ToolRecord"]
