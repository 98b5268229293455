"""Model families. Each family is one file that registers its entrypoints; built-ins are imported here."""

from edgekit.models import mobilenet_v1, mobilenet_v2  # noqa: F401  (register the built-in families)
from edgekit.models._registry import create_model, list_models, model_entrypoint, model_options, register_model

__all__ = ["create_model", "list_models", "model_entrypoint", "model_options", "register_model"]
