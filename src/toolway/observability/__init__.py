"""Logs now; metrics, traces and audit subscribe to the same events later."""
