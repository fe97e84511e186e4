"""Log in and out, and who am I: a session cookie plus a CSRF token for changes."""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, Field

from gateway.api.deps import (
    SESSION_COOKIE,
    STORABLE,
    STRICT_BODY,
    Connection,
    Context,
    CurrentSession,
    client_address,
    log_security,
)
from gateway.store.users import (
    Role,
    User,
    create_session,
    end_session,
    find_login,
    token_digest,
    update_password_hash,
)

router = APIRouter(prefix="/api/auth", tags=["auth"])


class LoginRequest(BaseModel):
    """A user name and password."""

    model_config = STRICT_BODY

    username: str = Field(min_length=1, max_length=64, pattern=STORABLE)
    password: str = Field(min_length=1, max_length=1024, pattern=STORABLE)


class UserPublic(BaseModel):
    """The logged-in account and the token to send as X-CSRF-Token with every change."""

    username: str
    display_name: str
    role: Role
    orgs: list[str]
    # Its named groups: an alert escalated to "group:<name>" of one is escalated to it.
    groups: list[str]
    csrf_token: str

    @classmethod
    def of(cls, user: User, csrf_token: str) -> UserPublic:
        """The public form of an account with its session's CSRF token."""
        return cls(
            username=user.username,
            display_name=user.display_name,
            role=user.role,
            orgs=list(user.orgs),
            groups=list(user.groups),
            csrf_token=csrf_token,
        )


@router.post("/login", responses={401: {}, 429: {}, 503: {}})
async def login(
    body: LoginRequest, request: Request, response: Response, ctx: Context, conn: Connection
) -> UserPublic:
    """Log in; sets an HttpOnly session cookie. Repeated failures are refused for a while."""
    client = client_address(request)
    name = body.username.strip().lower()
    keys = ctx.limiter.keys(name, client)
    wait = ctx.limiter.retry_after(*keys)
    if wait > 0:
        # Counted each time; logged once per lockout (a flood must not fill the log).
        if ctx.limiter.first_refusal(*keys):
            log_security(ctx, "login_locked", account=name, address=client,
                         detail={"retry_after_s": int(wait) + 1})  # fmt: skip
        else:
            ctx.security_events.labels(event="login_locked").inc()
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many failed logins; try again in {int(wait) + 1} s",
            headers={"Retry-After": str(int(wait) + 1)},
        )
    # Counted as failed until it proves good: parallel guesses each count at once.
    attempt = ctx.limiter.failed(*keys)
    found = await find_login(conn, username=name)
    # argon2 takes a CPU for a good while: off the event loop, which carries the alerts.
    good = await asyncio.to_thread(ctx.hasher.verify, found[1] if found else None, body.password)
    if not good or found is None:
        log_security(ctx, "login_failed", account=name, address=client,
                     user=found[0] if found else None,
                     detail={"known_account": found is not None})  # fmt: skip
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong user name or password")
    user, password_hash = found
    # The account's failures are forgiven, the address's earlier ones are not:
    # one good login must not reset the count of an address trying many names.
    ctx.limiter.succeeded(attempt, forgive=keys[0], keep=keys[1])
    if ctx.hasher.needs_rehash(password_hash):
        await update_password_hash(
            conn,
            username=user.username,
            password_hash=await asyncio.to_thread(ctx.hasher.hash, body.password),
        )
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    lifetime = timedelta(hours=ctx.settings.api.session_hours)
    await create_session(
        conn,
        username=user.username,
        token=token,
        csrf_token=csrf,
        now=ctx.clock.now(),
        lifetime=lifetime,
    )
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(lifetime.total_seconds()),
        httponly=True,
        samesite="strict",
        secure=ctx.settings.api.secure_cookies,
        path="/",
    )
    return UserPublic.of(user, csrf)


@router.get("/me", responses={401: {}})
async def me(session: CurrentSession) -> UserPublic:
    """The logged-in account and its CSRF token."""
    return UserPublic.of(session.user, session.csrf_token)


@router.post("/logout", status_code=204, responses={401: {}, 403: {}})
async def logout(
    session: CurrentSession, request: Request, response: Response, ctx: Context, conn: Connection
) -> None:
    """End the session and clear its cookie."""
    token = request.cookies.get(SESSION_COOKIE, "")
    ctx.sessions.pop(token_digest(token), None)
    await end_session(conn, token=token)
    response.delete_cookie(SESSION_COOKIE, path="/")
