"""A Server-Sent Events decoder for the OpenAI SDK's streams that is cheap on events of megabytes.

GPT Image streams each partial frame and the final image as one event whose `data:` line is a
1-2 MB JSON (base64 PNG) at 1K. The SDK's own decoder scans every byte with a per-line regex and
copies the growing line chunk by chunk (about 40 ms of CPU per such event here); this one looks for
the blank line that ends an event with `bytes.find` on each new chunk, and cuts the event out of
its buffer once (a few ms). Same output: the SDK's `ServerSentEvent`s, so the SDK still parses the
events, raises stream errors and maps timeouts as before. Plugged in by `fast_sse_client`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator

_ENDS = (b"\n\n", b"\r\n\r\n", b"\r\r")


class FastSSEDecoder:
    """`openai._streaming.SSEBytesDecoder`: raw bytes in, whole events out. An event's chunks are
    kept as they came and joined once (growing one buffer copied it again and again)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []  # the current event's chunks so far (no blank line in them)
        self._last_id: str | None = None  # SSE's last event id: kept from one event to the next

    def iter_bytes(self, iterator: Iterable[bytes]) -> Iterator:
        for chunk in iterator:
            yield from self._feed(chunk)
        yield from self._finish()

    async def aiter_bytes(self, iterator: AsyncIterator[bytes]) -> AsyncIterator:
        async for chunk in iterator:
            for event in self._feed(chunk):
                yield event
        for event in self._finish():
            yield event

    def _feed(self, chunk: bytes) -> Iterator:
        parts = self._parts
        start = 0  # where the current event's bytes begin in this chunk
        if parts and chunk:
            tail = _tail(parts, 3)  # a blank line may straddle this chunk and the ones before
            end, size = _event_end(tail + chunk[:3], 0)
            if 0 <= end < len(tail):
                _drop_tail(parts, len(tail) - end)
                yield from self._emit()
                start = end + size - len(tail)
        view = memoryview(chunk)
        while True:
            end, size = _event_end(chunk, start)
            if end < 0:
                break
            parts.append(view[start:end])
            yield from self._emit()
            start = end + size
        if start < len(chunk):
            parts.append(view[start:] if start else chunk)

    def _emit(self) -> Iterator:
        block = b"".join(self._parts)  # the one copy of the event
        self._parts.clear()
        event = _event(block, self._last_id)
        if event is not None:
            self._last_id = event.id
            yield event

    def _finish(self) -> Iterator:
        self._parts.clear()  # an event without its blank line at the end of the stream is dropped (as the SDK does)
        return iter(())


def _tail(parts: list, n: int) -> bytes:
    """The last n bytes of the parts (fewer if they hold fewer)."""
    tail = b""
    for part in reversed(parts):
        tail = bytes(part[-(n - len(tail)):]) + tail
        if len(tail) >= n:
            break
    return tail


def _drop_tail(parts: list, n: int) -> None:
    """Remove the last n bytes from the parts."""
    while n > 0:
        last = parts.pop()
        if len(last) > n:
            parts.append(last[:len(last) - n])
        n -= len(last)


def _event_end(data: bytes, start: int) -> tuple[int, int]:
    """(offset, length) of the first blank line at or after `start`, (-1, 0) if none. Single-byte
    searches (memchr) first: a base64 megabyte has no line break at all."""
    if data.find(b"\r", start) < 0:
        at = data.find(b"\n", start)
        while at >= 0:
            if data[at + 1:at + 2] == b"\n":
                return at, 2
            at = data.find(b"\n", at + 1)
        return -1, 0
    best, size = -1, 0
    for end in _ENDS:
        at = data.find(end, start)
        if at >= 0 and (best < 0 or at < best):
            best, size = at, len(end)
    return best, size


def _lines(block: bytes) -> Iterator[tuple[int, int]]:
    """(start, end) of each line of an event (LF, CRLF or CR line ends)."""
    if b"\r" in block:
        start = 0
        for line in block.splitlines(keepends=True):
            yield start, start + len(line.rstrip(b"\r\n"))
            start += len(line)
        return
    start = 0
    while start < len(block):
        end = block.find(b"\n", start)
        if end < 0:
            end = len(block)
        yield start, end
        start = end + 1


def _event(block: bytes, event_id: str | None = None):
    """One event's lines (the SSE field rules: `event`, `data` (joined by newlines), `id`,
    `retry`; comments and unknown fields ignored) as the SDK's ServerSentEvent; None if empty.
    A data line is not copied until it is decoded (memoryview slices)."""
    from openai._streaming import ServerSentEvent

    view = memoryview(block)
    name, data, retry = None, [], None
    for start, end in _lines(block):
        if start == end or block[start:start + 1] == b":":
            continue
        colon = block.find(b":", start, end)
        colon = end if colon < 0 else colon
        field = block[start:colon]
        first = colon + 1
        if block[first:first + 1] == b" ":
            first += 1
        value = view[min(first, end):end]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = str(value, "utf-8")
        elif field == b"id" and b"\0" not in value:
            event_id = str(value, "utf-8")
        elif field == b"retry" and bytes(value).isdigit():
            retry = int(bytes(value))
    if not data and name is None and event_id is None and retry is None:
        return None
    text = str(data[0], "utf-8") if len(data) == 1 else b"\n".join(data).decode("utf-8")
    return ServerSentEvent(event=name, data=text, id=event_id, retry=retry)


def fast_sse_client(**client_args):
    """A synchronous `openai.OpenAI` client whose streams use FastSSEDecoder."""
    from openai import OpenAI

    class Client(OpenAI):
        def _make_sse_decoder(self):  # the SDK's hook for a bytes decoder (its SSEBytesDecoder protocol)
            return FastSSEDecoder()

    return Client(**client_args)
