"""Guards in front of the web layer: plain ASGI middlewares, no business logic.

- `BodyLimit` (body_limit.py): every request body has a ceiling by route class, enforced before
  it is read.
- `Uploads` (uploads.py): Gradio's upload route only for signed-in users (reference images),
  capped by `BodyLimit` at `upload_cap(REFERENCE_MAX_BYTES, REFERENCE_MAX_IMAGES)`; other upload
  routes refused.
- `GradioSessions` (sessions.py): a Gradio `session_hash` belongs to the user who first presented
  it, and a session's server-side state is released as soon as nothing holds it any more.
- `Busy` (busy.py): a full queue (QUEUE_MAX_SIZE waiting events) answers 503 with the studio's
  "busy, try again in a moment" and `Retry-After`.
- asgi.py: what they share (the Gradio API prefix, reading a header, a JSON answer).

They are wired in `app.create_app`; `identify(scope)` (the signed-in user's id, from the request
on the server) is handed in from there, so nothing here knows about accounts or the database.
"""

from ui.guards.body_limit import BodyLimit, BodyLimits
from ui.guards.busy import BUSY, Busy
from ui.guards.sessions import GradioSessions
from ui.guards.uploads import UPLOAD_ROUTES, Uploads, upload_cap

__all__ = ["BUSY", "UPLOAD_ROUTES", "BodyLimit", "Busy", "BodyLimits", "GradioSessions", "Uploads", "upload_cap"]
