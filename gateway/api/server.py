"""Run the API beside a gateway in the same event loop, so staff actions reach its engines."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator, Mapping
from typing import Any

import uvicorn

from core.errors import ConfigError
from gateway.api.app import create_app
from gateway.api.context import ApiContext
from gateway.api.deps import log_access
from gateway.api.places import places_of
from gateway.console import Console
from gateway.push import Notifier, VapidKeys, load_vapid_keys
from gateway.service import Gateway
from gateway.sip.receiver import ScaipReceiver
from gateway.store.runtime import make_pool
from gateway.store.users import User
from rules.auditlog import Action
from rules.ruleset import Titles

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    # The gateway's own handlers stop everything in order; uvicorn must not take the signals.
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class ApiServer:
    """The HTTP server of one gateway; ``url`` is known once ``ready`` is set."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.ready = asyncio.Event()
        self.url = ""
        self.context: ApiContext | None = None
        # Read (or made) now, so a bad key stops the start with its file named.
        settings = gateway.settings
        self.push_keys: VapidKeys | None = (
            load_vapid_keys(settings) if settings.push.enabled else None
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set; starts once the gateway is ready."""
        gateway = self.gateway
        settings = gateway.settings
        ready = asyncio.create_task(gateway.ready.wait())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait([ready, stopped], return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        stopped.cancel()
        if stop.is_set():
            return  # the gateway failed to start (or was stopped) before it was ready
        assert gateway.alerting is not None
        db = settings.db
        # Its own small pool: console reads must not wait behind ingest's writes.
        pool = make_pool(db.dsn, min_size=1, max_size=max(2, db.pool_max))
        await pool.open(wait=True, timeout=db.connect_timeout_s)
        console = Console(gateway.alerting, clock=gateway.clock, metrics=gateway.metrics)
        self.context = ApiContext(
            settings=settings, pool=pool, gateway=gateway, console=console, clock=gateway.clock
        )
        api = settings.api
        config = uvicorn.Config(
            create_app(self.context),
            host=api.host,
            port=api.port,
            log_level="warning",
            lifespan="off",
            # X-Forwarded-For/-Proto only from the listed proxies (none: never).
            proxy_headers=bool(api.trusted_proxies),
            forwarded_allow_ips=[str(net) for net in api.trusted_proxies] or None,
            # A backstop: a response still open this long after stop is cut off.
            timeout_graceful_shutdown=5,
        )
        server = _Server(config)
        sock = _listen(api.host, api.port)
        push = self._notifier(self.context)
        pushing = asyncio.create_task(push.run(stop)) if push else None
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            while not server.started:
                if serving.done():
                    await serving
                    raise ConfigError(f"the API on {api.host}:{api.port} stopped at start-up")
                await asyncio.sleep(0.02)
            host, port = sock.getsockname()[:2]
            self.url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
            log.info("console and API at %s", self.url)
            self.ready.set()
            await asyncio.wait(
                [serving, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if pushing is not None:
                pushing.cancel()  # before the feed closes: its end is no falling behind
            console.feed.close()  # live streams end, so the server can finish its responses
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await serving
            if pushing is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await pushing
            await pool.close()
            sock.close()

    def _notifier(self, ctx: ApiContext) -> Notifier | None:
        """The Web Push sender of this API, fed from its console's live feed."""
        if self.push_keys is None:
            return None

        async def place(device_id: str) -> tuple[str, str]:
            return (await places_of(ctx, [device_id])).get(device_id, ("", ""))

        def record(user: User, alert: Mapping[str, Any]) -> None:
            # A push shows the alert on the phone: a read by that account, as on the stream.
            log_access(ctx, user, org=str(alert["org"]), action=Action.READ,
                       subject=str(alert["device_id"]), person=str(alert["unit"]) or None,
                       detail={"via": "push", "alert_id": str(alert["alert_id"])})  # fmt: skip

        def titles(org: str, rule_id: str) -> Titles | None:
            # The alert was raised by this organisation's engine: its rule set is there.
            found = ctx.console.alerting.rules_of(org).presentation(rule_id)
            return None if found is None else found.titles

        ctx.push = Notifier(ctx.settings.push, self.push_keys, feed=ctx.console.feed,
                            pool=ctx.pool, place=place, record=record,
                            titles=titles)  # fmt: skip
        return ctx.push


def _listen(host: str, port: int) -> socket.socket:
    """Bind the API's socket here, so a taken port is a clear configuration error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"api.port: cannot listen on {host}:{port} ({exc.strerror}); set another port "
            "under [api] in the config file or WGW_API__PORT"
        ) from exc
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def run_gateway(gateway: Gateway, stop: asyncio.Event, api: ApiServer | None) -> None:
    """Run a gateway, its API (if given) and its SCAIP receiver (if configured) until ``stop``.

    If any of them fails, all stop.
    """
    # Made first: a certificate that cannot be loaded is refused before anything starts.
    scaip = ScaipReceiver(gateway, gateway.settings.scaip) if gateway.settings.scaip else None
    tasks = [asyncio.create_task(gateway.run(stop), name="gateway")]
    if api is not None:
        tasks.append(asyncio.create_task(api.run(stop), name="api"))
    if scaip is not None:
        tasks.append(asyncio.create_task(scaip.run(stop), name="scaip"))
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                stop.set()
    finally:
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
