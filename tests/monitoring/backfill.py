"""A real Prometheus on backfilled history: raw samples, then recording rules evaluated over them.

Raw series are written as OpenMetrics and turned into blocks by `promtool tsdb create-blocks-from
openmetrics`; the rules are then evaluated over that history by `promtool tsdb create-blocks-from
rules` against the running server, the way Prometheus would have evaluated them live, and the
server is restarted on both sets of blocks.

Backfilled samples carry no staleness markers, which a live Prometheus writes as soon as a series
disappears from a scrape; the server therefore runs with a lookback equal to the scrape interval,
so each sample stands for exactly the 15 seconds after it and a series that stopped is gone when
its next scrape would have been, as it would be live. Scrapes fall on whole 15-second marks; rule
evaluations fall at the group's offset within the minute (derived from its name and file, as
Prometheus does), which `eval_phase` reports and which is never such a mark, so no evaluation
depends on whether a boundary is inclusive.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

SCRAPE_SECONDS = 15
SCRAPE_PHASE = 0
LOOKBACK = f"{SCRAPE_SECONDS}s"


@dataclass
class Series:
    name: str
    labels: dict[str, str]
    samples: list[tuple[float, float]] = field(default_factory=list)

    def line(self, t: float, value: float) -> str:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(self.labels.items()))
        return f"{self.name}{{{labels}}} {value:.17g} {t:.3f}"


def scrape_times(start: float, stop: float, gaps=(), every: int = SCRAPE_SECONDS) -> list[float]:
    """Scrape instants in [start, stop), none inside a gap (Prometheus down)."""
    first = (start - SCRAPE_PHASE) // every * every + SCRAPE_PHASE
    times, t = [], first if first >= start else first + every
    while t < stop:
        if not any(a <= t < b for a, b in gaps):
            times.append(t)
        t += every
    return times


def gauge(name: str, labels: dict[str, str], value: float, start: float, stop: float, gaps=(), every=SCRAPE_SECONDS):
    return Series(name, labels, [(t, value) for t in scrape_times(start, stop, gaps, every)])


def counter(
    name: str, labels: dict[str, str], value: Callable[[float], float], start, stop, gaps=(), every=SCRAPE_SECONDS
):
    return Series(name, labels, [(t, value(t)) for t in scrape_times(start, stop, gaps, every)])


def openmetrics(series: list[Series]) -> str:
    by_name: dict[str, list[Series]] = {}
    for s in series:
        by_name.setdefault(s.name, []).append(s)
    lines = []
    for members in by_name.values():
        for s in members:
            lines.extend(s.line(t, v) for t, v in s.samples)
    return "\n".join(lines) + "\n# EOF\n"


def _run(*args: str, cwd: Path | None = None) -> None:
    result = subprocess.run(args, capture_output=True, text=True, cwd=cwd)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])} failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _server(prometheus: str, work: Path, retention: str, lookback: str) -> Iterator[str]:
    config = work / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": f"{SCRAPE_SECONDS}s"}}))
    port = _free_port()
    process = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--storage.tsdb.retention.time={retention}",
            f"--query.lookback-delta={lookback}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(work / "prometheus.log", "a"),  # noqa: SIM115 - closed with the process
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {(work / 'prometheus.log').read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("prometheus did not become ready")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def backfilled_prometheus(
    work: Path,
    series: list[Series],
    rule_groups: list[dict],
    start: float,
    end: float,
    retention: str = "40d",
    lookback: str = LOOKBACK,
) -> Iterator[str]:
    """A Prometheus serving `series` and the `rule_groups` evaluated every minute over [start, end]."""
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    assert prometheus and promtool, "run scripts/install-system-packages.sh"
    data = work / "data"
    (work / "raw.om").write_text(openmetrics(series))
    _run(promtool, "tsdb", "create-blocks-from", "openmetrics", str(work / "raw.om"), str(data))
    (work / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups}))
    with _server(prometheus, work, retention, lookback) as url:
        _run(
            promtool,
            "tsdb",
            "create-blocks-from",
            "rules",
            f"--start={int(start)}",
            f"--end={int(end)}",
            "--eval-interval=1m",
            f"--url={url}",
            f"--output-dir={work / 'rules-blocks'}",
            # Relative, so that the groups' evaluation offsets do not depend on the temporary folder.
            "rules.yaml",
            cwd=work,
        )
    for block in (work / "rules-blocks").iterdir():
        shutil.move(str(block), data / block.name)
    with _server(prometheus, work, retention, lookback) as url:
        yield url


def eval_phase(url: str, record: str, around: float) -> float:
    """The offset within the minute at which `record` was evaluated (its samples' timestamps)."""
    payload = httpx.get(f"{url}/api/v1/query", params={"query": f"{record}[2m]", "time": around}).json()
    stamps = {float(t) % 60 for series in payload["data"]["result"] for t, _ in series["values"]}
    assert len(stamps) == 1, stamps
    return stamps.pop()
