"""`wgw users add|list`: staff accounts for the console and API."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from core.errors import ConfigError
from core.ids import is_org_id
from gateway.api.auth import PasswordHasher
from gateway.cli_support import migrated_dsn
from gateway.store.users import ALL_ORGS, Role, User, list_users, save_user

# NIST SP 800-63B (5.1.1.2) asks for at least 8 characters; a shared night-patrol
# tablet deserves a little more.
MIN_PASSWORD_LENGTH = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `users` subcommands to a parser."""
    sub = parser.add_subparsers(dest="users_command", required=True)
    add = sub.add_parser("add", help=cmd_add.__doc__)
    add.add_argument("username", help="login name: 2-64 of a-z 0-9 . _ -")
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    add.add_argument(
        "--org",
        action="append",
        required=True,
        help=f"an organisation the account may see (repeat for more; {ALL_ORGS!r} for all)",
    )
    add.add_argument("--name", default="", help="display name shown in the console")
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    add.set_defaults(func=cmd_add)
    listing = sub.add_parser("list", help=cmd_list.__doc__)
    listing.set_defaults(func=cmd_list)
    for p in (add, listing):
        p.add_argument("--config", type=Path, help="TOML settings file")


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.username}: ")
        if getpass.getpass("again: ") != password:
            raise ConfigError("the two passwords differ; nothing was saved")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    return password


def cmd_add(args: argparse.Namespace) -> int:
    """Create an account, or replace its role, organisations and password."""
    username = args.username.strip().lower()
    if not 2 <= len(username) <= 64 or not all(c.isalnum() or c in "._-" for c in username):
        raise ConfigError(f"user name {args.username!r}: use 2-64 of a-z, 0-9, '.', '_', '-'")
    orgs = tuple(dict.fromkeys(args.org))
    for org in orgs:
        if org != ALL_ORGS and not is_org_id(org):
            raise ConfigError(f"--org {org!r} is not an organisation id (A-Z a-z 0-9 . _ -)")
    user = User(username, args.name, Role(args.role), orgs)
    password_hash = PasswordHasher().hash(_password(args))
    save_user(migrated_dsn(args), user=user, password_hash=password_hash)
    print(f"account {username} saved: role {user.role.value}, organisations {', '.join(orgs)}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """List the accounts (never their passwords)."""
    for user, disabled in list_users(migrated_dsn(args)):
        state = " (disabled)" if disabled else ""
        print(f"{user.username:20} {user.role.value:12} {','.join(user.orgs)}{state}")
    return 0
