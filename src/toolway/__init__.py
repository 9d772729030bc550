"""Toolway: an MCP gateway. One endpoint for agents, many MCP servers behind it."""

__version__ = "0.1.0"
