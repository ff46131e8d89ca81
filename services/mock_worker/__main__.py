"""`python -m services.mock_worker --port 8000 --model mock-llama --slots 4`"""

from __future__ import annotations

import argparse

import uvicorn

from services.mock_worker.app import create_app
from services.mock_worker.settings import WorkerSettings


def main(argv: list[str] | None = None) -> None:
    defaults = WorkerSettings()
    parser = argparse.ArgumentParser(prog="mock-worker", description=__doc__)
    parser.add_argument("--host", default=defaults.host)
    parser.add_argument("--port", type=int, default=defaults.port)
    parser.add_argument("--model", action="append", dest="models", help="served model name (repeatable)")
    parser.add_argument("--engine", choices=["vllm", "sglang"], default=defaults.engine, help="metric names to export")
    parser.add_argument("--slots", type=int, default=defaults.slots)
    parser.add_argument("--prefill-seconds", type=float, default=defaults.prefill_seconds)
    parser.add_argument("--decode-seconds-per-token", type=float, default=defaults.decode_seconds_per_token)
    parser.add_argument("--failure-rate", type=float, default=defaults.failure_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args(argv)
    settings = WorkerSettings(
        host=args.host,
        port=args.port,
        models=args.models or defaults.models,
        engine=args.engine,
        slots=args.slots,
        prefill_seconds=args.prefill_seconds,
        decode_seconds_per_token=args.decode_seconds_per_token,
        failure_rate=args.failure_rate,
        seed=args.seed,
    )
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
