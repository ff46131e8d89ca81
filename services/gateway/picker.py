"""The endpoint picker: which pod behind the chosen worker serves this request.

A route's strategy (direct/weighted/canary) chooses the worker; the picker orders that worker's
ready pods, best first, and the gateway tries them in that order until one answers (so a pod that
fails before the first byte is retried on the next). Policies, per route (`picker` in the route,
else GATEWAY_PICKER_POLICY):

- `random`: what a Kubernetes Service gives. `round-robin`: the same spread without its variance.
- `least-load`: the pod with the fewest requests, counting the gateway's own in flight and the
  engine's queue read from its /metrics, and the least KV-cache use.
- `prefix` (default): prefix affinity and session affinity, else round robin, all within a load
  bound. A pod that already
  holds a prompt's leading blocks in its KV cache skips their prefill, the most expensive part of
  a long prompt; a session id (header GATEWAY_PICKER_SESSION_HEADER) keeps a conversation on the
  pod it last went to. Both are bounded: a pod whose load is above `load_bound` times the mean plus `load_slack` is
  passed over, so one hot prefix or session spills to other pods instead of queueing on one.

Scores are weighted sums of scorers in [0, 1]; the winner's per-scorer contributions are counted
in gateway_picker_score_total{scorer}, so a dashboard shows what drives the choice.
"""

from __future__ import annotations

import itertools
import random
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.gateway.prefix_index import BLOCK_BYTES, PrefixIndex, block_hashes, prompt_text

Policy = Literal["prefix", "least-load", "round-robin", "random"]
# Retries before the first byte go to at most this many pods of one worker: enough to step over a
# pod that just died, without one request walking a whole fleet of timeouts.
MAX_PODS_TRIED = 3


class PickerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_PICKER_", extra="ignore")

    policy: Policy = "prefix"
    session_header: str = "x-session-id"
    # How often each pod's /metrics is read; engines update their gauges every few hundred ms.
    scrape_seconds: float = Field(default=0.25, gt=0)
    # Affinity holds while a pod's load is at most load_bound × the mean load + load_slack. The slack
    # is about an engine's batch: below it one more request costs a pod little, a cache miss much.
    load_bound: float = Field(default=1.25, ge=1.0)
    load_slack: float = Field(default=8.0, ge=0)
    # Well above the load and KV weights: a full-prompt match on one pod against a system-prompt
    # match on another (about 0.2 apart) outweighs a moderate load difference.
    prefix_weight: float = Field(default=4.0, ge=0)
    # Below prefix_weight: a session's own history already matches best on its pod; the session
    # bonus decides where prompts share no text (or too little to hash), not against the cache.
    # Above load_weight + kv_weight: within the load bound the session stays on its pod, however
    # much busier a scrape shows it (one reply still finishing made it look twice as loaded).
    session_weight: float = Field(default=1.5, ge=0)
    sessions: int = Field(default=100_000, ge=1)
    load_weight: float = Field(default=1.0, ge=0)
    # Low: KV-cache use is a scrape old, and a heavier weight sends every request between two
    # scrapes to the same pod.
    kv_weight: float = Field(default=0.25, ge=0)
    spread_weight: float = Field(default=0.5, ge=0)
    index_blocks: int = Field(default=100_000, ge=1)
    # A worker is saturated when every pod's engine queue or KV-cache use is at least this:
    # sheddable requests are then refused (priority.py).
    saturated_queue: float = Field(default=4.0, ge=0)
    saturated_kv: float = Field(default=0.95, ge=0, le=1)


@dataclass(slots=True)
class Pod:
    url: str
    inflight: int = 0  # this gateway replica's requests on it
    sent: int = 0  # this replica's requests sent to it, ever
    waiting: float = 0.0  # engine queue, from its /metrics
    running: float = 0.0
    kv: float = 0.0  # KV-cache use, 0..1
    scraped: bool = False
    others: float = 0.0  # requests on the engine that are not this replica's, at the last scrape

    @property
    def load(self) -> float:
        # This replica's own count is exact and fresh; the engine's count (a scrape old) adds what
        # other replicas and clients have sent it.
        return self.inflight + self.others


