"""What the browser tests share: Debian's chromium driven by Playwright for Python (launched by
path: never `playwright install`, which downloads a browser and fails here), the skip when it is
not installed (.ci/run installs it), and the `shots` and `browser` fixtures (tests/e2e/conftest.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update"]

needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason="Debian's chromium is not installed (.ci/run installs it)")
