"""A scripted HTTP server on loopback for the upstream client's tests, and the calls they make to it."""

from __future__ import annotations

import asyncio

OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


class Server:
    """A loopback server whose connections are handled by `handler(reader, writer, server)`."""

    def __init__(self, handler) -> None:
        self.handler = handler
        self.connections = 0
        self.ended = 0  # connections whose handler returned or whose client hung up
        self.requests: list[bytes] = []

    async def __aenter__(self) -> Server:
        async def serve(reader, writer):
            self.connections += 1
            try:
                await self.handler(reader, writer, self)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                self.ended += 1
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

    async def wait_ended(self, count: int, timeout: float = 2.0) -> None:
        async def ended():
            while self.ended < count:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(ended(), timeout)


async def keep_alive(reader, writer, server):
    while True:
        await server.read_request(reader)
        writer.write(OK)


async def endless(reader, writer, server):
    await server.read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    while True:
        writer.write(b"1\r\nx\r\n")
        await writer.drain()
        await asyncio.sleep(0.01)


def post(client, url: str, body: bytes = b'{"x":1}'):
    return client.post(url, "/v1/chat/completions", body, [(b"content-type", b"application/json")])


async def answers(client, url: str, count: int = 2) -> list[tuple[int, bytes]]:
    """`count` requests one after the other on `client`: each one's (status, body)."""
    got = []
    for _ in range(count):
        response = await post(client, url)
        got.append((response.status, await response.read()))
        response.release()
    return got