def _rendezvous(key: int, url: str) -> int:
    # Highest random weight: every gateway replica ranks pods the same for the same key. CRC-32 is
    # plenty for breaking ties, and costs a fraction of a cryptographic hash on the request path.
    return zlib.crc32(url.encode(), key)


class PickerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.picks = Counter(
            "gateway_picker_picks", "Requests sent to each pod, first choice.", ["upstream", "pod"], registry=registry
        )
        self.score = Counter(
            "gateway_picker_score",
            "Sum of the chosen pod's weighted score, by scorer: what drives the choices.",
            ["scorer"],
            registry=registry,
        )
        self.prefix_blocks = Counter(
            "gateway_picker_prefix_blocks",
            f"Prompt blocks ({BLOCK_BYTES} bytes) seen, and of those expected cached on the chosen pod: "
            "the estimated prefix hit rate per tenant.",
            ["tenant", "kind"],
            registry=registry,
        )
        self.pods = Gauge("gateway_picker_pods", "Ready pods known per upstream.", ["upstream"], registry=registry)
        self._children: dict[tuple, object] = {}

    def child(self, metric, *labels: str):
        key = (metric, *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found


class Picker:
    def __init__(self, settings: PickerSettings, pods_of, registry: CollectorRegistry) -> None:
        """`pods_of(upstream_url)` gives the ready pod URLs behind a worker (endpoints.py)."""
        self.settings = settings
        self.pods_of = pods_of
        self.pods: dict[str, Pod] = {}
        self.index = PrefixIndex(settings.index_blocks)
        self.sessions: OrderedDict[bytes, str] = OrderedDict()  # session id -> the pod it last went to
        self.metrics = PickerMetrics(registry)
        self._turns: dict[str, itertools.count] = {}
        self._last: dict[str, str] = {}  # worker URL -> the pod its last request went to
        self.session_header = settings.session_header.lower().encode()
        self._scorer_children = {
            name: self.metrics.child(self.metrics.score, name) for name in ("prefix", "session", "spread", "load", "kv")
        }

    def pod(self, url: str) -> Pod:
        pod = self.pods.get(url)
        if pod is None:
            pod = self.pods[url] = Pod(url)
        return pod

    def choose(
        self, tenant: str, policy: Policy | None, choices: list[tuple[str, str]], body: dict, headers: dict
    ) -> tuple[list[tuple[str, str]], Pod | None]:
        """(name, URL) pairs to try in order, pods in place of workers; and the first pod, to `done()` after."""
        policy = policy or self.settings.policy
        ordered: list[tuple[str, str]] = []
        first: Pod | None = None
        for position, (name, url) in enumerate(choices):
            urls = self.pods_of(url)
            if len(urls) <= 1:
                ordered += [(name, u) for u in urls] if urls else [(name, url)]
                continue
            if position == 0:
                ranked = self._rank(tenant, policy, url, urls, body, headers)
                self.metrics.child(self.metrics.picks, url, ranked[0].url).inc()
            else:  # a fallback worker: its least loaded pods
                ranked = sorted((self.pod(u) for u in urls), key=lambda p: p.load)
            ordered += [(name, p.url) for p in ranked[:MAX_PODS_TRIED]]
        if ordered:
            first = self.pods.get(ordered[0][1])
            if first is not None:
                first.inflight += 1
                first.sent += 1
        return ordered, first

    def done(self, pod: Pod | None) -> None:
        if pod is not None:
            pod.inflight -= 1

    def saturated(self, url: str) -> bool:
        """Every known pod behind this worker reports a long queue or a full KV cache."""
        urls = self.pods_of(url)
        pods = [self.pods.get(u) for u in urls]
        if not pods or any(p is None or not p.scraped for p in pods):
            return False
        s = self.settings
        return all(p.waiting >= s.saturated_queue or p.kv >= s.saturated_kv for p in pods)

    def _rank(self, tenant: str, policy: Policy, upstream: str, urls: list[str], body: dict, headers) -> list[Pod]:
        pods = [self.pod(u) for u in urls]
        if policy == "random":
            random.shuffle(pods)
            return pods
        if policy == "round-robin":
            turn = self._turns.get(upstream)
            if turn is None:
                turn = self._turns[upstream] = itertools.count()
            start = next(turn) % len(pods)
            return pods[start:] + pods[:start]
        s = self.settings
        loads = [p.load for p in pods]
        top = max(loads)
        # Bounded load (as in consistent hashing with bounded loads): above this a pod gets no affinity.
        bound = s.load_bound * sum(loads) / len(pods) + s.load_slack
        scores = {p.url: s.load_weight * (1 - p.load / top if top else 1.0) + s.kv_weight * (1 - p.kv) for p in pods}
        parts: dict[str, dict[str, float]] = {}
        hashes: list[int] = []
        session = None
        if policy == "prefix":
            session = headers.get(self.session_header)
            hashes = block_hashes(prompt_text(body))
            matched = self.index.matches(hashes, urls) if hashes else {}
            if session:
                last = self.sessions.get(session)
                if last in scores and self.pods[last].load <= bound:
                    scores[last] += s.session_weight
                    parts[last] = {"session": s.session_weight}
            for url, depth in matched.items():
                if depth and self.pods[url].load <= bound:
                    gain = s.prefix_weight * depth / len(hashes)
                    scores[url] += gain
                    parts.setdefault(url, {})["prefix"] = gain
            if hashes and s.spread_weight:
                # Between pods that match about as well, the one asked to cache least so far, so that
                # prefixes are spread over the pods' caches instead of piling up on one.
                held = self.index.blocks_of
                most = max(held.get(u, 0) for u in urls)
                if most:
                    for url in urls:
                        gain = s.spread_weight * (1 - held.get(url, 0) / most)
                        scores[url] += gain
                        parts.setdefault(url, {})["spread"] = gain
            # Exact ties between matching pods go the same way on every replica.
            key = hashes[0] if hashes else 0
            ranked = sorted(pods, key=lambda p: (-scores[p.url], -_rendezvous(key, p.url)))
        else:
            ranked = sorted(pods, key=lambda p: (-scores[p.url], random.random()))
        best = ranked[0]
        affinity = parts.get(best.url, {})
        if policy == "prefix" and "prefix" not in affinity and "session" not in affinity:
            # No affinity decides: the pods within the load bound are taken in turn. Round robin
            # spaces arrivals evenly over the pods, which the fewest-requests rule does not: a
            # request count cannot tell a request still in prefill from one decoding, so the pod
            # that just finished two gets the next two arrivals, and their prefills queue.
            near = [p for p in ranked if p.load <= bound]
            if len(near) > 1:
                last = self.pods.get(self._last.get(upstream, ""))
                if not hashes and last in near and not any(p.load for p in near):
                    # A prompt too short to hash has no cache to be near, and with every pod idle
                    # no queue to avoid: the pod that served last (a warm process) serves it.
                    chosen = last
                else:
                    near.sort(key=lambda p: p.url)
                    turn = self._turns.get(upstream)
                    if turn is None:
                        turn = self._turns[upstream] = itertools.count()
                    chosen = near[next(turn) % len(near)]
                ranked.remove(chosen)
                ranked.insert(0, chosen)
                best = chosen
        self._last[upstream] = best.url
        if policy == "prefix" and session:
            self._remember(session, best.url)
        if hashes:
            self.index.record(hashes, best.url)
            m = self.metrics
            m.child(m.prefix_blocks, tenant, "queried").inc(len(hashes))
            m.child(m.prefix_blocks, tenant, "matched").inc(matched.get(best.url, 0))
        children = self._scorer_children
        for scorer, value in parts.get(best.url, {}).items():
            children[scorer].inc(value)
        children["load"].inc(s.load_weight * (1 - best.load / top if top else 1.0))
        children["kv"].inc(s.kv_weight * (1 - best.kv))
        return ranked

    def _remember(self, session: bytes, url: str) -> None:
        sessions = self.sessions
        sessions[session] = url
        sessions.move_to_end(session)
        if len(sessions) > self.settings.sessions:
            sessions.popitem(last=False)

    def forget(self, url: str) -> None:
        """A pod left the pool."""
        self.pods.pop(url, None)
        self.index.forget_pod(url)
