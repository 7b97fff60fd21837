"""Configuration: the schema (every default, once) and the TOML loader with overrides."""

from pfsim.config.load import (
    apply_overrides,
    config_digest,
    config_warnings,
    load_config,
    validate_config,
)
from pfsim.config.schema import Config

__all__ = ["Config", "apply_overrides", "config_digest", "config_warnings", "load_config",
           "validate_config"]
