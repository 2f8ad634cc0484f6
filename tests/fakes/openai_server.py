"""A small OpenAI-compatible HTTP server on 127.0.0.1 for tests and benchmarks.

It speaks the real wire protocol, so the real `openai` SDK talks to it through `base_url`:

    POST /v1/images/generations   JSON  → {"created", "data": [{"b64_json"}], "usage", "size", ...}
                                  with "stream": true, Server-Sent Events as the real API sends them:
                                  `event: image_generation.partial_image` (b64_json, partial_image_index,
                                  size, quality, background, output_format, created_at) once per
                                  `partial_images`, then `event: image_generation.completed` (+ usage);
                                  the latency is spread evenly over the frames
    POST /v1/images/edits         multipart (`image[]` 1..16 PNG/JPEG/WebP files under 50 MB each, an
                                  optional PNG `mask` with an alpha channel and the first image's size,
                                  checked as the real API does: 400 invalid_request_error otherwise) →
                                  the same shape; streamed with `image_edit.partial_image` / `.completed`.
                                  What arrived is kept in `edits` (the images' and mask's bytes, in order)
    POST /v1/moderations          JSON  → {"id", "model", "results": [{"flagged", "categories", ...}]}

Switchable behaviour: `latency` (seconds before answering), `fail(mode, times=None)` with mode one
of "error_500", "rate_limit" (429), "moderation_blocked", "content_policy_violation",
"garbage_base64", "not_an_image", "hang" (never answers in time), "no_data", "cut_stream" (a streamed
request gets one partial frame, then the connection drops mid-body); `moderation_fail`
makes /v1/moderations answer 500. Prompts containing any of `flag_words` are flagged by the
moderation endpoint. Every request is recorded (`requests`, `calls(path)`), the greatest
number of image requests in flight at once is kept in `max_in_flight`, and the order in which
image requests start and end in `timeline`. `hold()` keeps image requests in flight until the
test `release()`s them, and `wait_until(predicate)` waits for a state: overlap is then shown
by counts and order, not by a latency and a stopwatch. `partials_sent` records when each partial
frame left (wall clock, request number, frame index), for the preview-latency benchmark.

Run on its own (e.g. for benchmarks, so its CPU use is not the app's GIL's):
`python -m tests.fakes.openai_server --image-kind photo` prints its base URL, then serves; it
is steered over HTTP: `POST /_fake/config` {"latency", "fail", "times", "moderation_fail"},
`POST /_fake/reset`, `GET /_fake/stats` → {"max_in_flight", "calls": {path: n}, "partials_sent"}.

Sizes are checked as the real API does (independently of services/sizing.py): gpt-image-2 /
2.5 take any WxH with both sides divisible by 16, ratio within 1:3..3:1, at most 3840x2160 pixels
and 3840 per edge; other models take only 1024x1024, 1536x1024, 1024x1536 or auto.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP

import numpy as np
from PIL import Image

from tests.fakes.base import JSONHandler, LoopbackServer

FIXED_SIZES = {(1024, 1024), (1536, 1024), (1024, 1536)}
EDIT_MAX_IMAGES = 16
EDIT_MAX_BYTES = 50 * 1024 * 1024
FLEXIBLE_PREFIXES = ("gpt-image-2-", "gpt-image-2.5-")
FAIL_MODES = ("error_500", "rate_limit", "moderation_blocked", "content_policy_violation", "garbage_base64",
              "not_an_image", "hang", "no_data", "cut_stream")
MODERATION_CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
    "self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "sexual/minors", "violence",
    "violence/graphic",
)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict
    body: dict = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)
    files: dict = field(default_factory=dict)  # multipart field → [(filename, content type, bytes)]


@dataclass
class ReceivedEdit:
    """What one /v1/images/edits request carried: the images' bytes in order, the mask's, the fields."""

    images: list[bytes]
    mask: bytes | None
    fields: dict
    names: list[str] = field(default_factory=list)


def size_error(model: str, size: str) -> str | None:
    """None when the real API would accept `size` for `model`, else its complaint."""
    if size == "auto":
        return None
    try:
        w, h = (int(p) for p in size.lower().split("x"))
    except ValueError:
        return f"Invalid size '{size}'."
    if model == "gpt-image-2" or model.startswith(FLEXIBLE_PREFIXES):
        if w % 16 or h % 16:
            return f"Invalid size '{size}': width and height must be divisible by 16."
        if max(w, h) > 3 * min(w, h):
            return f"Invalid size '{size}': aspect ratio must be between 1:3 and 3:1."
        if w * h > 3840 * 2160 or max(w, h) > 3840:
            return f"Invalid size '{size}': at most 3840x2160 pixels."
        return None
    if (w, h) not in FIXED_SIZES:
        return f"Invalid size '{size}' for {model}: supported sizes are 1024x1024, 1536x1024, 1024x1536 and auto."
    return None


def edit_problem(files: dict) -> tuple[str, str] | None:
    """(message, param) when the real API would refuse these edit uploads, else None."""
    images = files.get("image[]", []) + files.get("image", [])
    if not images:
        return "image is required", "image"
    if len(images) > EDIT_MAX_IMAGES:
        return f"Too many images: {len(images)}; at most {EDIT_MAX_IMAGES}.", "image"
    sizes = []
    for index, (_, _, data) in enumerate(images):
        if len(data) > EDIT_MAX_BYTES:
            return f"image[{index}] is larger than 50 MB.", "image"
        try:
            with Image.open(io.BytesIO(data), formats=("PNG", "JPEG", "WEBP")) as image:
                image.load()
                sizes.append(image.size)
        except Exception:  # noqa: BLE001 - anything unreadable is what the API refuses
            return f"Invalid image file for image[{index}]: use PNG, JPEG or WebP.", "image"
    masks = files.get("mask", [])
    if masks:
        try:
            with Image.open(io.BytesIO(masks[0][2]), formats=("PNG",)) as mask:
                mask.load()
                if mask.mode not in ("RGBA", "LA", "PA") and "transparency" not in mask.info:
                    return "Invalid mask: the mask must have an alpha channel.", "mask"
                if mask.size != sizes[0]:
                    return (f"Invalid mask: its size {mask.size[0]}x{mask.size[1]} must match the first image's "
                            f"{sizes[0][0]}x{sizes[0][1]}."), "mask"
        except Exception:  # noqa: BLE001
            return "Invalid mask: it must be a PNG image.", "mask"
    return None


def render_png(width: int, height: int, kind: str = "flat") -> bytes:
    """A PNG of the size asked. "flat": a plain gradient (cheap, for tests); "photo": smooth light
    and colour, mid-frequency texture and a little sensor grain (for benchmarks)."""
    if kind == "flat":
        ramp = np.linspace(30, 220, width, dtype=np.float32)
        row = np.stack([ramp, ramp[::-1], np.full(width, 128, np.float32)], axis=-1).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(np.broadcast_to(row, (height, width, 3)).copy(), "RGB").save(buf, "PNG", compress_level=1)
        return buf.getvalue()
    rng = np.random.default_rng(width * 10007 + height)
    small = rng.random((9, 16, 3)) * 255
    base = np.asarray(Image.fromarray(small.astype(np.uint8), "RGB").resize((width, height), Image.BICUBIC),
                      dtype=np.int16)
    texture = rng.random((max(2, height // 24), max(2, width // 24))) * 40
    tex = np.asarray(Image.fromarray(texture.astype(np.uint8), "L").resize((width, height), Image.BICUBIC),
                     dtype=np.int16)
    grain = rng.integers(-3, 4, size=(height, width), dtype=np.int16)
    pixels = np.clip(base + (tex + grain)[..., None] - 20, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, "PNG", compress_level=6)
    return buf.getvalue()


class FakeOpenAI(LoopbackServer):
    def __init__(self, *, flag_words: tuple[str, ...] = ("forbidden",), latency: float = 0.0,
                 image_kind: str = "flat"):
        self.flag_words = tuple(w.lower() for w in flag_words)
        self.image_kind = image_kind
        self.latency = latency
        self.hang_seconds = 30.0
        self.moderation_fail = False
        self.requests: list[Recorded] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.timeline: list[tuple[str, int]] = []  # ("start" | "end", image request number), in order
        self._mode: str | None = None
        self._mode_left: int | None = None
        self._lock = threading.RLock()  # re-entrant: a wait_until predicate may call calls()
        self._changed = threading.Condition(self._lock)
        self._released = threading.Event()
        self._gate: threading.Semaphore | None = None
        self._png_cache: dict[tuple, bytes] = {}
        self.partials_sent: list[tuple[float, int, int]] = []  # (time.time(), request number, frame index)
        self.edits: list[ReceivedEdit] = []  # what each /v1/images/edits request carried

    # Control ----------------------------------------------------------------------------------

    def stop(self) -> None:
        self._released.set()
        self.release_all()
        super().stop()

    @property
    def url(self) -> str:
        """The base_url to give the SDK (ends in /v1)."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def started(self) -> int:
        """Image requests that have reached the engine so far."""
        return sum(1 for kind, _ in self.timeline if kind == "start")

    @property
    def ended(self) -> int:
        """Image requests answered so far."""
        return sum(1 for kind, _ in self.timeline if kind == "end")

    def hold(self) -> None:
        """From now on image requests stay in flight (counted, unanswered) until `release()`d:
        a test sees how many reach the engine at once without relying on a latency."""
        with self._lock:
            self._gate = threading.Semaphore(0)

    def release(self, n: int = 1) -> None:
        """Let `n` held image requests (present or future) be answered."""
        with self._lock:
            gate = self._gate
        if gate is not None:
            gate.release(n)

    def release_all(self) -> None:
        """Answer every held request and stop holding."""
        with self._lock:
            gate, self._gate = self._gate, None
        if gate is not None:
            gate.release(10_000)

    def wait_until(self, predicate, timeout: float = 60.0) -> None:
        """Block until predicate(fake) is true (checked whenever a request starts or ends).
        The timeout only keeps a broken run from hanging; it is no performance threshold."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self), timeout=timeout):
                raise AssertionError(f"the fake never reached the expected state: in flight {self.in_flight}, "
                                     f"timeline {self.timeline}")

    def fail(self, mode: str | None, times: int | None = None) -> None:
        """Answer image requests with `mode` (None: succeed again), for `times` requests or until reset."""
        if mode is not None and mode not in FAIL_MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {FAIL_MODES}")
        with self._lock:
            self._mode, self._mode_left = mode, times

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._mode = self._mode_left = None
            self.max_in_flight = self.in_flight
            self.timeline.clear()
            self.partials_sent.clear()
            self.edits.clear()
        self.latency = 0.0
        self.moderation_fail = False

    def calls(self, path: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith(path)]

    def png(self, width: int, height: int) -> bytes:
        key = (width, height, self.image_kind)
        with self._lock:
            cached = self._png_cache.get(key)
        if cached is None:
            cached = render_png(width, height, self.image_kind)
            with self._lock:
                self._png_cache[key] = cached
        return cached

    def partial_png(self, width: int, height: int, index: int) -> bytes:
        """A rough frame of the final picture: blocky, coarse first (index 0), finer after."""
        key = (width, height, self.image_kind, "partial", index)
        with self._lock:
            cached = self._png_cache.get(key)
        if cached is None:
            final = Image.open(io.BytesIO(self.png(width, height)))
            factor = max(2, 32 >> (2 * index))
            rough = final.reduce(factor).resize((width, height), Image.NEAREST)
            buf = io.BytesIO()
            rough.save(buf, "PNG", compress_level=1)
            cached = buf.getvalue()
            with self._lock:
                self._png_cache[key] = cached
        return cached

    # Behaviour --------------------------------------------------------------------------------

    def _take_mode(self) -> str | None:
        with self._lock:
            mode = self._mode
            if mode is not None and self._mode_left is not None:
                self._mode_left -= 1
                if self._mode_left <= 0:
                    self._mode = self._mode_left = None
            return mode

    def _record(self, rec: Recorded) -> None:
        with self._lock:
            self.requests.append(rec)
            self._changed.notify_all()

    def _enter(self) -> int:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            number = self.started + 1
            self.timeline.append(("start", number))
            self._changed.notify_all()
            gate = self._gate
        if gate is not None:
            gate.acquire()
        return number

    def _leave(self, number: int) -> None:
        with self._lock:
            self.in_flight -= 1
            self.timeline.append(("end", number))
            self._changed.notify_all()

    def image_response(self, body: dict) -> tuple[int, dict, dict]:
        model = str(body.get("model") or "gpt-image-2")
        size = str(body.get("size") or "auto")
        if not body.get("prompt"):
            return 400, _error("prompt is required", "invalid_request_error", param="prompt"), {}
        problem = size_error(model, size)
        if problem:
            return 400, _error(problem, "invalid_request_error", param="size", code="invalid_value"), {}
        mode = self._take_mode()
        if _streamed(body) and mode in (None, "cut_stream", "garbage_base64", "not_an_image", "no_data"):
            return 200, {"stream": mode}, {}  # the handler streams image_events(body, mode)
        if self.latency:
            time.sleep(self.latency)
        if mode == "hang":
            self._released.wait(self.hang_seconds)
            return 504, _error("gateway timeout", "server_error"), {}
        if mode == "error_500":
            return 500, _error("The server had an error while processing your request.", "server_error"), \
                {"retry-after-ms": "10"}
        if mode == "rate_limit":
            return 429, _error("Rate limit reached for images per minute.", "requests",
                               code="rate_limit_exceeded"), {"retry-after-ms": "10"}
        if mode in ("moderation_blocked", "content_policy_violation"):
            return 400, _error("Your request was rejected by the safety system.", "image_generation_user_error",
                               code=mode), {}
        w, h = (1024, 1024) if size == "auto" else (int(p) for p in size.split("x"))
        if mode == "garbage_base64":
            b64 = "this is not base64 at all!!"
        elif mode == "not_an_image":
            b64 = base64.b64encode(b"\x00\x01 definitely not a picture " * 20).decode()
        else:
            b64 = base64.b64encode(self.png(w, h)).decode()
        data = [] if mode == "no_data" else [{"b64_json": b64}]
        usage = {"input_tokens": 42, "input_tokens_details": {"image_tokens": 0, "text_tokens": 42},
                 "output_tokens": w * h // 256, "total_tokens": 42 + w * h // 256,
                 "output_tokens_details": {"image_tokens": w * h // 256, "text_tokens": 0}}
        return 200, {"created": int(time.time()), "data": data, "usage": usage, "size": f"{w}x{h}",
                     "output_format": "png", "quality": "medium", "background": "opaque"}, {}

    def image_events(self, body: dict, mode: str | None, kind: str = "image_generation"):
        """The SSE events of a streamed request, each yielded when it is due (the latency spread
        over the frames); the generator's caller writes them. "cut_stream" stops after one frame.
        `kind`: "image_generation" or "image_edit" (the events' type prefix)."""
        size = str(body.get("size") or "auto")
        w, h = (1024, 1024) if size == "auto" else (int(p) for p in size.split("x"))
        frames = min(max(int(body.get("partial_images") or 0), 0), 3)
        common = {"size": f"{w}x{h}", "quality": "medium", "background": "opaque", "output_format": "png"}
        step = self.latency / (frames + 1) if self.latency else 0.0
        if mode in ("garbage_base64", "not_an_image", "no_data"):
            frames = 0  # these are about the final image: straight to it
        for index in range(frames):
            if step:
                time.sleep(step)
            b64 = base64.b64encode(self.partial_png(w, h, index)).decode()
            yield f"{kind}.partial_image", {
                "type": f"{kind}.partial_image", "b64_json": b64, "partial_image_index": index,
                "created_at": int(time.time()), **common}
            if mode == "cut_stream":
                return
        if mode == "cut_stream":  # no partial frame asked for: cut before the final one
            return
        if step:
            time.sleep(step)
        if mode == "no_data":  # a completed event without the image
            b64 = ""
        elif mode == "garbage_base64":
            b64 = "this is not base64 at all!!"
        elif mode == "not_an_image":
            b64 = base64.b64encode(b"\x00\x01 definitely not a picture " * 20).decode()
        else:
            b64 = base64.b64encode(self.png(w, h)).decode()
        usage = {"input_tokens": 42, "input_tokens_details": {"image_tokens": 0, "text_tokens": 42},
                 "output_tokens": w * h // 256, "total_tokens": 42 + w * h // 256}
        yield f"{kind}.completed", {
            "type": f"{kind}.completed", "b64_json": b64, "created_at": int(time.time()),
            "usage": usage, **common}

    def moderation_response(self, body: dict) -> tuple[int, dict, dict]:
        if self.moderation_fail:
            return 500, _error("moderation is down", "server_error"), {"retry-after-ms": "10"}
        items = body.get("input")
        if isinstance(items, list) and items and all(isinstance(i, dict) for i in items):
            return 200, self.multimodal_moderation(body, items), {}
        texts = items if isinstance(items, list) else [items]
        results = []
        for text in texts:
            text = text if isinstance(text, str) else json.dumps(text)
            flagged = any(word in text.lower() for word in self.flag_words)
            categories = {c: (flagged and c == "violence") for c in MODERATION_CATEGORIES}
            scores = {c: (0.97 if categories[c] else 0.001) for c in MODERATION_CATEGORIES}
            results.append({"flagged": flagged, "categories": categories, "category_scores": scores,
                            "category_applied_input_types": {c: ["text"] for c in MODERATION_CATEGORIES}})
        return 200, {"id": f"modr-{len(self.requests)}", "model": body.get("model") or "omni-moderation-latest",
                     "results": results}, {}


    def multimodal_moderation(self, body: dict, items: list[dict]) -> dict:
        """Text and images in one input (one result, as the real API answers): flagged when the
        text has a flag word or an image is almost entirely pure red (the tests' "bad picture")."""
        text_hit = any(w in str(i.get("text", "")).lower() for i in items if i.get("type") == "text" for w in self.flag_words)
        image_hit = False
        for item in items:
            if item.get("type") != "image_url":
                continue
            url = str((item.get("image_url") or {}).get("url", ""))
            header, _, b64 = url.partition(",")
            if not header.startswith("data:image/") or not b64:
                return {"error": "bad image url"}  # never reached by our client; visible if it were
            with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
                r, g, b = (float(c) for c in np.asarray(image.convert("RGB"), dtype=np.float32).mean(axis=(0, 1)))
            image_hit = image_hit or (r > 230 and g < 25 and b < 25)
        categories = {c: (c == "violence" and text_hit) or (c == "violence/graphic" and image_hit)
                      for c in MODERATION_CATEGORIES}
        scores = {c: (0.97 if categories[c] else 0.001) for c in MODERATION_CATEGORIES}
        applied = {c: ["text", "image"] if c in ("violence", "violence/graphic", "sexual", "self-harm") else ["text"]
                   for c in MODERATION_CATEGORIES}
        return {"id": f"modr-{len(self.requests)}", "model": body.get("model") or "omni-moderation-latest",
                "results": [{"flagged": text_hit or image_hit, "categories": categories,
                             "category_scores": scores, "category_applied_input_types": applied}]}


def _error(message: str, type_: str, *, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class _Handler(JSONHandler):
    fake: FakeOpenAI

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        fake = self.fake
        if self.path.split("?", 1)[0] != "/_fake/stats":
            return self._send(404, _error("Unknown path", "invalid_request_error"))
        with fake._lock:
            calls: dict[str, int] = {}
            for r in fake.requests:
                calls[r.path] = calls.get(r.path, 0) + 1
            return self._send(200, {"max_in_flight": fake.max_in_flight, "calls": calls,
                                    "partials_sent": list(fake.partials_sent)})

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        fake = self.fake
        raw = self.read_body()
        path = self.path.split("?", 1)[0]
        if path.startswith("/_fake/"):
            return self._control(path, json.loads(raw or b"{}"))
        if not (self.headers.get("authorization") or "").startswith("Bearer "):
            return self._send(401, _error("Missing API key.", "invalid_request_error", code="invalid_api_key"))
        content_type = self.headers.get("content-type") or ""
        files: dict = {}
        try:
            if content_type.startswith("multipart/"):
                body, files = _multipart(content_type, raw)
            else:
                body = json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError):
            return self._send(400, _error("Could not parse the request body.", "invalid_request_error"))
        fake._record(Recorded(method="POST", path=path, headers=dict(self.headers.items()), body=body, files=files))
        edit = path.endswith("/images/edits")
        if edit:
            problem = edit_problem(files)
            if problem:
                return self._send(400, _error(problem[0], "invalid_request_error", param=problem[1],
                                              code="invalid_value"))
            images = files.get("image[]", []) + files.get("image", [])
            with fake._lock:
                fake.edits.append(ReceivedEdit(images=[data for _, _, data in images],
                                               mask=files["mask"][0][2] if files.get("mask") else None,
                                               fields=dict(body), names=[name for name, _, _ in images]))
        if path.endswith("/images/generations") or edit:
            number = fake._enter()
            try:
                status, payload, headers = fake.image_response(body)
                if status == 200 and _streamed(body):
                    return self._stream(fake.image_events(body, payload["stream"],
                                                          "image_edit" if edit else "image_generation"),
                                        number, cut=payload["stream"] == "cut_stream")
            finally:
                fake._leave(number)
        elif path.endswith("/moderations"):
            status, payload, headers = fake.moderation_response(body)
        else:
            status, payload, headers = 404, _error(f"Unknown path {path}", "invalid_request_error"), {}
        self._send(status, payload, headers)

    def _control(self, path: str, body: dict) -> None:
        fake = self.fake
        if path == "/_fake/reset":
            fake.reset()
        elif path == "/_fake/config":
            if "latency" in body:
                fake.latency = float(body["latency"])
            if "fail" in body:
                fake.fail(body["fail"], body.get("times"))
            if "moderation_fail" in body:
                fake.moderation_fail = bool(body["moderation_fail"])
            for w, h in body.get("warm", []):
                fake.png(int(w), int(h))
        else:
            return self._send(404, _error("Unknown control path", "invalid_request_error"))
        self._send(200, {"ok": True})

    def _stream(self, events, number: int, *, cut: bool) -> None:
        """Server-Sent Events in chunked encoding, each written as soon as it is due. A cut
        stream closes the connection without the final chunk (the client sees a broken body)."""
        try:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream; charset=utf-8")
            self.send_header("transfer-encoding", "chunked")
            self.send_header("x-request-id", f"req_fake_stream_{number}")
            self.end_headers()
            for name, data in events:
                chunk = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
                if name.endswith(".partial_image"):
                    with self.fake._lock:
                        self.fake.partials_sent.append((time.time(), number, data["partial_image_index"]))
            if cut:
                self.close_connection = True
                return
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up
            self.close_connection = True

    def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
        self.send_json(status, payload, {"x-request-id": f"req_fake_{id(payload):x}", **(headers or {})})


FakeOpenAI.handler = _Handler


def _streamed(body: dict) -> bool:
    return body.get("stream") in (True, "true", "True")


def _multipart(content_type: str, raw: bytes) -> tuple[dict, dict]:
    """(fields: text values, and each file field as a list of byte lengths; files: each file
    field → [(filename, content type, bytes)], in the order sent)."""
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw
    )
    fields: dict = {}
    files: dict = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if part.get_filename():
            data = part.get_payload(decode=True) or b""
            fields.setdefault(name, []).append(len(data))
            files.setdefault(name, []).append((part.get_filename(), part.get_content_type(), data))
        else:
            fields[name] = (part.get_payload(decode=True) or b"").decode()
    return fields, files


def start_fake_openai(**kwargs) -> FakeOpenAI:
    return FakeOpenAI(**kwargs).start()


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="A fake OpenAI-compatible server on 127.0.0.1.")
    parser.add_argument("--image-kind", choices=("flat", "photo"), default="flat")
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    fake = FakeOpenAI(image_kind=args.image_kind, latency=args.latency).start()
    print(fake.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
