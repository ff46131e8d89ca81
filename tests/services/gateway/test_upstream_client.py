"""UpstreamClient against scripted HTTP servers on loopback: reuse, stale keep-alives, streaming, faults."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from services.gateway.upstream_client import UpstreamClient, UpstreamError, UpstreamTimeout

OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


class Server:
    """A loopback server whose connections are handled by `handler(reader, writer, server)`."""

    def __init__(self, handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []

    async def __aenter__(self) -> Server:
        async def serve(reader, writer):
            self.connections += 1
            try:
                await self.handler(reader, writer, self)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    async def read_request(self, reader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request


async def keep_alive(reader, writer, server):
    while True:
        await server.read_request(reader)
        writer.write(OK)


def post(client: UpstreamClient, url: str, body: bytes = b'{"x":1}'):
    return client.post(url, "/v1/chat/completions", body, [(b"content-type", b"application/json")])


def test_sequential_requests_share_one_connection():
    async def scenario():
        async with Server(keep_alive) as server:
            client = UpstreamClient(1, 5)
            for _ in range(5):
                response = await post(client, server.url)
                assert (response.status, await response.read()) == (200, b"{}")
                response.release()
            client.close()
            return server

    server = asyncio.run(scenario())
    assert server.connections == 1 and len(server.requests) == 5
    first = server.requests[0]
    assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n") and b"content-length: 7\r\n" in first
    assert first.endswith(b'\r\n\r\n{"x":1}')


def test_a_kept_alive_connection_the_server_closed_is_retried_on_a_new_one():
    async def close_after_one(reader, writer, server):
        await server.read_request(reader)
        writer.write(OK)  # no "connection: close": the client keeps it, as with an idle timeout
        await writer.drain()

    async def scenario():
        async with Server(close_after_one) as server:
            client = UpstreamClient(1, 5)
            for _ in range(3):
                response = await post(client, server.url)
                assert await response.read() == b"{}"
                response.release()
                await asyncio.sleep(0.05)  # the server's close arrives while the connection is idle
            return server

    assert asyncio.run(scenario()).connections == 3


@pytest.mark.parametrize(
    ("dies_after", "sent_again"),
    [(0, True), (0.2, False)],
    ids=["broken-before-reading-it", "died-while-generating"],
)
def test_a_reused_connection_that_breaks_is_retried_only_at_once(dies_after, sent_again):
    async def drop_second_request(reader, writer, server):
        await server.read_request(reader)
        writer.write(OK)
        await server.read_request(reader)
        await asyncio.sleep(dies_after)
        writer.transport.abort()  # hang up without answering

    async def scenario():
        async with Server(drop_second_request) as server:
            client = UpstreamClient(1, 5)
            first = await post(client, server.url)
            await first.read()
            first.release()
            if sent_again:  # on a new connection, which answers
                assert await (await post(client, server.url)).read() == b"{}"
            else:  # the engine may have started generating: the caller's fallback decides, not a resend
                with pytest.raises(UpstreamError):
                    await post(client, server.url)
            return server

    server = asyncio.run(scenario())
    assert (server.connections, len(server.requests)) == ((2, 3) if sent_again else (1, 2))


def test_chunked_body_arrives_chunk_by_chunk():
    async def scenario():
        go_on = asyncio.Event()

        async def stream(reader, writer, server):
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            writer.write(b"7\r\ndata: 1\r\n")
            await go_on.wait()
            writer.write(b"7\r\ndata: 2\r\n0\r\n\r\n")

        async with Server(stream) as server:
            client = UpstreamClient(1, 5)
            response = await post(client, server.url)
            chunks = response.chunks()
            first = await chunks.__anext__()  # arrives while the server still holds the second
            go_on.set()
            rest = [chunk async for chunk in chunks]
            response.release()
            headers = response.headers(frozenset({b"transfer-encoding"}))
            return first, rest, headers, len(client.pools[server.url][0].idle)

    first, rest, headers, idle = asyncio.run(scenario())
    assert first == b"data: 1" and b"".join(rest) == b"data: 2"
    assert headers == [(b"content-type", b"text/event-stream")]
    assert idle == 1  # a cleanly ended chunked response gives its connection back


def test_a_response_released_midway_closes_its_connection():
    async def endless(reader, writer, server):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        while True:
            writer.write(b"1\r\nx\r\n")
            await writer.drain()
            await asyncio.sleep(0.01)

    async def scenario():
        async with Server(endless) as server:
            client = UpstreamClient(1, 5)
            response = await post(client, server.url)
            async for _ in response.chunks():
                break
            response.release()
            return len(client.pools[server.url][0].idle)

    assert asyncio.run(scenario()) == 0


def test_a_body_delimited_by_closing_the_connection():
    async def http10(reader, writer, server):
        await server.read_request(reader)
        writer.write(b'HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n{"a":')
        await writer.drain()
        writer.write(b"1}")

    async def scenario():
        async with Server(http10) as server:
            response = await post(UpstreamClient(1, 5), server.url)
            return await response.read()

    assert asyncio.run(scenario()) == b'{"a":1}'


def test_silence_past_the_timeout_is_an_upstream_timeout():
    async def silent(reader, writer, server):
        await server.read_request(reader)
        await asyncio.sleep(5)

    async def scenario():
        async with Server(silent) as server:
            client = UpstreamClient(1, 0.2)
            started = asyncio.get_running_loop().time()
            with pytest.raises(UpstreamTimeout):
                await post(client, server.url)
            return asyncio.get_running_loop().time() - started

    assert asyncio.run(scenario()) < 2


def test_a_stream_that_stops_mid_body_times_out_too():
    async def stalls(reader, writer, server):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\nx\r\n")
        await asyncio.sleep(5)

    async def scenario():
        async with Server(stalls) as server:
            response = await post(UpstreamClient(1, 0.2), server.url)
            with pytest.raises(UpstreamTimeout):
                async for _ in response.chunks():
                    pass

    asyncio.run(scenario())


def test_garbage_instead_of_http_is_an_upstream_error():
    async def garbage(reader, writer, server):
        await server.read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")

    async def scenario():
        async with Server(garbage) as server:
            with pytest.raises(UpstreamError):
                await post(UpstreamClient(1, 5), server.url)

    asyncio.run(scenario())


def test_a_refused_connection_is_an_upstream_error():
    async def scenario():
        with pytest.raises(UpstreamError) as caught:
            await post(UpstreamClient(1, 5), "http://127.0.0.1:9")
        assert not isinstance(caught.value, UpstreamTimeout)

    asyncio.run(scenario())


def test_a_path_prefix_in_the_upstream_url_is_kept():
    async def scenario():
        async with Server(keep_alive) as server:
            response = await post(UpstreamClient(1, 5), server.url + "/engine/")
            await response.read()
            return server.requests[0]

    assert asyncio.run(scenario()).startswith(b"POST /engine/v1/chat/completions HTTP/1.1\r\n")


def test_a_large_body_read_whole_is_not_held_back():
    size = 1024 * 1024  # well past the streaming high-water mark

    async def big(reader, writer, server):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size + b"x" * size)

    async def scenario():
        async with Server(big) as server:
            response = await post(UpstreamClient(1, 2), server.url)
            return len(await response.read())

    assert asyncio.run(scenario()) == size


def test_an_interim_1xx_response_is_skipped_and_answers_stay_with_their_requests():
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
        async with Server(continue_first) as server:
            client = UpstreamClient(1, 5)
            answers = []
            for _ in range(2):
                response = await post(client, server.url)
                answers.append((response.status, await response.read()))
                response.release()
            return answers

    assert asyncio.run(scenario()) == [(200, b"answer-1"), (200, b"answer-2")]


def test_a_close_delimited_body_cut_by_a_reset_is_an_error():
    async def reset_midway(reader, writer, server):
        await server.read_request(reader)
        writer.write(b'HTTP/1.0 200 OK\r\n\r\n{"partial": ')
        await writer.drain()
        await asyncio.sleep(0.05)
        # Linger 0: closing sends RST, not the FIN that would end the body cleanly.
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async def scenario():
        async with Server(reset_midway) as server:
            response = await post(UpstreamClient(1, 5), server.url)
            with pytest.raises(UpstreamError):
                await response.read()

    asyncio.run(scenario())


def test_a_cancelled_request_closes_its_connection():
    async def scenario():
        closed = asyncio.Event()

        async def waits_for_close(reader, writer, server):
            await server.read_request(reader)
            await reader.read(1)  # b"" once the client closes
            closed.set()

        async with Server(waits_for_close) as server:
            client = UpstreamClient(1, 30)
            task = asyncio.create_task(post(client, server.url))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.wait_for(closed.wait(), timeout=2)  # not left open until the 30 s timeout
            return client.pools[server.url][0].idle

    assert asyncio.run(scenario()) == []


def test_connections_idle_too_long_are_not_reused(monkeypatch):
    monkeypatch.setattr("services.gateway.upstream_client.IDLE_SECONDS", 0.05)

    async def scenario():
        async with Server(keep_alive) as server:
            client = UpstreamClient(1, 5)
            for pause in (0, 0.1):
                await asyncio.sleep(pause)
                response = await post(client, server.url)
                await response.read()
                response.release()
            return server

    assert asyncio.run(scenario()).connections == 2
