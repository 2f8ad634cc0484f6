"""Logging set-up: plain text (default) or `LOG_FORMAT=json`, one JSON object per line carrying the
request id that ui/observability.py sets for each HTTP request (and echoes as `X-Request-ID`)."""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Our own modules note what they do; libraries (alembic, httpx, …) speak only to warn.
OURS = ("studio", "services", "ui")


class RequestIdFilter(logging.Filter):
    """Adds `record.request_id` (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def logging_config(log_format: str = "text") -> dict:
    """A logging.config.dictConfig for the whole process, uvicorn's loggers included (uvicorn's
    start-up chatter only at WARNING; its access log stays at INFO)."""
    formatter = {"()": JsonFormatter} if log_format == "json" else {"format": TEXT_FORMAT}
    handler = {"class": "logging.StreamHandler", "formatter": "main", "filters": ["request_id"],
               "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"main": formatter},
        # As uvicorn does by default: the access log on stdout, everything else on stderr.
        "handlers": {"main": handler, "access": {**handler, "stream": "ext://sys.stdout"}},
        "root": {"level": "WARNING", "handlers": ["main"]},
        "loggers": {
            **{name: {"level": "INFO"} for name in OURS},
            "uvicorn": {"level": "WARNING", "handlers": ["main"], "propagate": False},
            "uvicorn.error": {"level": "WARNING"},
            "uvicorn.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
        },
    }
