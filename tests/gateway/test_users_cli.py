"""`wgw users add|list` against a real PostgreSQL: argon2 hashes, scope, clear refusals."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from gateway.api.auth import PasswordHasher
from gateway.cli import main
from tests.utils.services import rows

pytestmark = pytest.mark.db


def _add(config: Path, monkeypatch: pytest.MonkeyPatch, password: str, *args: str) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    return main(["users", "add", *args, "--password-stdin", "--config", str(config)])


def test_add_stores_an_argon2_hash_and_replaces_on_second_add(
    config: Path, db_dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _add(config, monkeypatch, "natt-lösen-1", "Stina.N", "--role", "operator",
                "--org", "vallby", "--name", "Stina N") == 0  # fmt: skip
    assert "account stina.n saved" in capsys.readouterr().out
    ((role, orgs, stored),) = rows(db_dsn, "SELECT role, orgs, password_hash FROM users")
    assert isinstance(stored, str)
    assert (role, orgs) == ("operator", ["vallby"])
    assert stored.startswith("$argon2id$") and "natt-lösen-1" not in stored
    assert PasswordHasher().verify(stored, "natt-lösen-1")
    # Adding again changes role, scope and password in place.
    assert _add(config, monkeypatch, "nytt-lösen-22", "stina.n", "--role", "coordinator",
                "--org", "vallby", "--org", "ekbacken") == 0  # fmt: skip
    ((role, orgs, stored),) = rows(db_dsn, "SELECT role, orgs, password_hash FROM users")
    assert isinstance(stored, str)
    assert (role, orgs) == ("coordinator", ["vallby", "ekbacken"])
    assert PasswordHasher().verify(stored, "nytt-lösen-22")
    assert not PasswordHasher().verify(stored, "natt-lösen-1")
    capsys.readouterr()
    assert main(["users", "list", "--config", str(config)]) == 0
    listing = capsys.readouterr().out
    assert "stina.n" in listing and "coordinator" in listing and "nytt" not in listing


@pytest.mark.parametrize(
    ("password", "args", "message"),
    [
        ("kort", ("anna", "--role", "operator", "--org", "vallby"), "at least 10 characters"),
        ("långt-nog-123", ("a b", "--role", "operator", "--org", "vallby"), "user name"),
        ("långt-nog-123", ("anna", "--role", "operator", "--org", "väl by"), "--org"),
    ],
)
def test_add_refuses_bad_input_and_saves_nothing(
    config: Path,
    db_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    password: str,
    args: tuple[str, ...],
    message: str,
) -> None:
    assert _add(config, monkeypatch, password, *args) == 2
    assert message in capsys.readouterr().err
    main(["migrate", "--config", str(config)])
    assert rows(db_dsn, "SELECT username FROM users") == []
