"""UpstreamClient against scripted HTTP servers on loopback: reuse, stale keep-alives, streaming, faults.

The contract tests state what any correct client must do and run twice: on the
gateway's own client ("own") and on an aiohttp-backed stand-in with the same interface
("library", reference_clients.py); they observe from the server's side where they can (a
connection reused or closed is what the engine sees). The edge cases and the own client's own
promises (its retry rule, idle cutoff and pool) are in test_upstream_client_edges.py.
"""

from __future__ import annotations

import asyncio

import pytest

from services.gateway.upstream_client import UpstreamError, UpstreamTimeout, UpstreamTooLarge
from tests.services.gateway.reference_clients import KINDS, upstream_client
from tests.services.gateway.upstream_server import OK, Server, answers, endless, keep_alive, post


@pytest.fixture(params=KINDS)
def kind(request) -> str:
    return request.param


# Contract: own client and library reference alike.


def test_sequential_requests_share_one_connection(kind):
    async def scenario():
        async with Server(keep_alive) as server, upstream_client(kind, 1, 5) as client:
            for _ in range(5):
                response = await post(client, server.url)
                assert (response.status, await response.read()) == (200, b"{}")
                response.release()
            return server

    server = asyncio.run(scenario())
    assert server.connections == 1 and len(server.requests) == 5
    first = server.requests[0]
    assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n") and b"\r\ncontent-length: 7\r\n" in first.lower()
    assert first.endswith(b'\r\n\r\n{"x":1}')


def test_a_kept_alive_connection_the_server_closed_is_retried_on_a_new_one(kind):
    async def close_after_one(reader, writer, server):
        await server.read_request(reader)
        writer.write(OK)  # no "connection: close": the client keeps it, as with an idle timeout
        await writer.drain()

    async def scenario():
        async with Server(close_after_one) as server, upstream_client(kind, 1, 5) as client:
            for _ in range(3):
                response = await post(client, server.url)
                assert await response.read() == b"{}"
                response.release()
                await asyncio.sleep(0.05)  # the server's close arrives while the connection is idle
            return server

    assert asyncio.run(scenario()).connections == 3


def test_chunked_body_arrives_chunk_by_chunk(kind):
    async def scenario():
        go_on = asyncio.Event()

        async def stream_then_answer(reader, writer, server):
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            writer.write(b"7\r\ndata: 1\r\n")
            await go_on.wait()
            writer.write(b"7\r\ndata: 2\r\n0\r\n\r\n")
            await keep_alive(reader, writer, server)

        async with Server(stream_then_answer) as server, upstream_client(kind, 1, 5) as client:
            response = await post(client, server.url)
            chunks = response.chunks()
            first = await chunks.__anext__()  # arrives while the server still holds the second
            go_on.set()
            rest = [chunk async for chunk in chunks]
            response.release()
            headers = response.headers(frozenset({b"transfer-encoding"}))
            again = await post(client, server.url)
            await again.read()
            again.release()
            return first, rest, headers, server.connections

    first, rest, headers, connections = asyncio.run(scenario())
    assert first == b"data: 1" and b"".join(rest) == b"data: 2"
    assert headers == [(b"content-type", b"text/event-stream")]
    assert connections == 1  # a cleanly ended chunked response leaves its connection for the next request


@pytest.mark.parametrize("give_up", ["release", "abort"])
def test_a_response_given_up_midway_closes_its_connection(kind, give_up):
    async def scenario():
        async with Server(endless) as server, upstream_client(kind, 1, 5) as client:
            response = await post(client, server.url)
            async for _ in response.chunks():
                break
            getattr(response, give_up)()
            await server.wait_ended(1)  # the engine sees the close and can stop generating
            second = await post(client, server.url)
            second.abort()
            return server.connections

    assert asyncio.run(scenario()) == 2


def test_an_error_status_is_a_response_and_keeps_the_connection(kind):
    async def busy_then_ok(reader, writer, server):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nbusy")
        await keep_alive(reader, writer, server)

    async def scenario():
        async with Server(busy_then_ok) as server, upstream_client(kind, 1, 5) as client:
            return await answers(client, server.url), server.connections

    assert asyncio.run(scenario()) == ([(503, b"busy"), (200, b"{}")], 1)


def test_a_body_delimited_by_closing_the_connection(kind):
    async def http10(reader, writer, server):
        await server.read_request(reader)
        writer.write(b'HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n{"a":')
        await writer.drain()
        writer.write(b"1}")

    async def scenario():
        async with Server(http10) as server, upstream_client(kind, 1, 5) as client:
            response = await post(client, server.url)
            return await response.read()

    assert asyncio.run(scenario()) == b'{"a":1}'


