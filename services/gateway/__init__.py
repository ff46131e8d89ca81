"""The tenant-aware OpenAI-compatible gateway: API keys, per-tenant limits, fair queuing, routing, metrics."""
