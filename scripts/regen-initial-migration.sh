#!/usr/bin/env bash
# Development only, until the first release: rebuild alembic/versions/0001_initial.py from the models.
# After the first release every schema change is a new migration (alembic revision --autogenerate).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
tmp=$(mktemp -d)
rm -f alembic/versions/0001_initial.py
$PY - "$tmp" <<'PY'
import sys
from alembic import command
from services.db import alembic_config
cfg = alembic_config(f"sqlite:///{sys.argv[1]}/empty.db")
command.revision(cfg, message="initial", autogenerate=True, rev_id="0001")
PY
rm -rf "$tmp"
ls alembic/versions
