"""`GradioSessions`: a Gradio `session_hash` belongs to the user who first presented it, and a
session's server-side state is released as soon as nothing holds it any more.

The ownership and release bookkeeping (`_Session`, claim, release, sweep) and the body helpers
only this middleware needs (`_read_body`, `_replay`, `_json_field`, `_query`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from ui.guards.asgi import GRADIO_API, _send_json

log = logging.getLogger("studio.guards")


@dataclass
class _Session:
    owner: str
    minted: bool = False  # the hash is a /call event id: the server made it for that one call
    heartbeats: int = 0  # open /heartbeat connections (a browser tab, a live gradio_client)
    had_heartbeat: bool = False
    left: float = 0.0  # when the last heartbeat closed
    streams: int = 0  # open result streams (/queue/data, /call/<api>/<event_id>)
    seen: float = field(default_factory=time.monotonic)


class _Refused(Exception):
    def __init__(self, status: int, detail: str):
        self.status, self.detail = status, detail


class _Disconnected(Exception):
    pass


NOT_FOUND = _Refused(404, "Not found")


class GradioSessions:
    """Tie each Gradio session to its user, and release its state when nothing holds it.

    Ownership: the first signed-in user to present a `session_hash` (on queue/join, call/*, run/*,
    heartbeat, component_server) owns it; every route keyed by a session or an event (queue/data,
    heartbeat, cancel, call/<api>/<event_id>, stream/*, deep_link) answers only the owner and 404
    for anyone else, including an unknown hash. A /call without a hash gets the event id as its
    hash (Gradio's choice): it is bound to the caller before the event id reaches them.

    Memory: Gradio keeps one `SessionState` (a copy of every block's config, ~170 KiB here) per
    hash in `StateHolder.session_data` and never removes one: a closed heartbeat only marks it
    closed and its `gr.State` values expire, the entry itself leaves only when
    `state_session_capacity` (10,000) evicts the least recently used. Lowering that capacity
    was rejected: under a flood of API calls it evicts live browser tabs first-come, so a tab's
    gr.State (gallery page, selection) would vanish. Instead the entry is deleted when nothing
    holds the session any more, which only this layer can see:
    - a /call session (server-minted hash) as soon as its result has been delivered;
    - a session that had a heartbeat (browser tab, gradio_client) `reconnect_seconds` after its
      last heartbeat closed (a tab whose connection blinked reconnects with the same hash and
      finds its state), once its events are delivered; while a heartbeat is open the state is
      never touched;
    - any other (a raw queue/join without heartbeat, results never fetched) after `idle_seconds`
      without use; a raw queue/join is not released at once because a browser's heartbeat may
      connect after its first events finished.
    Each user holds at most `max_per_user` sessions: a new one first evicts the user's least
    recently used idle one, and is refused with 429 if all are in use.
    """

    def __init__(self, app, *, blocks, identify: Callable[[dict], Awaitable[str | None]],
                 idle_seconds: float = 300, sweep_seconds: float = 30, reconnect_seconds: float = 15,
                 max_per_user: int = 100):
        self.app = app
        self.blocks = blocks
        self.identify = identify
        self.idle_seconds = idle_seconds
        self.sweep_seconds = sweep_seconds
        self.reconnect_seconds = reconnect_seconds
        self.max_per_user = max_per_user
        self.sessions: dict[str, _Session] = {}
        self.by_user: dict[str, set[str]] = {}
        self._sweeper: asyncio.Task | None = None

    # Gradio's structures ---------------------------------------------------------------------

    @property
    def _queue(self):
        return self.blocks._queue

    def _session_of_event(self, event_id: str) -> str:
        """The session an event id belongs to, resolved the way Gradio's call/<api>/<id> route does."""
        event = self._queue.event_ids_to_events.get(event_id)
        if event is not None:
            return event.session_hash
        for session_hash, ids in list(self._queue.pending_event_ids_session.items()):
            if event_id in ids:
                return session_hash
        return event_id

    def _busy(self, session_hash: str, s: _Session) -> bool:
        if s.heartbeats or s.streams:
            return True
        return any(e.session_hash == session_hash for e in list(self._queue.event_ids_to_events.values()))

    def _delivered(self, session_hash: str) -> bool:
        return not self._queue.pending_event_ids_session.get(session_hash)

    def release(self, session_hash: str) -> None:
        """Forget a session: its state, its leftover message queue, its owner."""
        s = self.sessions.pop(session_hash, None)
        if s is not None:
            mine = self.by_user.get(s.owner, set())
            mine.discard(session_hash)
            if not mine:
                self.by_user.pop(s.owner, None)
        holder = self.blocks.state_holder
        if session_hash in holder.session_data:
            holder.delete_state(session_hash)  # runs gr.State delete callbacks
            with holder.lock:
                holder.session_data.pop(session_hash, None)
                holder.time_last_used.pop(session_hash, None)
        self._queue.pending_messages_per_session.pop(session_hash, None)
        self._queue.pending_event_ids_session.pop(session_hash, None)

    def _release_if_done(self, session_hash: str) -> None:
        """Once the last result is delivered (the event may still be winding down in the queue:
        nothing it does then reads the session's state) and no connection holds the session."""
        s = self.sessions.get(session_hash)
        if s is None or s.heartbeats or s.streams or not self._delivered(session_hash):
            return
        if s.minted:
            self.release(session_hash)
        elif s.had_heartbeat:
            wait = s.left + self.reconnect_seconds - time.monotonic()
            if wait <= 0:
                self.release(session_hash)
            else:  # a tab whose connection blinked reconnects its heartbeat with the same hash
                asyncio.get_running_loop().call_later(wait, self._release_if_done, session_hash)

    def sweep(self, now: float | None = None) -> int:
        """Release sessions idle for `idle_seconds`, and state Gradio holds for no known session."""
        now = time.monotonic() if now is None else now
        released = 0
        for session_hash, s in list(self.sessions.items()):
            if not self._busy(session_hash, s) and now - s.seen > self.idle_seconds:
                self.release(session_hash)
                released += 1
        for session_hash in list(self.blocks.state_holder.session_data):
            if session_hash not in self.sessions and not self._busy(session_hash, _Session(owner="")):
                self.release(session_hash)
                released += 1
        return released

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_seconds)
            try:
                self.sweep()
            except Exception:
                log.exception("gradio session sweep failed")

    # Ownership -------------------------------------------------------------------------------

    def _claim(self, session_hash: str, user: str | None, *, minted: bool = False) -> _Session:
        """Bind a hash to `user` (a minted one: room was made before its call was queued)."""
        if not user:
            raise _Refused(401, "Not authenticated")
        s = self.sessions.get(session_hash)
        if s is not None:
            if s.owner != user:
                raise NOT_FOUND
            s.seen = time.monotonic()
            return s
        if not minted:
            self._make_room(user)
        s = self.sessions[session_hash] = _Session(owner=user, minted=minted)
        self.by_user.setdefault(user, set()).add(session_hash)
        return s

    def _make_room(self, user: str) -> None:
        mine = self.by_user.get(user, ())
        if len(mine) < self.max_per_user:
            return
        # Sessions whose results were delivered go first, then those with results never fetched.
        mine = sorted((not self._delivered(h), self.sessions[h].seen, h) for h in mine)
        for _, _, session_hash in mine:
            if not self._busy(session_hash, self.sessions[session_hash]):
                self.release(session_hash)
                return
        raise _Refused(429, "Too many open sessions for this account. Close some tabs or clients.")

    def _owned(self, session_hash: str, user: str | None) -> _Session:
        s = self.sessions.get(session_hash)
        if not user or s is None or s.owner != user:
            raise NOT_FOUND
        s.seen = time.monotonic()
        return s

    # ASGI ------------------------------------------------------------------------------------

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(GRADIO_API + "/"):
            await self.app(scope, receive, send)
            return
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())
        route = scope["path"][len(GRADIO_API):].rstrip("/")
        parts = route.strip("/").split("/")
        method = scope["method"]
        try:
            if method == "POST" and route in ("/queue/join", "/component_server") \
                    or method == "POST" and parts[0] in ("run", "api") and len(parts) == 2:
                await self._claiming_body(scope, receive, send)
            elif method == "POST" and parts[0] == "call" and len(parts) == (3 if parts[1:2] == ["v2"] else 2):
                await self._call(scope, receive, send)
            elif method == "GET" and parts[0] == "call" and len(parts) == (4 if parts[1:2] == ["v2"] else 3):
                user = await self.identify(scope)
                await self._streaming(self._session_of_event(parts[-1]), user, scope, receive, send)
            elif method == "GET" and route == "/queue/data":
                session_hash = _query(scope, "session_hash")
                await self._streaming(session_hash, await self.identify(scope), scope, receive, send)
            elif method == "GET" and parts[0] == "heartbeat" and len(parts) == 2:
                await self._heartbeat(parts[1], scope, receive, send)
            elif method == "POST" and route == "/cancel":
                await self._cancel(scope, receive, send)
            elif parts[0] == "stream" and len(parts) >= 2:
                user = await self.identify(scope)
                session_hash = self._session_of_event(parts[1]) if method == "POST" else parts[1]
                if method == "POST" and session_hash == parts[1] and session_hash not in self.sessions:
                    raise NOT_FOUND  # an unknown event
                self._owned(session_hash, user)
                await self.app(scope, receive, send)
            elif method == "GET" and route == "/deep_link":
                self._owned(_query(scope, "session_hash"), await self.identify(scope))
                await self.app(scope, receive, send)
            else:
                await self.app(scope, receive, send)
        except _Refused as refused:
            await _send_json(send, refused.status, refused.detail)
        except _Disconnected:
            return

    async def _claiming_body(self, scope, receive, send):
        body = await _read_body(receive)
        session_hash = _json_field(body, "session_hash")
        if session_hash is not None:
            self._claim(session_hash, await self.identify(scope))
        elif scope["path"].rstrip("/").endswith("/component_server"):
            # Gradio reads the hash from a multipart body too; no component of ours needs that.
            raise _Refused(400, "A JSON body with a session_hash is required.")
        await self.app(scope, _replay(body, receive), send)

    async def _call(self, scope, receive, send):
        """POST /call/<api>: bind the hash it names, or the event id Gradio mints as its hash."""
        body = await _read_body(receive)
        user = await self.identify(scope)
        session_hash = _json_field(body, "session_hash")
        if session_hash is not None:
            self._claim(session_hash, user)
            await self.app(scope, _replay(body, receive), send)
            return
        if not user:
            raise _Refused(401, "Not authenticated")
        self._make_room(user)
        held: list[dict] = []

        async def binding_send(message):
            if message["type"] == "http.response.start":
                held.append(message)
                return
            if message["type"] == "http.response.body":
                held.append(message)
                if message.get("more_body"):
                    return
                status = held[0]["status"] if held and held[0]["type"] == "http.response.start" else 0
                if status == 200:
                    data = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
                    event_id = _json_field(data, "event_id")
                    if event_id:
                        self._claim(event_id, user, minted=True)
                for m in held:
                    await send(m)
                held.clear()
                return
            await send(message)

        await self.app(scope, _replay(body, receive), binding_send)

    async def _streaming(self, session_hash, user, scope, receive, send):
        s = self._owned(session_hash or "", user)
        s.streams += 1
        try:
            await self.app(scope, receive, send)
        finally:
            s.streams -= 1
            s.seen = time.monotonic()
            self._release_if_done(session_hash)

    async def _heartbeat(self, session_hash, scope, receive, send):
        s = self._claim(session_hash, await self.identify(scope))
        s.heartbeats += 1
        s.had_heartbeat = True
        try:
            await self.app(scope, receive, send)
        finally:
            s.heartbeats -= 1
            s.seen = s.left = time.monotonic()
            self._release_if_done(session_hash)

    async def _cancel(self, scope, receive, send):
        body = await _read_body(receive)
        user = await self.identify(scope)
        session_hash, event_id = _json_field(body, "session_hash"), _json_field(body, "event_id")
        self._owned(session_hash or "", user)
        if event_id:
            other = self._session_of_event(event_id)
            if other != session_hash and (other not in self.sessions or self.sessions[other].owner != user):
                raise NOT_FOUND  # an event of another session (Gradio would dequeue it by its id alone)
        await self.app(scope, _replay(body, receive), send)


def _query(scope, name: str) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name)
    return values[0] if values else None


def _json_field(body: bytes, name: str) -> str | None:
    try:
        value = json.loads(body).get(name)
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


async def _read_body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes, receive):
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
