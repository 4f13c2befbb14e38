"""Serving the debug API over a database file with Hypercorn, on asyncio or trio.

:func:`serve_database` opens the database read-only (it never migrates: an unmigrated
file raises :class:`~sim.errors.SchemaError` pointing at ``turnsim db migrate``), listens
on loopback unless told otherwise, and serves until cancelled. Cancelling it shuts the
server down gracefully, bounded by :data:`GRACE_S`, then closes the store.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Sequence

import anyio
import anyio.abc
import sniffio
import structlog
from hypercorn.config import Config, Sockets
from starlette.applications import Starlette

from persisters.errors import TurnsimError
from persisters.readpath import ReadPath
from persisters.sqlite_file import admit
from persisters.store import TurnStore
from persisters.stores import StoreSpec, StoreSpecError, open_database
from sim.api.app import create_app

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765  # the same default as `turnsim run --serve`
#: How long in-flight requests get to finish once serving is cancelled.
GRACE_S = 2.0
#: After a stop signal, how long the graceful stop may take before the process exits anyway.
FORCE_AFTER_S = GRACE_S + 3.0

log = structlog.get_logger("turnsim.api")


class ServeError(TurnsimError):
    """The server cannot start (e.g. the address is in use)."""


async def open_served_store(
    path: str | os.PathLike[str], timeline_path: str | os.PathLike[str] | None = None
) -> TurnStore:
    """The store a server reads, read-only, never migrated: a SQLite file of either layout
    (the real server's normalized one with its conversation index from ``timeline_path``;
    see :func:`persisters.stores.open_database`), the namespace a server DSN names (every
    transaction READ ONLY), or a store of your own (``module:factory`` / a
    ``turnsim.stores`` name; the API only reads)."""
    text = os.fspath(path)
    if "://" in text:
        return await StoreSpec.parse(text).open_existing(read_only=True)
    if not os.path.exists(text) and _names_a_factory(text):
        return await StoreSpec.parse(text).open_existing()
    # The one admission rule, before anything opens the file (a FIFO would block the open
    # for good); in a thread a signal may abandon, so that nothing here outlives Ctrl-C.
    for name in (text, timeline_path):
        if name is not None:
            await anyio.to_thread.run_sync(admit, name, "read", abandon_on_cancel=True)
    return await open_database(path, read_only=True, timeline_path=timeline_path)


def _names_a_factory(text: str) -> bool:
    try:
        return StoreSpec.parse(text).kind in ("factory", "entry-point")
    except StoreSpecError:
        return False


def listen(host: str, port: int) -> socket.socket:
    """A listening, non-blocking TCP socket on ``host:port`` (port 0: any free port)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        raise ServeError(f"cannot listen on {host}:{port}: {exc}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(Config.backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def url_of(sock: socket.socket) -> str:
    """The base URL a client uses to reach a listening socket."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def is_loopback(sock: socket.socket) -> bool:
    host = sock.getsockname()[0].split("%")[0]  # drop an IPv6 scope id
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _literal(host: str) -> str:
    """A host as a ``Host`` header names it: IPv6 literals in brackets, lowercased."""
    host = host.split("%")[0].lower()
    return f"[{host.strip('[]')}]" if ":" in host else host


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


def host_names(host: str, sock: socket.socket, extra: Sequence[str] = ()) -> list[str]:
    """The ``Host`` names a server bound to ``host`` answers by default: the name given,
    the bound address, the loopback names on a loopback (or every-address) bind and the
    machine's names on an every-address bind; plus ``extra`` (``--allow-host``)."""
    address = sock.getsockname()[0]
    names = {_literal(host), _literal(address)}
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        ip = None
    if ip is not None and (ip.is_loopback or ip.is_unspecified):
        names.update(LOOPBACK_NAMES)
    if ip is not None and ip.is_unspecified:
        names.update({socket.gethostname().lower(), socket.getfqdn().lower()})
    names.update(_literal(h) if h != "*" else "*" for h in extra)
    return sorted(names)


class _ListeningConfig(Config):
    """Hypercorn config that serves an already listening socket (so port 0 is knowable)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._listening = sock
        host, port = sock.getsockname()[:2]
        self.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
        self.accesslog = None  # requests are logged by sim.api.app.RequestLog through structlog
        self.errorlog = logging.getLogger("turnsim.hypercorn")
        self.graceful_timeout = GRACE_S

    def create_sockets(self) -> Sockets:
        return Sockets(secure_sockets=[], insecure_sockets=[self._listening], quic_sockets=[])


async def _hypercorn(app: Starlette, config: Config, stop: anyio.Event) -> None:
    if sniffio.current_async_library() == "trio":
        from hypercorn.trio import serve
    else:
        from hypercorn.asyncio import serve
    await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]


async def serve_app(
    app: Starlette, sock: socket.socket, *, ready: Callable[[str], object] | None = None
) -> None:
    """Serve ``app`` on a listening socket until cancelled; the socket is closed on return.

    ``ready`` is called with the base URL once connections are accepted.
    """
    url = url_of(sock)
    stop = anyio.Event()
    grace = anyio.CancelScope(shield=True)

    async def run_server() -> None:
        # Shielded so that cancelling the caller becomes a graceful shutdown (``stop``)
        # instead of tearing connections down mid-response; the deadline bounds it.
        with grace:
            await _hypercorn(app, config, stop)

    config = _ListeningConfig(sock)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_server)
            log.info("http.serve.started", url=url, loopback=is_loopback(sock))
            if not is_loopback(sock):
                log.warning(
                    "http.serve.exposed",
                    url=url,
                    note="the debug API shows every stored payload; bind 127.0.0.1 unless needed",
                )
            if ready is not None:
                ready(url)
            try:
                await anyio.sleep_forever()
            finally:
                stop.set()
                grace.deadline = anyio.current_time() + GRACE_S + 1
    finally:
        sock.close()
        log.info("http.serve.stopped", url=url)


async def serve_database(
    path: str | os.PathLike[str],
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    read_path: ReadPath = ReadPath(),  # noqa: B008 (stateless)
    ready: Callable[[str], object] | None = None,
    timeline_path: str | os.PathLike[str] | None = None,
    allow_hosts: Sequence[str] = (),
) -> None:
    """Serve the debug API over the database at ``path`` (a SQLite file or a server DSN)
    until cancelled.

    ``timeline_path``: the timeline database of a turn database of the real layout
    (its conversation index). Requests are answered only for the ``Host`` names of
    :func:`host_names` (the bound ones and ``allow_hosts``; ``"*"``: any).

    Raises :class:`~sim.errors.NotSQLiteError` (missing / not SQLite),
    :class:`~sim.errors.SchemaError` (needs ``turnsim db migrate``) or :class:`ServeError`
    (cannot listen) before serving. ``ready`` gets the base URL once requests are accepted.
    Works on asyncio and trio.
    """
    store = await open_served_store(path, timeline_path)
    try:
        sock = listen(host, port)
        app = create_app(
            store, read_path=read_path, allowed_hosts=host_names(host, sock, allow_hosts)
        )
        await serve_app(app, sock, ready=ready)
    finally:
        with anyio.CancelScope(shield=True):
            await store.close()


async def until_signalled(serve_fn: Callable[[], Awaitable[None]]) -> bool:
    """Run ``serve_fn`` until SIGINT or SIGTERM, then cancel it (a graceful stop).

    Returns True when a signal stopped it. An error of ``serve_fn`` propagates as itself,
    not wrapped in an exception group. Call from the main thread.

    A signal always stops the process: should the graceful stop not finish within
    :data:`FORCE_AFTER_S` (something blocked where cancellation cannot reach), or a second
    signal arrive, the process exits at once with status 130 (``http.serve.forced_stop``).
    """
    stopped_by_signal = False
    failure: list[BaseException] = []
    serving = anyio.CancelScope()

    def force_stop() -> None:
        log.error("http.serve.forced_stop", note="the graceful stop did not finish")
        os._exit(130)  # the only way past a thread that cannot be cancelled

    async def force_later(done: anyio.Event) -> None:
        with anyio.move_on_after(FORCE_AFTER_S):
            await done.wait()
        if not done.is_set():
            force_stop()

    async def watch(done: anyio.Event, tg: anyio.abc.TaskGroup) -> None:
        nonlocal stopped_by_signal
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.info("http.serve.signal", signal=signal.Signals(signum).name)
                if stopped_by_signal:
                    force_stop()  # a second signal: no more patience
                stopped_by_signal = True
                serving.cancel()
                tg.start_soon(force_later, done)

    async def run(done: anyio.Event, scope: anyio.CancelScope) -> None:
        try:
            with serving:
                await serve_fn()
        except TurnsimError as exc:
            failure.append(exc)
        finally:
            done.set()
            scope.cancel()

    async with anyio.create_task_group() as tg:
        done = anyio.Event()
        tg.start_soon(watch, done, tg)
        tg.start_soon(run, done, tg.cancel_scope)
    if failure:
        raise failure[0]
    return stopped_by_signal
