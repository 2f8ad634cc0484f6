"""moto's S3 in server mode on 127.0.0.1: a real S3 wire protocol for the real boto3 client.

`MotoS3()` starts `moto.server.ThreadedMotoServer` on a free port; `bucket(name)` creates one;
`require_auth()` turns on moto's IAM authentication (unknown credentials → 403 InvalidAccessKeyId)
until `allow_all()`. moto keeps its state per process: every test uses its own bucket names.
"""

from __future__ import annotations

import contextlib
import uuid

import boto3
import httpx

from tests.fakes.base import free_port

ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"
REGION = "us-east-1"


class MotoS3:
    def __init__(self):
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        self.client = boto3.client("s3", endpoint_url=self.url, region_name=REGION,
                                   aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)

    def settings(self) -> dict:
        """The app settings that point a store at this server."""
        return {"S3_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": REGION}

    def bucket(self, prefix: str = "images") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=name)
        return name

    def objects(self, bucket: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def require_auth(self) -> None:
        httpx.post(f"{self.url}/moto-api/reset-auth", content=b"0").raise_for_status()

    def allow_all(self) -> None:
        httpx.post(f"{self.url}/moto-api/reset-auth", content=b"inf").raise_for_status()

    def stop(self) -> None:
        self.server.stop()


class GoesAwayProxy:
    """A TCP proxy to the S3 server that lets `puts` PUT requests through, then goes away: it cuts
    every connection and refuses new ones (a store that dies in the middle of writing an image)."""

    def __init__(self, target_port: int, *, puts: int):
        import socket
        import threading

        self.target_port, self.allowed, self.seen, self.gone = target_port, puts, 0, False
        self._lock = threading.Lock()
        self._sockets: list = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while not self.gone:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src, dst, from_client: bool) -> None:
        try:
            while chunk := src.recv(65536):
                if from_client and chunk.startswith(b"PUT "):
                    with self._lock:
                        self.seen += 1
                        if self.seen > self.allowed:
                            self.go_away()
                            return
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()

    def go_away(self) -> None:
        self.gone = True
        self._listener.close()
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.close()
