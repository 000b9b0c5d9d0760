"""One HTTP exchange with a whole-exchange deadline and a bounded body, over the standard library.

`urllib`'s timeout bounds each socket operation, not the exchange: a server that drips one byte
a second would never time out, and a name with N unreachable addresses takes N timeouts after
the lookup. Here the lookup, each connection attempt and every read get only the time left
until the deadline.
"""

from __future__ import annotations

import email.message
import http.client
import io
import ipaddress
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from .errors import ControlPlaneTimeout, ControlPlaneUnreachable, InvalidRequest, MalformedDecision

#: Largest answer body read from the control plane (decisions are about 1 KiB).
MAX_RESPONSE_BYTES = 1 << 20

_CHUNK = 64 * 1024

#: The reference adapters' pluggable transport: `transport(request, timeout)` returns an object
#: with `read()` (and `status` or `getcode()`), raising `urllib.error.HTTPError` for 4xx/5xx.
Transport = Callable[[urllib.request.Request, float], Any]


@dataclass(frozen=True)
class Answer:
    """A status and the whole body."""

    status: int
    body: bytes


def exchange(
    method: str,
    url: str,
    body: Optional[bytes],
    headers: Mapping[str, str],
    timeout: float,
    *,
    max_bytes: int = MAX_RESPONSE_BYTES,
    ssl_context: Optional[ssl.SSLContext] = None,
) -> Answer:
    """Sends one request and reads the whole answer before `timeout` seconds have passed."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"invalid control plane URL `{url}`")
    deadline = time.monotonic() + timeout
    try:
        port = parts.port
    except ValueError as error:
        raise InvalidRequest(f"invalid control plane URL `{url}`") from error
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(
            parts.hostname, port, timeout=timeout, context=ssl_context or ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname, port, timeout=timeout)
    # http.client's hook for opening the socket (`socket.create_connection` by default, which
    # gives each address the whole timeout and cannot bound the lookup).
    conn._create_connection = lambda address, *_: _connect(address, deadline)  # type: ignore[attr-defined]
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    # A watchdog closes the socket at the deadline, so that no read, even of a status line
    # dripped one byte at a time, outlives it.
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        sock = conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    watchdog = threading.Timer(timeout, expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.request(method, path, body=body, headers=dict(headers))
        _set_remaining(conn, deadline)
        response = conn.getresponse()
        chunks: list[bytes] = []
        size = 0
        while True:
            _set_remaining(conn, deadline)
            chunk = response.read1(_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise MalformedDecision(f"answer larger than {max_bytes} bytes")
            chunks.append(chunk)
        if expired.is_set():
            raise socket.timeout("deadline passed")
        if response.length:
            raise ControlPlaneUnreachable("the answer was cut off before its declared length")
        return Answer(response.status, b"".join(chunks))
    except (socket.timeout, TimeoutError) as error:
        raise ControlPlaneTimeout(f"control plane did not answer within {timeout}s") from error
    except (OSError, http.client.HTTPException) as error:
        if expired.is_set():
            raise ControlPlaneTimeout(f"control plane did not answer within {timeout}s") from error
        if isinstance(error, http.client.IncompleteRead):
            raise ControlPlaneUnreachable("the answer was cut off before its declared length") from error
        raise ControlPlaneUnreachable(f"control plane unreachable: {_describe(error)}") from error
    finally:
        watchdog.cancel()
        conn.close()


def via_transport(
    transport: Transport,
    request: urllib.request.Request,
    timeout: float,
    *,
    max_bytes: int = MAX_RESPONSE_BYTES,
) -> Answer:
    """One exchange through a caller-supplied reference-style transport."""
    try:
        response = transport(request, timeout)
        status = getattr(response, "status", None)
        if status is None and hasattr(response, "getcode"):
            status = response.getcode()
        body = response.read(max_bytes + 1)
        close = getattr(response, "close", None)
        if callable(close):
            close()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read(max_bytes + 1)
    except (socket.timeout, TimeoutError) as error:
        raise ControlPlaneTimeout(f"control plane did not answer within {timeout}s") from error
    except urllib.error.URLError as error:
        raise ControlPlaneUnreachable(f"control plane unreachable: {error.reason}") from error
    except (OSError, http.client.HTTPException) as error:
        raise ControlPlaneUnreachable(f"control plane unreachable: {_describe(error)}") from error
    if not isinstance(body, bytes):
        raise MalformedDecision("the transport returned a body that is not bytes")
    if len(body) > max_bytes:
        raise MalformedDecision(f"answer larger than {max_bytes} bytes")
    # A transport that reports no status (the reference's test doubles) is read as 200: a deny
    # body then disagrees with it and is refused, which fails closed.
    return Answer(int(status) if status is not None else 200, body)


def urlopen_transport(request: urllib.request.Request, timeout: float) -> Any:
    """A reference-style transport for a `urllib.request.Request` (the reference passed the
    timeout positionally, where `urlopen` takes the request body; here it is the timeout).

    It is not `urlopen`'s: that follows redirects (sending `Authorization`, the bearer token,
    to whatever host the answer names) and sends through the `HTTP(S)_PROXY` of the
    environment (the token in clear to the proxy), and bounds each read, not the exchange.
    This one is [`exchange`]: no proxy, no redirect (a 3xx is returned as it is, which the
    client refuses: fail closed), the whole exchange within `timeout`, the body within
    `MAX_RESPONSE_BYTES`. A 4xx or 5xx raises `urllib.error.HTTPError`, as `urlopen` does; a
    failure raises a `ControlPlaneError`."""
    data = request.data
    if data is not None and not isinstance(data, bytes):
        raise InvalidRequest("the request body must be bytes")
    answer = exchange(request.get_method(), request.full_url, data, dict(request.header_items()), timeout)
    body = io.BytesIO(answer.body)
    if answer.status >= 400:
        raise urllib.error.HTTPError(
            request.full_url, answer.status, http.client.responses.get(answer.status, ""), email.message.Message(), body
        )
    return _BufferedAnswer(answer.status, body)


class _BufferedAnswer:
    """A whole answer, read already, shaped like `urlopen`'s (`status`, `getcode()`, `read()`)."""

    def __init__(self, status: int, body: io.BytesIO) -> None:
        self.status = status
        self._body = body

    def getcode(self) -> int:
        return self.status

    def read(self, size: int = -1) -> bytes:
        return self._body.read(size)

    def close(self) -> None:
        self._body.close()


