"""moe_core: a small Mixture-of-Experts language model and the tools to study its training."""

from moe_core.config.run_config import ConfigError, RunConfig, build_config
from moe_core.errors import UserInputError

__all__ = ["ConfigError", "RunConfig", "UserInputError", "build_config"]
