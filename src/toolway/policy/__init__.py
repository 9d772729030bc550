"""Policy: OPA/Rego and built-in rules on one decision path, the decision log, egress control."""
