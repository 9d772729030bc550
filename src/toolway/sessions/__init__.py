"""Downstream session records and the connection manager for upstream sessions."""
