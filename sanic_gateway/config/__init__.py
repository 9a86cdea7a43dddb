"""gateway.yaml: load, substitute `${VAR}`, validate, normalize, and report problems by line.

Everything else in the gateway reads the file through `load_config` and reports its own findings
about it through `Config.issue`, so that every message looks the same: `file:line: path: what`.
"""

from .issues import ConfigError, ConfigIssue
from .loader import Config, load_config
from .units import parse_duration, parse_size

__all__ = [
    "Config",
    "ConfigError",
    "ConfigIssue",
    "load_config",
    "parse_duration",
    "parse_size",
]
