"""services/engines/sse.py: the SSE decoder the image engine's client uses gives the same events
as the openai SDK's own decoder, however the bytes are cut into chunks."""

import base64
import json

from hypothesis import given, settings
from hypothesis import strategies as st
from openai._streaming import SSEDecoder

from services.engines.sse import FastSSEDecoder, fast_sse_client

BIG = base64.b64encode(bytes(range(256)) * 400).decode()  # ~136 KB of base64, no line break in it

STREAM = (
    f"event: image_generation.partial_image\ndata: {json.dumps({'b64_json': BIG, 'partial_image_index': 0})}\n\n"
    ": a comment line\n\n"
    "event: two\r\ndata: first\r\ndata:second\r\nid: 7\r\nretry: 1500\r\n\r\n"
    "data: cr only\rdata: x\r\r"
    "data\n\n"
    "event: image_generation.completed\ndata: {\"b64_json\": \"QUJD\"}\n\n"
    "data: [DONE]\n\n"
    "data: no blank line at the very end"
).encode()


def events(decoder, chunks):
    return [(e.event, e.data, e.id, e.retry) for e in decoder.iter_bytes(iter(chunks))]


def cut(data: bytes, points: list[int]) -> list[bytes]:
    points = sorted({p % (len(data) + 1) for p in points})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def test_the_same_events_as_the_sdk_in_one_piece():
    ours = events(FastSSEDecoder(), [STREAM])
    assert ours == events(SSEDecoder(), [STREAM])
    assert [e[0] for e in ours] == ["image_generation.partial_image", "two", None, None,
                                    "image_generation.completed", None], "no event for a comment or an unfinished one"
    assert json.loads(ours[0][1])["b64_json"] == BIG
    assert ours[1] == ("two", "first\nsecond", "7", 1500)
    assert ours[2] == (None, "cr only\nx", "7", None), "the last event id carries over, as SSE says"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0), max_size=40))
def test_the_same_events_as_the_sdk_however_the_stream_is_cut(points):
    chunks = cut(STREAM, points)
    assert events(FastSSEDecoder(), chunks) == events(SSEDecoder(), [STREAM])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=400), max_size=60))
def test_line_ends_cut_between_chunks(points):
    small = b"event: a\r\ndata: 1\r\n\r\nevent: b\rdata: 2\r\revent: c\ndata: 3\n\ndata: 4\r\n\r\n"
    assert events(FastSSEDecoder(), cut(small, points)) == events(SSEDecoder(), [small])


def test_async_iteration_gives_the_same_events():
    import asyncio

    async def chunks():
        for chunk in cut(STREAM, [5, 100, 5000, 90_000, 140_000]):
            yield chunk

    async def run():
        return [(e.event, e.data) for e in [x async for x in FastSSEDecoder().aiter_bytes(chunks())]]

    assert asyncio.run(run()) == [(e[0], e[1]) for e in events(SSEDecoder(), [STREAM])]


def test_the_engine_client_streams_with_it():
    client = fast_sse_client(api_key="sk-x", base_url="http://127.0.0.1:9/v1")
    assert isinstance(client._make_sse_decoder(), FastSSEDecoder)
