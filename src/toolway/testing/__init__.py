"""Toolway's public test kit: fixture MCP servers and helpers to run them from tests."""
