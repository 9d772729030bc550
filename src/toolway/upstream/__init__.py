"""Server-facing adapters: turn JSON-RPC messages into what each upstream transport speaks."""
