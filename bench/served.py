"""What the benchmarks that drive the served app share: the fake OpenAI server in its own process,
`python app.py` started in a subprocess on a free port and waited for on /healthz, and the bare
Gradio peer (bench/bare_space.py) started the same way.

No pytest here: the benchmarks run on their own (`python bench/<name>.py`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


class FakeOpenAI:
    """tests/fakes/openai_server.py in its own process, steered over HTTP (`/_fake/...`)."""

    def __init__(self, *, image: str, latency: float | None = None):
        command = [sys.executable, "-m", "tests.fakes.openai_server", "--image-kind", image]
        if latency is not None:
            command += ["--latency", str(latency)]
        self.proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.url = self.proc.stdout.readline().strip()
        self.control = self.url.rsplit("/v1", 1)[0] + "/_fake"

    def config(self, **values) -> None:
        httpx.post(f"{self.control}/config", json=values, timeout=300).raise_for_status()

    def reset(self) -> None:
        httpx.post(f"{self.control}/reset", timeout=10).raise_for_status()

    def stats(self) -> dict:
        return httpx.get(f"{self.control}/stats", timeout=10).json()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


class ServedApp:
    """`python app.py` (or another `command`) with `env` (which names its port), logging to
    DATA_DIR/<log_name>; started when this returns (`ready_path` answered 200)."""

    def __init__(self, env: dict[str, str], *, data_dir: Path, timeout: float = 120, command: list[str] | None = None,
                 ready_path: str = "/healthz", log_name: str = "app.log"):
        self.data_dir = data_dir
        self.url = f"http://127.0.0.1:{env['GRADIO_SERVER_PORT']}"
        self.log_path = data_dir / log_name
        self.log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, *(command or ["app.py"])], cwd=ROOT, env={**os.environ, **env},
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.url}{ready_path}", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{' '.join(command or ['app.py'])} did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.2)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def log_tail(self, lines: int = 15) -> str:
        self.log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, *, remove: bool = False) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        if remove:
            shutil.rmtree(self.data_dir, ignore_errors=True)


class BareSpace(ServedApp):
    """bench/bare_space.py (the peer: a Gradio app that only calls the engine) on `port`, against
    the fake at `openai_url`; started when this returns (its /healthz answered 200)."""

    def __init__(self, *, port: int, openai_url: str, data_dir: Path, concurrency: int = 64, timeout: float = 120):
        env = {"GRADIO_SERVER_PORT": str(port), "GRADIO_TEMP_DIR": str(data_dir / "gradio"),
               "GRADIO_ANALYTICS_ENABLED": "False"}
        super().__init__(env, data_dir=data_dir, timeout=timeout, log_name="bare_space.log",
                         command=["bench/bare_space.py", "--port", str(port), "--openai-base-url", openai_url,
                                  "--concurrency", str(concurrency)])
