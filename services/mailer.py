"""Outgoing mail. SMTP when SMTP_HOST is set; otherwise the message goes to the server log
for the operator (the self-hosted case). Messages are written in plain-text Jinja2 templates
in assets/email/ (`compose`)."""

from __future__ import annotations

import logging
import queue
import smtplib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from services.settings import Settings

log = logging.getLogger("studio.mail")

EMAIL_TEMPLATES = Path(__file__).resolve().parent.parent / "assets" / "email"
# Plain text: nothing is escaped in a .txt template (it would show up as "&amp;" in the mail).
_templates = Environment(loader=FileSystemLoader(EMAIL_TEMPLATES), autoescape=select_autoescape(["html"]),
                         undefined=StrictUndefined)


@dataclass(frozen=True)
class Email:
    subject: str
    body: str


def compose(template: str, *, language: str | None = None, **context) -> Email:
    """The message of assets/email/<template>: a "Subject: ..." line, a blank line, then the body; in
    `language` when assets/email/<name>.<language>.txt exists (reset_password.zh-CN.txt)."""
    stem, dot, suffix = template.rpartition(".")
    localized = f"{stem}.{language}.{suffix}" if language and dot else None
    if localized and (EMAIL_TEMPLATES / localized).exists():
        template = localized
    head, _, body = _templates.get_template(template).render(**context).partition("\n\n")
    if not head.startswith("Subject: ") or "\n" in head:
        raise ValueError(f"{template} must start with one 'Subject: ...' line and a blank line")
    return Email(subject=head.removeprefix("Subject: "), body=body)


class Mailer(Protocol):
    def send(self, *, to: str, subject: str, body: str) -> None: ...


class LogMailer:
    """Writes the message to the log. Used when no SMTP server is configured."""

    def send(self, *, to: str, subject: str, body: str) -> None:
        log.warning("Email (SMTP not configured) to %s: %s\n%s", to, subject, body)


class SmtpMailer:
    def __init__(self, settings: Settings):
        self.settings = settings

    def send(self, *, to: str, subject: str, body: str) -> None:
        s = self.settings
        msg = EmailMessage()
        msg["From"] = s.smtp_from or s.smtp_user or f"no-reply@{s.smtp_host}"
        msg["To"] = to
        msg["Subject"] = subject
        msg.set_content(body)
        with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=20) as smtp:
            if s.smtp_starttls:
                smtp.starttls()
            if s.smtp_user and s.smtp_password:
                smtp.login(s.smtp_user, s.smtp_password)
            smtp.send_message(msg)


def make_mailer(settings: Settings) -> Mailer:
    return SmtpMailer(settings) if settings.smtp_host else LogMailer()


class Outbox:
    """Runs mail jobs one at a time in a background thread, so a request never waits for (or
    learns anything from) the mail server. The queue is bounded: when it is full a job is
    dropped and logged. A job's errors are logged, never raised to anyone."""

    def __init__(self, *, maxsize: int = 256):
        self._jobs: queue.Queue[Callable[[], None]] = queue.Queue(maxsize)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> bool:
        """Queue `job`; False when the queue is full and the job was dropped."""
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="studio-outbox", daemon=True)
                self._thread.start()
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            log.error("mail queue full (%d jobs): a message was dropped", self._jobs.maxsize)
            return False
        return True

    def join(self) -> None:
        """Wait until every job submitted so far has run."""
        self._jobs.join()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job()
            except Exception:
                log.exception("sending mail failed")
            finally:
                self._jobs.task_done()
