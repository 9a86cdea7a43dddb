"""A minimal WebSocket load client for the benchmarks: cheap enough not to be the bottleneck.

`rate(port, in_flight, duration)`: one connection keeping `in_flight` Kuzzle requests
outstanding (a new one is sent for each answer); returns answers per second.
`hold(port, count)`: opens `count` idle connections (handshake done) and returns the sockets.
Frames are built by hand (client frames masked with a fixed key, which RFC 6455 allows);
answers are counted and checked for `"status":200`, not parsed.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time

HANDSHAKE = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
             b"Connection: Upgrade\r\nSec-WebSocket-Key: "
             + base64.b64encode(os.urandom(16)) + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")


def masked_frame(data: bytes) -> bytes:
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    if len(data) < 126:
        header = bytes([0x81, 0x80 | len(data)])
    else:
        header = bytes([0x81, 0x80 | 126]) + len(data).to_bytes(2, "big")
    return header + mask + masked


class _Counter(asyncio.Protocol):
    def __init__(self, frames: list[bytes], in_flight: int) -> None:
        self.frames = frames
        self.in_flight = in_flight
        self.buffer = bytearray()
        self.upgraded = False
        self.answers = 0
        self.errors = 0  # answers whose status is not 200: the run means nothing then
        self.next = 0
        self.ready = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(HANDSHAKE)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            del buffer[:end + 4]
            self.upgraded = True
            self.ready.set_result(None)
        sent = 0
        while len(buffer) >= 2:
            length = buffer[1] & 0x7F
            start = 2
            if length == 126:
                if len(buffer) < 4:
                    break
                length, start = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                if len(buffer) < 10:
                    break
                length, start = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < start + length:
                break
            if self.running and b'"status":200,' not in buffer[start:start + length]:
                self.errors += 1
            del buffer[:start + length]
            self.answers += 1
            sent += 1
        if sent and self.running:
            self.send(sent)

    running = False

    def send(self, count: int) -> None:
        frames = self.frames
        out = []
        for _ in range(count):
            out.append(frames[self.next % len(frames)])
            self.next += 1
        self.transport.write(b"".join(out))  # type: ignore[attr-defined]


async def rate(port: int, in_flight: int, duration: float, payloads: list[bytes]) -> float:
    loop = asyncio.get_running_loop()
    frames = [masked_frame(p) for p in payloads]
    _, counter = await loop.create_connection(lambda: _Counter(frames, in_flight),
                                              "127.0.0.1", port)
    await counter.ready
    counter.running = True
    counter.send(in_flight)
    await asyncio.sleep(1.0)  # warm-up
    start_answers, started = counter.answers, time.perf_counter()
    await asyncio.sleep(duration)
    done = counter.answers - start_answers
    elapsed = time.perf_counter() - started
    counter.running = False
    counter.transport.close()
    if counter.errors:
        raise RuntimeError(f"{counter.errors} answers were not status 200")
    return done / elapsed


async def hold(port: int, count: int, batch: int = 200) -> list[asyncio.BaseTransport]:
    """`count` idle WebSocket connections, opened `batch` at a time."""
    loop = asyncio.get_running_loop()
    transports: list[asyncio.BaseTransport] = []

    async def one() -> None:
        transport, counter = await loop.create_connection(lambda: _Counter([], 0),
                                                          "127.0.0.1", port)
        await asyncio.wait_for(counter.ready, 30)
        transports.append(transport)

    for first in range(0, count, batch):
        await asyncio.gather(*(one() for _ in range(min(batch, count - first))))
    return transports
