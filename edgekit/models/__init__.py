"""Model families. Each family is one file that registers its entrypoints; built-ins are imported here."""

from edgekit.models import mobilenet_v1  # noqa: F401  (registers the built-in family)
from edgekit.models._registry import create_model, list_models, model_entrypoint, model_options, register_model

__all__ = ["create_model", "list_models", "model_entrypoint", "model_options", "register_model"]
