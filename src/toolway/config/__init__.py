"""Configuration: the YAML file model, its loader, and the frozen runtime form."""

from toolway.config.loader import ConfigError, load_config
from toolway.config.model import GatewayConfig, HttpServerConfig, ServerConfig, StdioServerConfig

__all__ = [
    "ConfigError",
    "GatewayConfig",
    "HttpServerConfig",
    "ServerConfig",
    "StdioServerConfig",
    "load_config",
]
