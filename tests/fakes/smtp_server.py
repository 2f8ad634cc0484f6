"""A tiny SMTP sink on 127.0.0.1 for tests: speaks enough SMTP for smtplib (EHLO, AUTH PLAIN,
MAIL, RCPT, DATA, QUIT) and keeps every message it receives."""

from __future__ import annotations

import base64
import socketserver
from email import message_from_bytes, policy
from email.message import Message

from tests.fakes.base import LoopbackServer, TCPServer


class _Handler(socketserver.StreamRequestHandler):
    def send(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        server: FakeSMTP = self.server.fake  # type: ignore[attr-defined]
        self.send("220 fake-smtp ready")
        envelope: dict = {"rcpt": []}
        while line := self.rfile.readline():
            command = line.decode().strip()
            verb = command.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self.send("250-fake-smtp")
                self.send("250 AUTH PLAIN")
            elif verb == "AUTH":
                _authzid, user, password = base64.b64decode(command.split()[2]).decode().split("\0")
                server.logins.append((user, password))
                self.send("235 ok")
            elif verb == "MAIL":
                envelope = {"from": command[10:].strip("<>"), "rcpt": []}
                self.send("250 ok")
            elif verb == "RCPT":
                envelope["rcpt"].append(command[8:].strip("<>"))
                self.send("250 ok")
            elif verb == "DATA":
                self.send("354 end with .")
                body = b""
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    body += chunk[1:] if chunk.startswith(b"..") else chunk
                server.messages.append(message_from_bytes(body, policy=policy.default))
                self.send("250 queued")
            elif verb == "QUIT":
                self.send("221 bye")
                return
            else:
                self.send("250 ok")


class FakeSMTP(LoopbackServer):
    handler = _Handler
    server_class = TCPServer

    def __init__(self):
        self.messages: list[Message] = []
        self.logins: list[tuple[str, str]] = []
