"""RedisClient and the limiter's script against a real redis-server: pipelining, auth, loss, timeouts.

Two sections. The contract tests state what any correct client must do and run twice: on the
gateway's own client ("own") and on a redis-py-backed stand-in with the same interface
("library", reference_clients.py); the limiter's tests among them run the RateLimiter on either.
The own client's tests, at the end, pin what only it promises: one write per loop turn, deferred
commands, and a stricter reading of the URL.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from services.gateway import ratelimit
from services.gateway.process import redis_server
from services.gateway.ratelimit import RateLimiter
from services.gateway.redis_client import RedisClient, RedisError, RedisReplyError
from services.mock_worker.process import free_port
from tests.services.gateway.reference_clients import KINDS, LibraryRedisClient, redis_client


@pytest.fixture(params=KINDS)
def kind(request) -> str:
    return request.param


@pytest.fixture
def silent_port():
    """A port that accepts connections and never answers (the kernel completes the handshake)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    yield listener.getsockname()[1]
    listener.close()


# Contract: own client and library reference alike.


def test_calls_of_one_loop_turn_answer_in_order(redis, kind):
    async def scenario():
        async with redis_client(kind, redis.url, 1) as client:
            await client.call("DEL", f"pipelined-{kind}")
            return await asyncio.gather(*(client.call("INCR", f"pipelined-{kind}") for _ in range(200)))

    assert asyncio.run(scenario()) == list(range(1, 201))


def test_an_error_reply_fails_only_its_own_call(redis, kind):
    async def scenario():
        async with redis_client(kind, redis.url, 1) as client:
            await client.call("DEL", f"counter-{kind}")
            await client.call("SET", f"text-{kind}", "abc")
            # One loop turn: the three go out together and the middle one is refused.
            before, refused, after = (
                client.call("INCR", f"counter-{kind}"),
                client.call("INCR", f"text-{kind}"),
                client.call("INCR", f"counter-{kind}"),
            )
            with pytest.raises(RedisReplyError, match="not an integer"):
                await refused
            return await before, await after

    assert asyncio.run(scenario()) == (1, 2)


def test_password_and_database_from_the_url(kind):
    async def scenario(url, plain_url):
        async with redis_client(kind, url, 1) as client:
            await client.call("SET", "where", "db3")
        # Another connection sees the key in database 3 only.
        async with redis_client(kind, plain_url.replace("/0", "/3"), 1) as other:
            found = await other.call("GET", "where")
        async with redis_client(kind, plain_url, 1) as other:
            elsewhere = await other.call("GET", "where")
        async with redis_client(kind, url.replace("s3cret", "wrong"), 1) as wrong:
            with pytest.raises(RedisError, match="invalid username-password pair"):
                await wrong.call("PING")
        return found, elsewhere

    with redis_server("--requirepass", "s3cret") as server:
        port = server.url.rsplit(":", 1)[1].split("/")[0]
        url = f"redis://:s3cret@127.0.0.1:{port}/3"
        assert asyncio.run(scenario(url, f"redis://:s3cret@127.0.0.1:{port}/0")) == (b"db3", None)


def test_error_replies_raise_and_leave_the_connection_usable(redis, kind):
    async def scenario():
        async with redis_client(kind, redis.url, 1) as client:
            await client.call("SET", "text", "abc")
            with pytest.raises(RedisReplyError, match="not an integer"):
                await client.call("INCR", "text")
            return await client.call("PING")

    assert asyncio.run(scenario()) == b"PONG"


def test_an_error_reply_carries_its_code(redis, kind):
    # The limiter tells NOSCRIPT (load the script) and LOADING, READONLY... (Redis is away) from a
    # bug by the reply's code.
    async def scenario():
        async with redis_client(kind, redis.url, 1) as client:
            with pytest.raises(RedisReplyError) as caught:
                await client.call("EVALSHA", "0" * 40, 0)
            wrong = None
            try:
                await client.call("INCR")  # a reply without a code of its own word: ERR
            except RedisReplyError as exc:
                wrong = exc
            return caught.value, wrong

    noscript, wrong_arity = asyncio.run(scenario())
    assert noscript.code == "NOSCRIPT" and str(noscript).startswith("NOSCRIPT")
    assert wrong_arity is not None and wrong_arity.code == "ERR"


def test_redis_restarted_the_next_call_reconnects(kind):
    port = free_port()

    async def scenario():
        async with redis_client(kind, f"redis://127.0.0.1:{port}/0", 1) as client:
            with redis_server(port=port):
                assert await client.call("PING") == b"PONG"
            with pytest.raises(RedisError):
                await client.call("PING")
            with redis_server(port=port):
                assert await client.call("PING") == b"PONG"

    asyncio.run(scenario())


def test_a_refused_connection_is_a_redis_error(kind):
    async def scenario():
        async with redis_client(kind, f"redis://127.0.0.1:{free_port()}/0", 1) as client:
            with pytest.raises(RedisError) as caught:
                await client.call("PING")
        return caught.value

    assert not isinstance(asyncio.run(scenario()), RedisReplyError)


