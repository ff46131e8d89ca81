"""RedisClient and the limiter's script against a real redis-server: pipelining, auth, loss, timeouts."""

from __future__ import annotations

import asyncio
import socket

import pytest

from services.gateway.process import redis_server
from services.gateway.ratelimit import RateLimiter
from services.gateway.redis_client import RedisClient, RedisError, RedisReplyError
from services.mock_worker.process import free_port


def test_calls_of_one_loop_turn_go_out_together_and_answer_in_order(redis):
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


def test_password_and_database_from_the_url():
    async def scenario(url, plain_url):
        client = RedisClient(url, 1)
        await client.call("SET", "where", "db3")
        await client.close()
        # Another connection sees the key in database 3 only.
        other = RedisClient(plain_url.replace("/0", "/3"), 1)
        found = await other.call("GET", "where")
        await other.close()
        wrong = RedisClient(url.replace("s3cret", "wrong"), 1)
        with pytest.raises(RedisError, match="AUTH"):
            await wrong.call("PING")
        return found

    with redis_server("--requirepass", "s3cret") as server:
        port = server.url.rsplit(":", 1)[1].split("/")[0]
        url = f"redis://:s3cret@127.0.0.1:{port}/3"
        assert asyncio.run(scenario(url, f"redis://:s3cret@127.0.0.1:{port}/0")) == b"db3"


def test_error_replies_raise_and_leave_the_connection_usable(redis):
    async def scenario():
        client = RedisClient(redis.url, 1)
        await client.call("SET", "text", "abc")
        with pytest.raises(RedisReplyError, match="not an integer"):
            await client.call("INCR", "text")
        pong = await client.call("PING")
        await client.close()
        return pong

    assert asyncio.run(scenario()) == b"PONG"


def test_redis_restarted_the_next_call_reconnects():
    port = free_port()

    async def call(client):
        return await client.call("PING")

    async def scenario():
        client = RedisClient(f"redis://127.0.0.1:{port}/0", 1)
        with redis_server(port=port):
            assert await call(client) == b"PONG"
        with pytest.raises(RedisError):
            await call(client)
        with redis_server(port=port):
            assert await call(client) == b"PONG"
        await client.close()

    asyncio.run(scenario())


@pytest.fixture
def silent_port():
    """A port that accepts connections and never answers (the kernel completes the handshake)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    yield listener.getsockname()[1]
    listener.close()


def test_a_server_that_never_answers_times_out(silent_port):
    async def scenario():
        client = RedisClient(f"redis://127.0.0.1:{silent_port}/0", 0.2)
        with pytest.raises(RedisError, match="did not answer"):
            await client.call("PING")

    asyncio.run(scenario())


def test_a_batch_times_out_even_when_its_last_caller_gave_up(silent_port):
    async def scenario():
        # No database in the URL: no SELECT on connecting, so the batch itself is what goes unanswered.
        client = RedisClient(f"redis://127.0.0.1:{silent_port}", 0.2)
        first, last = client.call("PING"), client.call("PING")  # one batch
        await asyncio.sleep(0.05)  # written; now the caller awaiting the last reply goes away
        last.cancel()
        with pytest.raises(RedisError, match="did not answer"):
            await asyncio.wait_for(first, timeout=2)

    asyncio.run(scenario())


def test_urls_that_are_not_redis_are_refused():
    with pytest.raises(ValueError, match="redis://"):
        RedisClient("http://127.0.0.1:6379", 1)
    with pytest.raises(ValueError, match="database must be a number"):
        RedisClient("redis://127.0.0.1:6379/cache", 1)


def test_the_limiter_loads_its_script_again_after_a_script_flush(redis):
    async def scenario():
        limiter = RateLimiter(redis.url, fail_closed=True)
        first, _ = await limiter.admit("flushed-tenant", 2, None, 1, 16, 0)
        await limiter.redis.call("SCRIPT", "FLUSH")
        second, _ = await limiter.admit("flushed-tenant", 2, None, 1, 16, 0)
        third, _ = await limiter.admit("flushed-tenant", 2, None, 1, 16, 0)
        await limiter.close()
        return first, second, third

    first, second, third = asyncio.run(scenario())
    assert first.allowed and second.allowed and not third.allowed and third.reason == "requests"


def test_the_limiter_counts_in_keys_that_expire(redis):
    async def scenario():
        limiter = RateLimiter(redis.url, fail_closed=True)
        for _ in range(3):
            await limiter.admit("expiring-tenant", 100, 10_000, 7, 16, 0)
        keys = sorted(key for key in await limiter.redis.call("KEYS", "rl:{expiring-tenant}:*") if b"slots" not in key)
        values = [await limiter.redis.call("GET", key) for key in keys]
        ttls = [await limiter.redis.call("PTTL", key) for key in keys]
        await limiter.close()
        return keys, values, ttls

    keys, values, ttls = asyncio.run(scenario())
    # Two keys, or four if the checks straddled a minute: requests and tokens each add up either way.
    totals = {
        kind: sum(int(v) for k, v in zip(keys, values, strict=True) if k.split(b":")[2] == kind)
        for kind in (b"r", b"t")
    }
    assert totals == {b"r": 3, b"t": 21}
    assert all(110_000 < ttl <= 120_000 for ttl in ttls), ttls


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
