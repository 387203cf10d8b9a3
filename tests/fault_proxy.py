"""A small fault-injecting TCP proxy for tests: loopback only, threads, bounded, always stopped.

Sits between the code under test and a server (PostgreSQL, or ``heurmetrics serve``) and can:

* ``refuse()``       — close every open connection and every new one at once;
* ``hang()``         — accept new connections but never answer them (a connect that hangs);
* ``silence()``      — stop forwarding on every *open* connection, both ways, without closing it
                       (no FIN, no RST: a network that went silent);
* ``drop_commit_answers(n)`` — PostgreSQL only: forward the next ``n`` ``COMMIT`` statements,
                       then swallow the server's answer and close the client side (the commit
                       succeeded, the client cannot know);
* ``silence_after_copy(n)``  — PostgreSQL only: after the next ``n`` COPY data streams are
                       complete (CopyDone sent), silence that connection (an orphaned
                       transaction holding its row locks);
* ``restore()``      — forward normally again (silenced connections stay silent: their client
                       must notice and reconnect).

PostgreSQL traffic must be unencrypted (``sslmode=disable``) so the proxy can see the frontend
messages. Nothing here sleeps longer than 0.2 s at a time; :meth:`stop` closes every socket.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from collections.abc import Iterator

_SSL_REQUEST = 80877103
_GSS_REQUEST = 80877104


class _Conn:
    """One proxied connection: a client socket, an upstream socket, and its fault state."""

    def __init__(self, proxy: FaultProxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream: socket.socket | None = None
        self.silenced = False
        self.closed = False
        self._buf = b""  # client -> server bytes not yet parsed into whole messages
        self._started = False  # the startup message was seen
        self._commit_pending = False  # a COMMIT was forwarded: its answer is to be dropped
        self._silence_after_reply = False

    def run(self) -> None:
        try:
            self.upstream = socket.create_connection(self.proxy.target, timeout=5)
        except OSError:
            self.close()
            return
        self.upstream.settimeout(None)
        self._pump()

    def _pump(self) -> None:
        assert self.upstream is not None
        while not self.closed and not self.proxy.stopped.is_set():
            if self.silenced or self.proxy.mode == "refuse":
                if self.proxy.mode == "refuse":
                    self.close()
                    return
                self.proxy.stopped.wait(0.2)
                continue
            try:
                readable, _, _ = select.select([self.client, self.upstream], [], [], 0.2)
            except (OSError, ValueError):
                self.close()
                return
            for sock in readable:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self.close()
                    return
                if sock is self.client:
                    self._to_server(data)
                else:
                    self._to_client(data)
                if self.closed or self.silenced:
                    break

    def _to_server(self, data: bytes) -> None:
        assert self.upstream is not None
        copy_done = False
        if self.proxy.postgres:
            self._buf += data
            copy_done = self._scan()
        self.upstream.sendall(data)
        if copy_done and self.proxy.take("silence_after_copy"):
            self.silenced = True  # the server finishes the COPY; the client never hears of it

    def _to_client(self, data: bytes) -> None:
        if self._commit_pending:
            self._commit_pending = False
            self.proxy.dropped_answers += 1
            self.close()  # the server committed; its answer never arrives
            return
        self.client.sendall(data)

    def _scan(self) -> bool:
        """Parse whole frontend messages from ``_buf``; True when a CopyDone was among them."""
        copy_done = False
        while True:
            if not self._started:
                if len(self._buf) < 8:
                    return copy_done
                length, code = struct.unpack("!II", self._buf[:8])
                if len(self._buf) < length:
                    return copy_done
                self._buf = self._buf[length:]
                if code not in (_SSL_REQUEST, _GSS_REQUEST):
                    self._started = True
                continue
            if len(self._buf) < 5:
                return copy_done
            kind = self._buf[:1]
            (length,) = struct.unpack("!I", self._buf[1:5])
            if len(self._buf) < 1 + length:
                return copy_done
            body = self._buf[5 : 1 + length]
            self._buf = self._buf[1 + length :]
            if kind == b"c":
                copy_done = True
            elif (
                kind == b"Q" and body.rstrip(b"\x00").strip().upper() == b"COMMIT" and self.proxy.take("drop_commit")
            ):
                self._commit_pending = True

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for sock in (self.client, self.upstream):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()


class FaultProxy:
    """A TCP proxy on 127.0.0.1 to ``target`` with switchable faults (see the module doc)."""

    def __init__(self, target_host: str, target_port: int, *, postgres: bool = True) -> None:
        self.target = (target_host, target_port)
        self.postgres = postgres  # parse the PostgreSQL frontend protocol (COMMIT, CopyDone)
        self.mode = "forward"  # forward | refuse | hang
        self.dropped_answers = 0
        self.stopped = threading.Event()
        self._budget: dict[str, int] = {"drop_commit": 0, "silence_after_copy": 0}
        self._lock = threading.Lock()
        self._conns: list[_Conn] = []
        self._hung: list[socket.socket] = []
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)
        self._thread.start()

    # --- faults -----------------------------------------------------------------------------------
    def refuse(self) -> None:
        self.mode = "refuse"

    def hang(self) -> None:
        self.mode = "hang"

    def silence(self) -> None:
        with self._lock:
            for conn in self._conns:
                conn.silenced = True

    def drop_commit_answers(self, n: int = 1) -> None:
        self._budget["drop_commit"] = n

    def silence_after_copy(self, n: int = 1) -> None:
        self._budget["silence_after_copy"] = n

    def restore(self) -> None:
        self.mode = "forward"
        with self._lock:
            hung, self._hung = self._hung, []
        for sock in hung:  # their clients gave up long ago
            with contextlib.suppress(OSError):
                sock.close()

    def take(self, fault: str) -> bool:
        """Use one unit of a counted fault; False when none is left."""
        with self._lock:
            if self._budget[fault] <= 0:
                return False
            self._budget[fault] -= 1
            return True

    @property
    def silenced_connections(self) -> int:
        with self._lock:
            return sum(1 for c in self._conns if c.silenced and not c.closed)

    # --- plumbing ---------------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.mode == "refuse":
                client.close()
                continue
            if self.mode == "hang":
                with self._lock:
                    self._hung.append(client)
                continue
            conn = _Conn(self, client)
            with self._lock:
                self._conns = [c for c in self._conns if not c.closed]
                self._conns.append(conn)
            threading.Thread(target=conn.run, name="fault-proxy-conn", daemon=True).start()

    def stop(self) -> None:
        self.stopped.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._thread.join(timeout=5)
        with self._lock:
            conns, self._conns = self._conns, []
            hung, self._hung = self._hung, []
        for conn in conns:
            conn.close()
        for sock in hung:
            with contextlib.suppress(OSError):
                sock.close()


@contextlib.contextmanager
def fault_proxy(host: str, port: int, *, postgres: bool = True) -> Iterator[FaultProxy]:
    """A :class:`FaultProxy` to ``host:port``, stopped (every socket closed) on exit."""
    proxy = FaultProxy(host, port, postgres=postgres)
    try:
        yield proxy
    finally:
        proxy.stop()
