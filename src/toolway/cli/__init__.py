"""The ``toolway`` command line."""
