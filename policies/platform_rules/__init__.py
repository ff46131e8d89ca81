"""Policy rules of the GPU platform, shared by the CrossGuard pack and `platformctl policy check`."""

from .model import PolicyConfig, Resource, Violation
from .registry import REGISTRY, evaluate

__all__ = ["REGISTRY", "PolicyConfig", "Resource", "Violation", "evaluate"]
