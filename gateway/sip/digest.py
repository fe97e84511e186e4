"""SIP digest authentication (RFC 2617 / RFC 7616 with MD5, as SIP units implement it).

The registry holds HA1 = MD5(device_id:realm:password), never the password.
Nonces are stateless: the issue time and an HMAC of it with a per-process
secret, so any nonce this process issued in the last few minutes is good.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time

# How long a nonce is good for; after it the unit is challenged again (stale=true).
NONCE_LIFETIME_S = 300
_PARAM = re.compile(r'([A-Za-z-]+)\s*=\s*(?:"([^"]*)"|([^\s,]+))')


def _md5(text: str) -> str:
    # MD5 is what SIP digest (RFC 2617) specifies and what alarm units implement.
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def ha1(username: str, realm: str, password: str) -> str:
    """The HA1 a registry entry holds for a device's password."""
    return _md5(f"{username}:{realm}:{password}")


class DigestAuth:
    """Issues challenges and checks Authorization headers for one realm."""

    def __init__(self, realm: str) -> None:
        self.realm = realm
        self._secret = secrets.token_bytes(32)

    def _nonce(self, issued: int) -> str:
        mac = hmac.new(self._secret, str(issued).encode(), hashlib.sha256).hexdigest()[:32]
        return f"{issued:x}.{mac}"

    def challenge(self, *, stale: bool = False) -> str:
        """A WWW-Authenticate value with a fresh nonce."""
        value = (
            f'Digest realm="{self.realm}", nonce="{self._nonce(int(time.time()))}", '
            'algorithm=MD5, qop="auth"'
        )
        return value + (", stale=true" if stale else "")

    def check(self, authorization: str | None, *, method: str, username: str, ha1: str) -> str:
        """Judge an Authorization header: "ok", "missing", "stale" or "wrong"."""
        if authorization is None or authorization[:7].lower() != "digest ":
            return "missing"
        fields = {
            m.group(1).lower(): m.group(2) or m.group(3) or ""
            for m in _PARAM.finditer(authorization[7:])
        }
        nonce = fields.get("nonce", "")
        issued_hex, _, _ = nonce.partition(".")
        try:
            issued = int(issued_hex, 16)
        except ValueError:
            return "wrong"
        if not hmac.compare_digest(self._nonce(issued), nonce):
            return "wrong"
        if fields.get("username") != username or fields.get("realm") != self.realm:
            return "wrong"
        if fields.get("algorithm", "MD5").upper() != "MD5":
            return "wrong"
        ha2 = _md5(f"{method}:{fields.get('uri', '')}")
        qop = fields.get("qop")
        if qop == "auth":
            wanted = _md5(
                f"{ha1}:{nonce}:{fields.get('nc', '')}:{fields.get('cnonce', '')}:auth:{ha2}"
            )
        elif qop is None:
            wanted = _md5(f"{ha1}:{nonce}:{ha2}")
        else:
            return "wrong"
        if not hmac.compare_digest(wanted, fields.get("response", "")):
            return "wrong"
        if time.time() - issued > NONCE_LIFETIME_S:
            return "stale"
        return "ok"
