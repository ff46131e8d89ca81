"""The ready pods behind each worker URL: from the EndpointSlice watcher in a cluster, else the config.

A worker is addressed by its Service URL in the tenants document. In a cluster the watcher
(endpointslices.py) replaces that with the Service's ready endpoints as soon as they change; in
tests and locally the document's top-level `endpoints` maps a worker URL to its pods' URLs. A
worker with neither is used as it is (kube-proxy picks the pod, as before the picker).
"""

from __future__ import annotations

from collections.abc import Callable


class Endpoints:
    def __init__(self, static: Callable[[], dict[str, list[str]]]) -> None:
        """`static()` returns the current document's `endpoints` (it changes on reload)."""
        self.static = static
        # Filled by the watcher: worker URL -> ready pod URLs. A worker known to it with no ready
        # pod maps to [], which falls back to the Service URL (and its failure, answered as 502).
        self.discovered: dict[str, list[str]] = {}
        self.on_removed: list[Callable[[str], None]] = []

    def __call__(self, url: str) -> list[str]:
        found = self.discovered.get(url)
        if found:
            return found
        return self.static().get(url) or [url]

    def set_discovered(self, url: str, pods: list[str]) -> None:
        before = set(self.discovered.get(url, ()))
        self.discovered[url] = pods
        for gone in before - set(pods):
            for callback in self.on_removed:
                callback(gone)

    def all_pods(self) -> set[str]:
        """Every pod URL known now (what the engine-metrics scraper reads)."""
        pods = {p for urls in self.static().values() for p in urls}
        pods.update(p for urls in self.discovered.values() for p in urls)
        return pods
