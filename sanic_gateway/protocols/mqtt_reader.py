"""What amqtt reads from an MQTT client's socket, with a size cap and pacing in front.

amqtt reads a whole packet into memory once its fixed header has announced the length (MQTT
allows 256 MB), and starts a task for every PUBLISH it reads without waiting for any to end:
left alone, one huge packet or a flood of small ones costs the gateway memory without bound.
Every byte amqtt reads goes through `PacedReader`, which reads each packet's fixed header first:

- a packet announced longer than `max_packet_size` closes the connection (one log line)
  before a byte of its body is read;
- before a packet is read, `pace` waits while the client has as many requests received and not
  yet answered as it may (`max_in_flight`): the socket is not read meanwhile, so TCP makes the
  client wait, as over WebSocket.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from amqtt.adapters import ReaderAdapter

log = logging.getLogger("sanic_gateway.mqtt")

LENGTH_BYTES = 4  # an MQTT "remaining length" takes at most four bytes


class PacedReader(ReaderAdapter):
    """amqtt's reader for one TCP client (see the module's docstring)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 max_packet_size: int) -> None:
        self._reader, self._writer = reader, writer
        self.max_packet_size = max_packet_size
        self.pace: Callable[[], Awaitable[None]] | None = None  # set once the client is known
        self.client_id = ""  # for the log line, once known
        self._header = b""  # the fixed header read ahead, handed to amqtt first
        self._left = 0  # bytes of the current packet's body amqtt has not read yet
        self._closed = False

    async def read(self, n: int = -1) -> bytes:
        if self._closed:
            return b""  # amqtt takes it for the end of the stream and ends the session
        if not self._header and not self._left:  # a packet starts
            if self.pace is not None:
                await self.pace()
            if not await self._fixed_header():
                return b""
        if self._header:  # amqtt reads the fixed header byte by byte
            take = len(self._header) if n < 0 else n
            data, self._header = self._header[:take], self._header[take:]
            return data
        data = (await self._reader.readexactly(n) if n >= 0
                else await self._reader.read(self._left))
        self._left = max(0, self._left - len(data))
        return data

    async def _fixed_header(self) -> bool:
        """Read the packet type and its length; False (the connection closed) at the end of
        the stream, or when the length is malformed or over the cap."""
        first = await self._reader.read(1)
        if not first:
            return False
        raw, length, multiplier = bytearray(first), 0, 1
        try:
            for _ in range(LENGTH_BYTES):
                byte = (await self._reader.readexactly(1))[0]
                raw.append(byte)
                length += (byte & 0x7F) * multiplier
                if not byte & 0x80:
                    break
                multiplier *= 128
            else:
                self._refuse("a packet whose length is malformed")
                return False
        except asyncio.CancelledError:  # amqtt's keep-alive timeout, mid-header: out of step
            self._refuse("half a packet header, then nothing")
            raise
        if length > self.max_packet_size:
            self._refuse(f"a packet of {length} bytes, over "
                         f"server.protocols.mqtt.max_packet_size ({self.max_packet_size})")
            return False
        self._header, self._left = bytes(raw), length
        return True

    def _refuse(self, what: str) -> None:
        """Close the connection without reading further; say why once."""
        self._closed = True
        peer = self._writer.get_extra_info("peername")
        who = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "?"
        if self.client_id:
            who += f" ({self.client_id})"
        log.warning("MQTT client %s sent %s: connection closed", who, what)
        self._writer.transport.abort()  # unread data waits in the socket: nothing to flush

    def feed_eof(self) -> None:
        self._reader.feed_eof()
