"""The SCAIP receiver: SIP MESSAGE from social-alarm units → the spool → 200 OK with <mrs>.

Each MESSAGE is one non-INVITE server transaction (RFC 3261 §17.2.2). The
answer is sent only after the message is fsync'd in the gateway's spool; a
retransmission within the transaction's lifetime (64*T1 = 32 s) gets the same
answer again, and one arriving while the first is still being made durable is
absorbed. After a crash the unit retransmits what got no answer; storage keeps
one event per (controller id, ref), so nothing is stored twice.
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import re
import secrets
import ssl
import time
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass

from adapters.scaip import MAX_SCAIP_BYTES, ReplyStatus, parse_mrq, reply_status_for, scaip_reply
from core.errors import ConfigError, DecodeError
from core.events import Family, RawMessage
from core.rows import DeadLetter
from gateway.config import ScaipSettings
from gateway.service import Gateway, SpoolFull
from gateway.sip import message as sip
from gateway.sip.digest import DigestAuth
from gateway.sip.message import SipError, SipMessage
from gateway.sip.transport import Listeners, Peer

log = logging.getLogger(__name__)

SCAIP_TYPE = "application/scaip+xml"
ALLOW = "MESSAGE, OPTIONS"
# RFC 3261 timers: T1 500 ms, T2 4 s; a non-INVITE transaction lives 64*T1.
T1_S = 0.5
T2_S = 4.0
TRANSACTION_S = 64 * T1_S
# What a <ref> looks like, to answer a refused document with the unit's own reference.
_REF = re.compile(rb"<ref>\s*([A-Za-z0-9]{1,16})\s*</ref>")
_MAX_FORWARDS = 70


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What to answer: a SIP status, its extra headers, and the <mrs> if there is one."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    mrs: bytes | None = None
    reply: str = "body"  # where the <mrs> goes


def tls_context(settings: ScaipSettings) -> ssl.SSLContext | None:
    """The TLS context for SIP over TLS, or None; ConfigError names the files that fail."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"scaip.tls_cert_file / scaip.tls_key_file: cannot use {settings.tls_cert_file} "
            f"with key {settings.tls_key_file} ({exc}); give a PEM certificate and its "
            "matching unencrypted PEM key"
        ) from exc
    return context