def test_silence_past_the_timeout_is_an_upstream_timeout(kind):
    async def silent(reader, writer, server):
        await server.read_request(reader)
        await asyncio.sleep(5)

    async def scenario():
        async with Server(silent) as server, upstream_client(kind, 1, 0.2) as client:
            started = asyncio.get_running_loop().time()
            with pytest.raises(UpstreamTimeout):
                await post(client, server.url)
            return asyncio.get_running_loop().time() - started

    assert asyncio.run(scenario()) < 2


def test_a_stream_that_stops_mid_body_times_out_too(kind):
    async def stalls(reader, writer, server):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\nx\r\n")
        await asyncio.sleep(5)

    async def scenario():
        async with Server(stalls) as server, upstream_client(kind, 1, 0.2) as client:
            response = await post(client, server.url)
            with pytest.raises(UpstreamTimeout):
                async for _ in response.chunks():
                    pass

    asyncio.run(scenario())


def test_a_trickle_does_not_extend_the_deadline_of_a_whole_read(kind):
    async def trickle(reader, writer, server):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n")
        for _ in range(100):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.05)

    async def scenario():
        # Each byte comes well within the 5 s idle timeout; the whole body is due 0.3 s after the request.
        async with Server(trickle) as server, upstream_client(kind, 1, 5) as client:
            response = await post(client, server.url)
            loop = asyncio.get_running_loop()
            with pytest.raises(UpstreamTimeout):
                await response.read(at=response.started + 0.3)
            return loop.time() - response.started

    assert asyncio.run(scenario()) < 1.5


def test_a_body_over_the_limit_is_upstream_too_large(kind):
    async def big(reader, writer, server):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n" + b"x" * 1000)

    async def scenario():
        async with Server(big) as server, upstream_client(kind, 1, 5) as client:
            response = await post(client, server.url)
            with pytest.raises(UpstreamTooLarge):
                await response.read(100)
            response.release()

    asyncio.run(scenario())


def test_garbage_instead_of_http_is_an_upstream_error(kind):
    async def garbage(reader, writer, server):
        await server.read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await reader.read(1)  # kept open: the client must tell from the bytes, not from a close

    async def scenario():
        async with Server(garbage) as server, upstream_client(kind, 1, 5) as client:
            with pytest.raises(UpstreamError) as caught:
                await post(client, server.url)
        return caught.value

    assert not isinstance(asyncio.run(scenario()), UpstreamTimeout)  # told at once, not after the timeout


def test_a_refused_connection_is_an_upstream_error(kind):
    async def scenario():
        async with upstream_client(kind, 1, 5) as client:
            with pytest.raises(UpstreamError) as caught:
                await post(client, "http://127.0.0.1:9")
        assert not isinstance(caught.value, UpstreamTimeout)

    asyncio.run(scenario())


def test_a_url_that_is_not_http_is_an_upstream_error(kind):
    async def scenario():
        # A live HTTP server behind the ftp:// URL: refusing it must not depend on the connection failing.
        async with Server(keep_alive) as server, upstream_client(kind, 1, 5) as client:
            with pytest.raises(UpstreamError):
                await post(client, server.url.replace("http://", "ftp://"))
            return server.connections

    assert asyncio.run(scenario()) == 0


def test_a_path_prefix_in_the_upstream_url_is_kept(kind):
    async def scenario():
        async with Server(keep_alive) as server, upstream_client(kind, 1, 5) as client:
            response = await post(client, server.url + "/engine/")
            await response.read()
            response.release()
            return server.requests[0]

    assert asyncio.run(scenario()).startswith(b"POST /engine/v1/chat/completions HTTP/1.1\r\n")


def test_a_large_body_read_whole_is_not_held_back(kind):
    size = 1024 * 1024  # well past the streaming high-water mark

    async def big(reader, writer, server):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size + b"x" * size)

    async def scenario():
        async with Server(big) as server, upstream_client(kind, 1, 2) as client:
            response = await post(client, server.url)
            return len(await response.read())

    assert asyncio.run(scenario()) == size


def test_an_interim_1xx_response_is_skipped_and_answers_stay_with_their_requests(kind):
    async def continue_first(reader, writer, server):
        n = 0
        while True:
            await server.read_request(reader)
            n += 1
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
            answer = b"answer-%d" % n
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(answer), answer))

    async def scenario():
        async with Server(continue_first) as server, upstream_client(kind, 1, 5) as client:
            return await answers(client, server.url)

    assert asyncio.run(scenario()) == [(200, b"answer-1"), (200, b"answer-2")]
