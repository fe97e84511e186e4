"""`wgw users add|groups|list` against a real PostgreSQL: argon2 hashes, scope, groups, refusals."""

from __future__ import annotations

import io
from pathlib import Path

import psycopg
import pytest

from gateway.api.auth import PasswordHasher
from gateway.cli import main
from gateway.store.users import users_for_recipients
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


async def test_groups_are_set_listed_and_name_the_recipients_of_an_escalation(
    config: Path, db_dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    password = "natt-lösen-1"
    assert _add(config, monkeypatch, password, "stina.n", "--role", "operator", "--org", "vallby",
                "--group", "jour-norr", "--group", "nattledning") == 0  # fmt: skip
    assert "groups jour-norr, nattledning" in capsys.readouterr().out
    assert _add(config, monkeypatch, password, "olle.o", "--role", "operator",
                "--org", "vallby") == 0  # fmt: skip
    assert _add(config, monkeypatch, password, "sara.s", "--role", "coordinator",
                "--org", "*") == 0  # fmt: skip
    assert _add(config, monkeypatch, password, "erik.e", "--role", "coordinator",
                "--org", "ekbacken") == 0  # fmt: skip
    assert main(["users", "groups", "olle.o", "nattledning", "--config", str(config)]) == 0
    assert "account olle.o: groups nattledning" in capsys.readouterr().out
    assert main(["users", "list", "--config", str(config)]) == 0
    listing = capsys.readouterr().out
    assert "groups jour-norr,nattledning" in listing and "groups nattledning" in listing

    async with await psycopg.AsyncConnection.connect(db_dsn) as conn:

        async def named(*recipients: str) -> list[str]:
            found = await users_for_recipients(conn, org="vallby", recipients=recipients)
            return [u.username for u in found]

        # Every operator of the organisation; a coordinator of another one is not told.
        assert await named("role:operator") == ["olle.o", "stina.n"]
        assert await named("role:coordinator") == ["sara.s"]
        assert await named("group:jour-norr", "role:coordinator") == ["sara.s", "stina.n"]
        assert await named("group:nattledning", "role:operator") == ["olle.o", "stina.n"]
        assert await named("group:ingen") == []
        with pytest.raises(ValueError, match="expected a recipient"):
            await named("operator")

    # Groups cleared: nobody is in the group any more.
    assert main(["users", "groups", "olle.o", "--config", str(config)]) == 0
    assert "groups (none)" in capsys.readouterr().out
    assert rows(db_dsn, "SELECT groups FROM users WHERE username = 'olle.o'") == [([],)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["groups", "nobody", "nattledning"], "no account 'nobody'"),
        (["groups", "nobody", "Natt Ledning"], "group 'Natt Ledning' is not a group name"),
    ],
)
def test_groups_refuses_an_unknown_account_or_a_bad_name(
    config: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["users", *args, "--config", str(config)]) == 2
    assert message in capsys.readouterr().err


def test_add_refuses_a_bad_group_name(
    config: Path, db_dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _add(config, monkeypatch, "långt-nog-123", "anna", "--role", "operator",
                "--org", "vallby", "--group", "1natt") == 2  # fmt: skip
    assert "--group '1natt' is not a group name" in capsys.readouterr().err
    main(["migrate", "--config", str(config)])
    assert rows(db_dsn, "SELECT username FROM users") == []
