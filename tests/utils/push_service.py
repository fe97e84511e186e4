"""A stand-in push service on this machine, and a browser's subscription keys, for push tests.

No real push service is reachable from the test machines, so this takes its
place: it receives the gateway's real encrypted requests (RFC 8030), and the
test decrypts them with the subscription's private key (RFC 8291) and checks
their VAPID signature (RFC 8292), as a browser and a push service would.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import http_ece
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def b64url(data: bytes) -> str:
    """Base64url without padding, as Web Push writes keys."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    """The bytes of base64url text, padded or not."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class BrowserKeys:
    """What a browser makes when it subscribes: an ECDH P-256 pair and an auth secret."""

    private: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    @property
    def p256dh(self) -> str:
        """The public key as PushSubscription.toJSON() writes it."""
        point = self.private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return b64url(point)

    def subscription(self, endpoint: str) -> dict[str, Any]:
        """The body the console posts to /api/push/subscribe."""
        return {"endpoint": endpoint, "expirationTime": None,
                "keys": {"p256dh": self.p256dh, "auth": b64url(self.auth)}}  # fmt: skip

    def decrypt(self, body: bytes) -> dict[str, Any]:
        """The JSON a push carried, decrypted as the browser would (aes128gcm)."""
        plain = http_ece.decrypt(
            body, private_key=self.private, auth_secret=self.auth, version="aes128gcm"
        )
        data: dict[str, Any] = json.loads(plain)
        return data


@dataclass(frozen=True)
class Received:
    """One request the push service was sent."""

    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes


def vapid_claims(authorization: str, public_key: str) -> dict[str, Any]:
    """The claims of a ``vapid t=<JWT>,k=<key>`` header, after checking the JWT's ES256 signature.

    Raises if the key is not ``public_key`` or the signature does not verify.
    """
    scheme, _, params = authorization.partition(" ")
    assert scheme == "vapid", authorization
    parts = dict(p.split("=", 1) for p in params.split(","))
    assert parts["k"] == public_key
    header, claims, signature = parts["t"].split(".")
    assert json.loads(unb64url(header)) == {"typ": "JWT", "alg": "ES256"}
    raw = unb64url(signature)
    assert len(raw) == 64
    der = encode_dss_signature(int.from_bytes(raw[:32]), int.from_bytes(raw[32:]))
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(public_key))
    key.verify(der, f"{header}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))  # raises if forged
    result: dict[str, Any] = json.loads(unb64url(claims))
    return result


class PushService:
    """An HTTP endpoint that takes pushes; a path's answer is 201 unless set otherwise."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.status: dict[str, int] = {}
        # Paths whose requests are held (a push service that does not answer).
        self.held: dict[str, asyncio.Event] = {}
        self.url = ""

    def endpoint(self, name: str) -> str:
        """The endpoint URL of one subscription."""
        return f"{self.url}/push/{name}"

    def to(self, name: str) -> list[Received]:
        """What was sent to one subscription."""
        return [r for r in self.received if r.path == f"/push/{name}"]

    async def _take(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.received.append(
            Received(
                request.path,
                {k.lower(): v for k, v in request.headers.items()},
                await request.read(),
            )
        )
        if name in self.held:
            await self.held[name].wait()
        return web.Response(status=self.status.get(name, 201))

    @asynccontextmanager
    async def running(self) -> AsyncIterator[PushService]:
        """Serve on a free port of 127.0.0.1 until the block ends."""
        app = web.Application()
        app.router.add_post("/push/{name}", self._take)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        try:
            yield self
        finally:
            for event in self.held.values():
                event.set()
            await runner.cleanup()