def test_a_server_that_never_answers_times_out(silent_port, kind):
    async def scenario():
        async with redis_client(kind, f"redis://127.0.0.1:{silent_port}/0", 0.2) as client:
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(RedisError):
                await client.call("PING")
            return loop.time() - started

    assert asyncio.run(scenario()) < 1


def test_a_batch_times_out_even_when_its_last_caller_gave_up(silent_port, kind):
    async def scenario():
        # No database in the URL: no SELECT on connecting, so the batch itself is what goes unanswered.
        async with redis_client(kind, f"redis://127.0.0.1:{silent_port}", 0.2) as client:
            first, last = client.call("PING"), client.call("PING")  # one batch
            await asyncio.sleep(0.05)  # written; now the caller awaiting the last reply goes away
            last.cancel()
            with pytest.raises(RedisError):
                await asyncio.wait_for(first, timeout=2)

    asyncio.run(scenario())


def test_urls_that_are_not_redis_are_refused(kind):
    client = RedisClient if kind == "own" else LibraryRedisClient
    with pytest.raises(ValueError, match="redis://"):
        client("http://127.0.0.1:6379", 1)


@pytest.fixture
def limiter_on(kind, monkeypatch):
    """RateLimiter on the own client or on the library's."""
    if kind == "library":
        monkeypatch.setattr(ratelimit, "RedisClient", LibraryRedisClient)
    return kind


def test_the_limiter_loads_its_script_again_after_a_script_flush(redis, limiter_on):
    tenant = f"flushed-{limiter_on}"

    async def scenario():
        limiter = RateLimiter(redis.url, fail_closed=True)
        first, _ = await limiter.admit(tenant, 2, None, 1, 16, 0)
        await limiter.redis.call("SCRIPT", "FLUSH")
        second, _ = await limiter.admit(tenant, 2, None, 1, 16, 0)
        third, _ = await limiter.admit(tenant, 2, None, 1, 16, 0)
        await limiter.close()
        return first, second, third

    first, second, third = asyncio.run(scenario())
    assert first.allowed and second.allowed and not third.allowed and third.reason == "requests"


def test_the_limiter_counts_in_keys_that_expire(redis, limiter_on):
    tenant = f"expiring-{limiter_on}"

    async def scenario():
        limiter = RateLimiter(redis.url, fail_closed=True)
        for _ in range(3):
            await limiter.admit(tenant, 100, 10_000, 7, 16, 0)
        keys = sorted(key for key in await limiter.redis.call("KEYS", f"rl:{{{tenant}}}:*") if b"slots" not in key)
        values = [await limiter.redis.call("GET", key) for key in keys]
        ttls = [await limiter.redis.call("PTTL", key) for key in keys]
        await limiter.close()
        return keys, values, ttls

    keys, values, ttls = asyncio.run(scenario())
    # Two keys, or four if the checks straddled a minute: requests and tokens each add up either way.
    totals = {
        what: sum(int(v) for k, v in zip(keys, values, strict=True) if k.split(b":")[2] == what)
        for what in (b"r", b"t")
    }
    assert totals == {b"r": 3, b"t": 21}
    assert all(110_000 < ttl <= 120_000 for ttl in ttls), ttls


# The own client only: how it batches and defers, and what it refuses that redis-py lets through.


def test_calls_of_one_loop_turn_go_out_in_one_write(redis):
    async def scenario():
        client = RedisClient(redis.url, 1)
        await client.call("DEL", "pipelined")
        writes = []
        replies = [client.call("INCR", "pipelined") for _ in range(200)]
        # Every INCR above is queued before any is written: count what reaches the socket at once.
        original = client.protocol.transport.write
        client.protocol.transport.write = lambda data: (writes.append(data), original(data))[1]
        results = await asyncio.gather(*replies)
        client.protocol.transport.write = original
        await client.close()
        return results, writes

    results, writes = asyncio.run(scenario())
    assert results == list(range(1, 201))
    assert len(writes) == 1


def test_own_client_error_messages_say_what_failed(silent_port):
    async def scenario():
        client = RedisClient(f"redis://127.0.0.1:{silent_port}/0", 0.2)
        with pytest.raises(RedisError, match="did not answer"):
            await client.call("PING")

    asyncio.run(scenario())


def test_a_database_that_is_not_a_number_is_refused():
    # redis-py takes redis://host/cache for database 0; the gateway refuses the misconfiguration.
    with pytest.raises(ValueError, match="database must be a number"):
        RedisClient("redis://127.0.0.1:6379/cache", 1)


def test_a_deferred_command_rides_with_the_next_batch_or_goes_after_its_delay(redis):
    async def scenario():
        client = RedisClient(redis.url, 1)
        await client.call("DEL", "deferred-counter")
        first = client.defer(5.0, "INCR", "deferred-counter")
        # The next call's batch takes the deferred command along, ahead of it: no 5 s wait.
        seen_with_batch = await asyncio.wait_for(client.call("GET", "deferred-counter"), 1)
        second = client.defer(0.05, "INCR", "deferred-counter")
        alone = await asyncio.wait_for(second, 1)  # nobody else calls: it goes on its own after 50 ms
        await client.close()
        return await first, seen_with_batch, alone

    assert asyncio.run(scenario()) == (1, b"1", 2)
