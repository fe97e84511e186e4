"""`wgw users add|groups|list`: staff accounts for the console and API."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from core.errors import ConfigError
from core.ids import is_org_id
from gateway.api.auth import PasswordHasher
from gateway.cli_support import migrated_dsn
from gateway.store.users import ALL_ORGS, Role, User, list_users, save_user, set_groups
from rules.model import GROUP_NAME_PATTERN, is_group_name

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
        "--group",
        action="append",
        default=[],
        help="a named group the account is in, which an escalation tier may name as "
        "'group:<name>' (repeat for more)",
    )
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    add.set_defaults(func=cmd_add)
    groups = sub.add_parser("groups", help=cmd_groups.__doc__)
    groups.add_argument("username", help="the account")
    groups.add_argument("group", nargs="*", help="its groups from now on (none: no groups)")
    groups.set_defaults(func=cmd_groups)
    listing = sub.add_parser("list", help=cmd_list.__doc__)
    listing.set_defaults(func=cmd_list)
    for p in (add, groups, listing):
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
    user = User(username, args.name, Role(args.role), orgs, _groups(args.group, "--group"))
    password_hash = PasswordHasher().hash(_password(args))
    save_user(migrated_dsn(args), user=user, password_hash=password_hash)
    in_groups = f", groups {', '.join(user.groups)}" if user.groups else ""
    print(
        f"account {username} saved: role {user.role.value}, "
        f"organisations {', '.join(orgs)}{in_groups}"
    )
    return 0


def _groups(names: list[str], what: str) -> tuple[str, ...]:
    groups = tuple(dict.fromkeys(names))
    for name in groups:
        if not is_group_name(name):
            raise ConfigError(
                f"{what} {name!r} is not a group name: use a-z, 0-9, '_' and '-', starting "
                f"with a letter, at most 64 ({GROUP_NAME_PATTERN})"
            )
    return groups


def cmd_groups(args: argparse.Namespace) -> int:
    """Set the named groups an account is in (escalations name them as 'group:<name>')."""
    username = args.username.strip().lower()
    groups = _groups(args.group, "group")
    if not set_groups(migrated_dsn(args), username=username, groups=groups):
        raise ConfigError(f"no account {username!r}; create it with `wgw users add` first")
    print(f"account {username}: groups {', '.join(groups) or '(none)'}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """List the accounts (never their passwords)."""
    for user, disabled in list_users(migrated_dsn(args)):
        state = " (disabled)" if disabled else ""
        groups = f" groups {','.join(user.groups)}" if user.groups else ""
        print(f"{user.username:20} {user.role.value:12} {','.join(user.orgs)}{groups}{state}")
    return 0
