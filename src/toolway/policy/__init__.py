"""Policy: OPA/Rego and built-in rules on one decision path, the decision log, egress control."""


class RegoCompileError(Exception):
    """A policy does not compile; the message names the file, the place and rego-cpp's words.

    Defined here rather than in `rego.py` so that naming it does not load regopy (~11 MB),
    which is imported only when some policy is configured."""