def _set_remaining(conn: http.client.HTTPConnection, deadline: float) -> None:
    remaining = _remaining(deadline)
    if conn.sock is not None:
        conn.sock.settimeout(remaining)


def _remaining(deadline: float) -> float:
    """Seconds left before `deadline`; `socket.timeout` once it has passed."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise socket.timeout("deadline passed")
    return remaining


def _connect(address: Tuple[str, int], deadline: float) -> socket.socket:
    """A connected socket to `address` before `deadline`: the lookup, then each of its
    addresses in turn with the time left (not a whole timeout each)."""
    host, port = address
    last: Optional[OSError] = None
    for family, kind, proto, _, sockaddr in _resolve(host, port, deadline):
        remaining = _remaining(deadline)
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(remaining)
            sock.connect(sockaddr)
            return sock
        except OSError as error:
            sock.close()
            last = error
    _remaining(deadline)
    raise last if last is not None else OSError(f"no address for `{host}`")


_AddressInfo = List[Tuple[Any, Any, int, str, Any]]


def _resolve(host: str, port: int, deadline: float) -> _AddressInfo:
    """`getaddrinfo` within the time left. A literal address needs no lookup; a name is looked
    up in a daemon thread, since a lookup cannot be interrupted: one still running at the
    deadline is a timeout, and the thread is left to finish on its own, its answer unread."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    found: _AddressInfo = []
    failed: List[BaseException] = []

    def lookup() -> None:
        try:
            found.extend(socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM))
        except BaseException as error:  # handed to the caller's thread
            failed.append(error)

    thread = threading.Thread(target=lookup, name="zt-infra-getaddrinfo", daemon=True)
    thread.start()
    thread.join(_remaining(deadline))
    if thread.is_alive():
        raise socket.timeout(f"the lookup of `{host}` did not finish before the deadline")
    if failed:
        raise failed[0]
    return found


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__