class ScaipReceiver:
    """Answers SCAIP over SIP for one gateway; run it beside the gateway with ``run``."""

    def __init__(self, gateway: Gateway, settings: ScaipSettings) -> None:
        self.gateway = gateway
        self.settings = settings
        self._tls = tls_context(settings)  # refused at start, before anything listens
        self._auth = DigestAuth(settings.realm)
        self._networks = [ipaddress.ip_network(n) for n in settings.allow_from]
        # The server transactions of the last 32 s: key → the final answer (None while it
        # is being made durable), and (expiry, key) in arrival order. 64,000 are held at
        # 2,000/s, so an entry is a str and a bytes only (~0.8 KiB, most of it the answer):
        # no object per transaction, and nothing the garbage collector has to scan.
        self._answers: dict[str, bytes | None] = {}
        self._expiry: deque[tuple[float, str]] = deque()
        self._clients: dict[str, asyncio.Event] = {}  # our MESSAGEs' branches → answered
        self.listeners = Listeners(
            self.handle,
            max_bytes=settings.max_message_bytes,
            udp_buffer_bytes=settings.udp_buffer_bytes,
        )
        self.ready = asyncio.Event()
        self._refusing = False  # answering 503 because the spool is full
        self._requests = gateway.metrics.sip_requests
        self._latency = gateway.metrics.sip_reply_latency

    async def run(self, stop: asyncio.Event) -> None:
        """Listen once the gateway is ready, until ``stop``."""
        ready = asyncio.create_task(self.gateway.ready.wait())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait([ready, stopped], return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        stopped.cancel()
        if stop.is_set():
            return
        # Everything made at start (modules, registry, rule sets) stays for the process's
        # life: frozen out of the collector, a full collection no longer scans it, and
        # its pause (70-130 ms with it, at 2,000 MESSAGE/s) no longer holds up answers.
        gc.freeze()
        s = self.settings
        try:
            await self.listeners.start(s.host, s.port, self._tls, s.tls_port)
        except OSError as exc:
            await self.listeners.close()
            raise ConfigError(
                f"scaip.port / scaip.tls_port: cannot listen on {s.host} ({exc.strerror}); "
                "set free ports under [scaip] or WGW_SCAIP__PORT"
            ) from exc
        log.info("SCAIP receiver on %s", ", ".join(self.listeners.addresses))
        self.ready.set()
        try:
            await stop.wait()
        finally:
            await self.listeners.close()

    # -- one message --------------------------------------------------------

    def handle(self, data: bytes, peer: Peer, too_large: bool) -> Awaitable[None] | None:
        """Answer one SIP message from ``peer``: at once, or the work that must wait first.

        Refusals and retransmissions are answered here and now, without a task of
        their own: under overload units retransmit everything late, and those
        repeats must stay cheap or they crowd out the new messages.
        """
        now = time.monotonic()
        self._expire(now)
        try:
            msg = sip.parse(data, stream=peer.transport != "UDP")
        except SipError as exc:
            if not self._allowed(peer.host):
                self._refuse(data, peer, self._outsider(peer), exc.partial, 403)
            elif too_large:
                self._refuse(data, peer, self._too_large(), exc.partial, 413)
            else:
                self._refuse(data, peer, ("sip_malformed", exc.detail), exc.partial, 400)
            return None
        if not self._allowed(peer.host):  # before anything else, even a response
            self._refuse(data, peer, self._outsider(peer), msg, 403)
            return None
        if not msg.method:
            self._response_arrived(msg)
            return None
        if too_large:  # answered every time: the unit must learn it, not retransmit
            self._refuse(data, peer, self._too_large(), msg, 413)
            return None
        if msg.method == "ACK":
            return None  # only INVITE has an ACK; a stray one needs no answer (RFC 3261 §17.2.3)
        # One string, not a tuple: at 2,000 messages a second 64,000 are kept (32 s).
        key = "\x1f".join(
            (msg.get("call-id") or "", str(msg.cseq[0]), msg.method, msg.branch, peer.host)
        )
        if key in self._answers:
            known = self._answers[key]
            if known is not None:
                peer.send(known)  # a retransmission: the same answer again
                self._requests[peer.transport, "retransmission"] += 1
            else:  # still being made durable: absorbed, the answer follows
                self._requests[peer.transport, "absorbed"] += 1
            return None
        self._answers[key] = None
        self._expiry.append((now + TRANSACTION_S, key))
        return self._answer(msg, data, peer, key, now)

    async def _answer(self, msg: SipMessage, data: bytes, peer: Peer, key: str, now: float) -> None:
        """Decide a new transaction's answer (a 200 OK only once spooled), send and keep it."""
        try:
            outcome = await self._outcome(msg, data, peer)
        except Exception as exc:
            # A bug must cost this one message (kept, with its bytes), not the receiver;
            # the unit may try again, and gets the same 500 within the transaction.
            log.exception("SCAIP receiver failed on a message from %s", peer.host)
            self._dead(data, peer, "sip_internal_error", f"{type(exc).__name__}: {exc}")
            outcome = _Outcome(500)
        tag = secrets.token_hex(6)
        if outcome.mrs is not None and outcome.reply == "body":
            answer = sip.response(
                msg,
                outcome.status,
                to_tag=tag,
                body=outcome.mrs,
                headers=(("content-type", SCAIP_TYPE), *outcome.headers),
            )
        else:
            answer = sip.response(msg, outcome.status, to_tag=tag, headers=outcome.headers)
        self._answers[key] = answer
        peer.send(answer)
        self._requests[peer.transport, str(outcome.status)] += 1
        self._latency.observe(time.monotonic() - now)
        if outcome.mrs is not None and outcome.reply == "message":
            await self._send_reply_message(msg, peer, outcome.mrs)

    async def _outcome(self, msg: SipMessage, data: bytes, peer: Peer) -> _Outcome:
        """Decide the answer; everything refused becomes a dead letter."""
        if msg.method == "OPTIONS":  # units probe the centre with it: say what we take
            return _Outcome(200, (("allow", ALLOW), ("accept", SCAIP_TYPE)))
        if msg.method != "MESSAGE":
            self._dead(data, peer, "sip_method", f"method {msg.method} is not supported")
            return _Outcome(405, (("allow", ALLOW),))
        if msg.content_type != SCAIP_TYPE:
            self._dead(
                data,
                peer,
                "sip_content_type",
                f"content type {msg.content_type or 'none'!r} is not {SCAIP_TYPE}",
            )
            return _Outcome(415, (("accept", SCAIP_TYPE),))
        return await self._scaip(msg, data, peer)

    async def _scaip(self, msg: SipMessage, data: bytes, peer: Peer) -> _Outcome:
        default = self.settings.reply
        try:
            fields = parse_mrq(msg.body)
        except DecodeError as exc:
            found = _REF.search(msg.body[: MAX_SCAIP_BYTES * 2])
            self._dead(data, peer, exc.reason, str(exc))
            if found is None:
                # No reference to answer with: an <mrs> cannot be matched, so SIP says it.
                return _Outcome(400, reason_header(f"SCAIP refused: {exc}"))
            snu = reply_status_for(exc.reason)
            mrs = scaip_reply(found.group(1).decode(), snu, _STATUS_TEXT.get(snu))
            return _Outcome(200, mrs=mrs, reply=default)
        ref, cid = fields["ref"], fields["cid"]
        device = self.gateway.device(cid)
        if device is None or device.family is not Family.ALARM:
            why = "is not registered" if device is None else "is not a social alarm"
            self._dead(
                data,
                peer,
                "unknown_device" if device is None else "wrong_family",
                f"controller id {cid!r} {why}",
            )
            snu = ReplyStatus.WRONG_DATA
            return _Outcome(200, mrs=scaip_reply(ref, snu, "unknown controller id"), reply=default)
        account = self.gateway.sip_accounts.get(cid)
        reply = (account.reply if account is not None else None) or default
        if account is not None and account.ha1 is not None:
            verdict = self._auth.check(
                msg.get("authorization"), method=msg.method, username=cid, ha1=account.ha1
            )
            if verdict in ("missing", "stale"):
                challenge = self._auth.challenge(stale=verdict == "stale")
                return _Outcome(401, (("www-authenticate", challenge),))
            if verdict != "ok":
                self._dead(
                    data,
                    peer,
                    "sip_auth_failed",
                    f"wrong digest credentials for {cid!r}",
                    org=device.org,
                )
                return _Outcome(403)
        raw = RawMessage(f"scaip/{device.org}/mrq", msg.body, self.gateway.clock.now(), False)
        try:
            await self.gateway.accept_external(raw)
        except SpoolFull as exc:
            if not self._refusing:  # once per spell, not once per message
                log.warning("SCAIP units are answered 503 until the spool has room: %s", exc)
                self._refusing = True
            return _Outcome(503, (("retry-after", "5"),))
        if self._refusing:
            log.warning("the spool takes SCAIP messages again")
            self._refusing = False
        mrs = scaip_reply(ref, ReplyStatus.OK, hbi=device.heartbeat_interval_s)
        return _Outcome(200, mrs=mrs, reply=reply)

    # -- the separate-MESSAGE reply style ---------------------------------

    async def _send_reply_message(self, msg: SipMessage, peer: Peer, mrs: bytes) -> None:
        """Send the <mrs> as a MESSAGE of our own to the unit; retransmit over UDP."""
        branch = "z9hG4bK" + secrets.token_hex(8)
        host, port = peer.local
        unit = sip.uri_of(msg.get("contact") or msg.get("from") or "")
        ours = sip.uri_of(msg.get("to") or "") or f"sip:wgw@{host}"
        request = sip.request(
            "MESSAGE",
            unit,
            [
                ("via", f"SIP/2.0/{peer.transport} {host}:{port};branch={branch};rport"),
                ("max-forwards", str(_MAX_FORWARDS)),
                ("from", f"<{ours}>;tag={secrets.token_hex(6)}"),
                ("to", f"<{sip.uri_of(msg.get('from') or '')}>"),
                ("call-id", f"{secrets.token_hex(10)}@{host}"),
                ("cseq", "1 MESSAGE"),
                ("content-type", SCAIP_TYPE),
            ],
            mrs,
        )
        answered = self._clients[branch] = asyncio.Event()
        try:
            deadline = time.monotonic() + TRANSACTION_S
            interval = T1_S
            while not answered.is_set() and time.monotonic() < deadline:
                peer.send(request)
                if peer.transport != "UDP":
                    interval = TRANSACTION_S  # a reliable transport: sent once (RFC 3261 §17.1.2)
                try:
                    async with asyncio.timeout(interval):
                        await answered.wait()
                except TimeoutError:
                    interval = min(interval * 2, T2_S)
            if not answered.is_set():
                log.warning(
                    "the unit at %s:%d did not answer our <mrs> MESSAGE", peer.host, peer.port
                )
        finally:
            del self._clients[branch]

    def _response_arrived(self, msg: SipMessage) -> None:
        waiting = self._clients.get(msg.branch)
        if waiting is not None and msg.status >= 200:
            waiting.set()

    # -- refusals ------------------------------------------------------------

    def _allowed(self, host: str) -> bool:
        if not self._networks:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self._networks)

    def _refuse(
        self,
        data: bytes,
        peer: Peer,
        why: tuple[str, str],
        partial: SipMessage | None,
        status: int,
    ) -> None:
        """Dead-letter a message SIP cannot take (reason, detail), and answer it if it can."""
        self._dead(data, peer, *why)
        if partial is not None and partial.method in ("", "ACK"):
            return  # a response or an ACK is never answered, nor counted as a request
        # The unit matches a response by its Via branch (RFC 3261 §17.1.3): with a Via,
        # whatever else is missing, it can learn why.
        if partial is None or not partial.get("via"):
            self._requests[peer.transport, "unanswered"] += 1
            return
        answer = sip.response(
            partial, status, to_tag=secrets.token_hex(6), headers=reason_header(why[1])
        )
        peer.send(answer)
        self._requests[peer.transport, str(status)] += 1

    def _outsider(self, peer: Peer) -> tuple[str, str]:
        return ("sip_source_refused", f"{peer.host} is not in scaip.allow_from")

    def _too_large(self) -> tuple[str, str]:
        limit = self.settings.max_message_bytes
        return ("sip_too_large", f"the message is over scaip.max_message_bytes ({limit})")

    def _dead(
        self, data: bytes, peer: Peer, reason: str, detail: str, *, org: str | None = None
    ) -> None:
        # Debug, as the pipeline's dead letters: a flood must not flood the log too.
        log.debug("SIP from %s:%d refused: %s (%s)", peer.host, peer.port, reason, detail)
        self.gateway.refuse_external(
            DeadLetter(
                received_at=self.gateway.clock.now(),
                topic=f"sip/{peer.transport.lower()}/{peer.host}",
                payload=data,
                reason=reason,
                detail=detail[:500],
                org=org,
                device_id=None,
            )
        )

    def _expire(self, now: float) -> None:
        # Expiries arrive in order, and a key is only ever added when absent (its earlier
        # entry already expired here), so the front of the queue is always its own key's.
        expiry, answers = self._expiry, self._answers
        while expiry and expiry[0][0] <= now:
            answers.pop(expiry.popleft()[1], None)


_STATUS_TEXT = {
    ReplyStatus.TOO_LONG: "message too long",
    ReplyStatus.INVALID_FORMAT: "invalid format",
    ReplyStatus.WRONG_DATA: "wrong data content",
    ReplyStatus.MANDATORY_TAG_MISSING: "mandatory tag missing",
}


def reason_header(detail: str) -> tuple[tuple[str, str], ...]:
    """A Warning header (RFC 3261 §20.43, code 399: miscellaneous) saying why, for people."""
    text = detail.replace('"', "'").replace("\r", " ").replace("\n", " ")[:200]
    return (("warning", f'399 wgw "{text}"'),)
