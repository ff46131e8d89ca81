"""CPU stand-in for an OpenAI-compatible inference engine (vLLM or SGLang).

It queues requests for a fixed number of slots, spends a configurable prefill and
per-token decode time, and exports the engine's own Prometheus metric names, so the
gateway, the autoscaler and the dashboards can be exercised without a GPU.
"""
