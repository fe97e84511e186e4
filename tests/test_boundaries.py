"""The package boundaries: the pure half loads no I/O library, and the import linter guards it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "adapters", "rules", "gateway", "simulators", "dashboards")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

# Run in a fresh interpreter: this test process has psycopg loaded by the fixtures.
_PURE_IMPORTS = """
import sys
import gateway.pipeline, gateway.alerting, rules, adapters, core.events, core.rows
heavy = ("psycopg", "psycopg_pool", "fastapi", "gmqtt", "uvicorn", "paho", "amqtt", "nats")
print(" ".join(sorted(m for m in heavy if m in sys.modules)))
"""


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    # Wide, so that no contract name is wrapped in the middle of what is asserted.
    env = {**os.environ, "PYTHONPATH": str(cwd), "COLUMNS": "250"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_pipeline_rules_and_adapters_load_no_io_library() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PURE_IMPORTS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.split() == [], f"loaded by the pure half: {done.stdout.strip()}"


def test_the_tree_keeps_its_import_contracts() -> None:
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    """The packages' Python files and pyproject.toml (with the contracts), copied."""
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package,
            tmp_path / package,
            ignore=shutil.ignore_patterns("__pycache__", "static", "migrations"),
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def _plant(path: Path, line: str) -> None:
    text = path.read_text()
    path.write_text(text + f"\n{line}  # planted by test_boundaries\n")


def test_a_forbidden_import_breaks_the_contracts(tree_copy: Path) -> None:
    _plant(tree_copy / "adapters" / "common.py", "import psycopg")
    _plant(tree_copy / "gateway" / "pipeline.py", "from gateway.store import probe")
    done = _lint(tree_copy)
    out = done.stdout
    assert done.returncode != 0, out
    assert "adapters and rules know nothing of the runtime, storage, MQTT or HTTP BROKEN" in out
    assert "only gateway.store talks to PostgreSQL BROKEN" in out
    assert (
        "the pipeline, alerting, spool and storage seam are pure of the sources and sinks BROKEN"
        in (out)
    )
    assert "adapters.common -> psycopg" in out
    # The contracts the planted lines do not touch still hold.
    assert "only gateway.api serves HTTP KEPT" in out
