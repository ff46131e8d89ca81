"""A CPU stand-in for vLLM/SGLang: OpenAI-compatible, queueing like an engine, exporting engine metrics."""
