"""The MCP protocol layer: JSON-RPC envelope, versions and eras, errors, header checks."""
