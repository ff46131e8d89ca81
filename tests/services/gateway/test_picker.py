"""The endpoint picker with real processes: four mock pods with prefix caches behind one worker URL."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.gateway.process import gateway, write_config
from services.mock_worker.process import free_port, mock_worker
from tests.services.gateway.conftest import KEYS, tenant

WORKER = "http://llama.tenant-a.svc.cluster.local:8000"  # never contacted: its pods are listed
POD_FLAGS = [
    "--model", "llama", "--slots", "4", "--decode-seconds-per-token", "0", "--prefill-seconds", "0",
    "--prefill-seconds-per-token", "0.00002", "--cache-tokens", "20000", "--log-level", "warning",
]  # fmt: skip


@pytest.fixture(scope="module")
def pods():
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(mock_worker(*POD_FLAGS)) for _ in range(4)]


def picker_document(pod_urls, **routes):
    models = list(routes)
    return {
        "tenants": {
            "acme": tenant(
                [KEYS["acme"]],
                models,
                {"llama": WORKER},
                {model: {"strategy": "direct", "primary": "llama", "picker": p} for model, p in routes.items()},
                maxConcurrency=64,
            )
        },
        "endpoints": {WORKER: pod_urls},
    }


@pytest.fixture(scope="module")
def gw(tmp_path_factory, pods):
    # Three names for the pods' one model: the mock serves any route's model name it knows, so each
    # route's model is "llama" upstream and only the picker differs.
    path = write_config(picker_document([p.url for p in pods], llama="prefix"), tmp_path_factory.mktemp("picker"))
    with gateway(path, None, picker_scrape_seconds=0.05) as service:
        yield service


def samples(text: str, name: str) -> dict[frozenset, float]:
    return {
        frozenset(s.labels.items()): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def cache_hits(pods) -> list[float]:
    hits = []
    for pod in pods:
        found = samples(pod.metrics_text(), "vllm:prefix_cache_hits_total")
        hits.append(sum(found.values()))
    return hits


def picks(gw) -> dict[str, float]:
    found = samples(httpx.get(f"{gw.metrics_url}/metrics").text, "gateway_picker_picks_total")
    return {dict(labels)["pod"]: value for labels, value in found.items()}


def ask(client: httpx.Client, content: str, **headers: str) -> httpx.Response:
    body = {"model": "llama", "messages": [{"role": "user", "content": content}], "max_tokens": 1}
    return client.post(
        "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {KEYS['acme']}", **headers}
    )


def system_prompt(tag: str) -> str:
    return " ".join(f"{tag}-{i}" for i in range(600))


def test_requests_sharing_a_system_prompt_go_to_the_pod_that_cached_it(gw, pods) -> None:
    before_hits, before_picks = cache_hits(pods), picks(gw)
    with httpx.Client(base_url=gw.url, timeout=10) as client:
        for turn in range(5):
            for tag in ("alpha", "beta", "gamma"):
                assert ask(client, f"{system_prompt(tag)} question {turn} {tag}").status_code == 200
    gained = [after - before for after, before in zip(cache_hits(pods), before_hits, strict=True)]
    # Each prompt's first request fills one pod's cache; the 4 repeats each hit its 37 full blocks.
    assert sum(gained) >= 3 * 4 * 592, gained
    after_picks = picks(gw)
    used = [pod for pod in after_picks if after_picks[pod] > before_picks.get(pod, 0)]
    assert 1 <= len(used) <= 3


def test_round_robin_spreads_the_same_prompts_and_misses_the_cache(tmp_path, pods) -> None:
    path = write_config(picker_document([p.url for p in pods], llama="round-robin"), tmp_path)
    before = cache_hits(pods)
    with gateway(path, None) as rr, httpx.Client(base_url=rr.url, timeout=10) as client:
        for turn in range(4):
            for tag in ("delta", "epsilon", "zeta"):
                assert ask(client, f"{system_prompt(tag)} q {turn}").status_code == 200
        counts = picks(rr)
    assert sorted(counts.values()) == [3, 3, 3, 3]
    # Three prompts in turn over four pods: a prompt comes back to a pod only after four turns.
    assert sum(cache_hits(pods)) == sum(before)


def test_a_session_stays_on_one_pod_whatever_its_prompts(gw) -> None:
    before = picks(gw)
    with httpx.Client(base_url=gw.url, timeout=10) as client:
        for i in range(8):
            assert (
                ask(client, f"unrelated prompt number {i} " * 3, **{"x-session-id": "conversation-42"}).status_code
                == 200
            )
    after = picks(gw)
    grew = {pod: after[pod] - before.get(pod, 0) for pod in after if after[pod] > before.get(pod, 0)}
    assert list(grew.values()) == [8], grew


def test_one_hot_prefix_spills_over_to_other_pods_when_its_pod_is_loaded(tmp_path) -> None:
    # Slow pods (0.3 s per request) and 16 requests at once on one prefix: bounded load spreads them.
    flags = ["--model", "llama", "--slots", "16", "--prefill-seconds", "0.3", "--decode-seconds-per-token", "0"]
    with contextlib.ExitStack() as stack:
        slow = [stack.enter_context(mock_worker(*flags, "--log-level", "warning")) for _ in range(4)]
        path = write_config(picker_document([p.url for p in slow], llama="prefix"), tmp_path)
        hot = gateway(path, None, picker_load_slack=2)
        service = stack.enter_context(hot)

        async def burst() -> list[int]:
            async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
                body = {"model": "llama", "messages": [{"role": "user", "content": system_prompt("hot")}]}
                headers = {"authorization": f"Bearer {KEYS['acme']}"}
                replies = await asyncio.gather(
                    *(client.post("/v1/chat/completions", json=body, headers=headers) for _ in range(16))
                )
            return [r.status_code for r in replies]

        assert asyncio.run(burst()) == [200] * 16
        counts = sorted(picks(service).values())
    # The bound: a pod gets affinity only while its load is at most 1.25 × the mean + the slack (2 here).
    assert len(counts) >= 3 and counts[-1] <= 7, counts


def test_a_dead_pod_is_retried_on_another_before_the_first_byte(tmp_path, pods) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    path = write_config(picker_document([dead, pods[0].url], llama="round-robin"), tmp_path)
    with gateway(path, None) as service, httpx.Client(base_url=service.url, timeout=10) as client:
        codes = [ask(client, f"retry me {i}").status_code for i in range(6)]
        assert codes == [200] * 6
        assert picks(service).get(dead) == 3  # it was the first choice half the time


def test_least_load_avoids_a_pod_whose_engine_queue_is_long(tmp_path) -> None:
    # Pod 0's engine is kept busy by traffic that does not pass this gateway: only its /metrics show it.
    flags = ["--model", "llama", "--slots", "1", "--prefill-seconds", "0.2", "--decode-seconds-per-token", "0"]
    with contextlib.ExitStack() as stack:
        busy, idle = (stack.enter_context(mock_worker(*flags, "--log-level", "warning")) for _ in range(2))
        path = write_config(picker_document([busy.url, idle.url], llama="least-load"), tmp_path)
        service = stack.enter_context(gateway(path, None, picker_scrape_seconds=0.05))

        async def scenario() -> None:
            body = {"model": "llama", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1}
            async with httpx.AsyncClient(timeout=20) as direct:
                backlog = [
                    asyncio.create_task(direct.post(f"{busy.url}/v1/chat/completions", json=body)) for _ in range(12)
                ]
                await asyncio.sleep(0.3)  # a few scrapes see pod 0's queue
                async with httpx.AsyncClient(base_url=service.url, timeout=20) as client:
                    for i in range(5):
                        r = await client.post(
                            "/v1/chat/completions",
                            json={**body, "messages": [{"role": "user", "content": f"q{i}"}]},
                            headers={"authorization": f"Bearer {KEYS['acme']}"},
                        )
                        assert r.status_code == 200
                await asyncio.gather(*backlog)

        started = time.monotonic()
        asyncio.run(scenario())
        assert time.monotonic() - started < 10
        assert picks(service) == {idle.url: 5}


def test_a_session_keeps_its_pod_against_a_stale_scrape_within_the_load_bound() -> None:
    # In process, no timing: the session's pod looks busier by one request (a scrape taken while its
    # last reply was still finishing) and has cached something; the other pods look idle and empty.
    # Within the load bound that must not move the session: the bound, not the load score, spills over.
    from prometheus_client import CollectorRegistry

    from services.gateway.picker import Picker, PickerSettings

    urls = [f"http://10.0.0.{i}:8000" for i in range(1, 5)]
    picker = Picker(PickerSettings(), lambda url: urls, CollectorRegistry())
    body = {"model": "llama", "messages": [{"role": "user", "content": "short"}]}
    headers = {b"x-session-id": b"conversation-7"}
    ordered, pod = picker.choose("acme", "prefix", [("w", "http://w")], body, headers)
    picker.done(pod)
    home = ordered[0][1]
    for _ in range(20):
        picker.pods[home].others, picker.pods[home].kv, picker.pods[home].scraped = 1.0, 0.6, True
        ordered, pod = picker.choose("acme", "prefix", [("w", "http://w")], body, headers)
        picker.done(pod)
        assert ordered[0][1] == home


def test_a_prompt_too_short_to_hash_stays_on_a_warm_pod_only_while_every_pod_is_idle() -> None:
    from prometheus_client import CollectorRegistry

    from services.gateway.picker import Picker, PickerSettings

    urls = [f"http://10.0.0.{i}:8000" for i in range(1, 5)]
    picker = Picker(PickerSettings(), lambda url: urls, CollectorRegistry())
    short = {"model": "llama", "messages": [{"role": "user", "content": "hello"}]}

    def first(body) -> tuple[str, object]:
        ordered, pod = picker.choose("acme", "prefix", [("w", "http://w")], body, {})
        return ordered[0][1], pod

    # One at a time: nothing to cache and no queue anywhere, so the same (warm) pod.
    served = set()
    for _ in range(10):
        url, pod = first(short)
        picker.done(pod)
        served.add(url)
    assert len(served) == 1
    # With requests in flight, short prompts are spread in turn again.
    held = [first(short) for _ in range(8)]
    assert {url for url, _ in held} == set(urls)
    for _, pod in held:
        picker.done(pod)
    # Prompts long enough to hash are spread in turn even one at a time (their blocks are cached
    # where they go, and spreading them spreads the caches).
    spread = set()
    for i in range(4):
        url, pod = first({"model": "llama", "messages": [{"role": "user", "content": f"{i} " + "word " * 300}]})
        picker.done(pod)
        spread.add(url)
    assert len(spread) == 4


@pytest.mark.parametrize(
    "during, engine_count, others",
    [
        ("finishes", 1, 0),  # in flight when the scrape left, done before it came back
        ("comes and goes", 1, 0),  # sent and done while the scrape was out
        ("finishes", 3, 2),  # two more on the engine are another client's
    ],
)
def test_a_scrape_never_counts_this_replicas_own_requests_as_another_clients(
    monkeypatch, during, engine_count, others
) -> None:
    # In process: the engine answers with a count taken while the scrape was out; whatever of this
    # replica's requests may be in it is not load from elsewhere.
    from prometheus_client import CollectorRegistry

    import services.gateway.engine_metrics as engine_metrics
    from services.gateway.picker import Picker, PickerSettings

    url = "http://10.0.0.1:8000"
    picker = Picker(PickerSettings(), lambda _: [url], CollectorRegistry())
    pod = picker.pod(url)
    if during == "finishes":
        pod.inflight, pod.sent = 1, 1

    async def fetch(_url, _timeout):
        if during == "finishes":
            picker.done(pod)
        else:
            pod.inflight += 1
            pod.sent += 1
            picker.done(pod)
        return f'vllm:num_requests_running{{model_name="llama"}} {engine_count}\n'.encode()

    monkeypatch.setattr(engine_metrics, "fetch", fetch)
    asyncio.run(engine_metrics.scrape_once(picker, {url}, timeout=1))
    assert pod.scraped and pod.inflight == 0
    assert (pod.running, pod.others, pod.load) == (engine_count, others, others)
