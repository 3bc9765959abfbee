"""Checks shared by every URL in the configuration (backend ``url``/``uri``, S3 ``endpoint_url``,
hook URLs).

A URL that a client library would read differently from what was written -- a port ``notaport``,
a Redis db ``/13x`` read as db 0, a ``#`` in a password cutting off the host -- must fail
``config validate``, never fall back to a default at run time. Messages quote no part of the URL
that could hold a password: a mis-encoded one (an unescaped ``/``, ``?`` or ``#``) can end up in
the port, the path or the query.
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

MAX_PORT = 65535
PASSWORD_HINT = "percent-encode / ? # @ : in a user name or password (%2F %3F %23 %40 %3A)"


def split_url(url: str, schemes: tuple[str, ...]) -> SplitResult:
    """``url`` split, with a scheme of ``schemes``, no ``#fragment`` and a valid port if it has one."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError(f"cannot be parsed as a URL (a bracketed IPv6 host is not closed?); {PASSWORD_HINT}") from None
    check_scheme(url, schemes)
    if parts.fragment:
        raise ValueError(f"has a #fragment, which would be ignored; {PASSWORD_HINT}")
    port = _port_text(parts.netloc)
    if port:
        check_port_text(port)
    return parts


def check_scheme(url: str, schemes: tuple[str, ...]) -> None:
    scheme, separator, _ = url.partition("://")
    if not separator or scheme.lower() not in schemes:
        raise ValueError(f"must start with {' or '.join(s + '://' for s in schemes)}")


def check_port_text(text: str) -> int:
    """A port number from text (a URL, a libpq ``port=``): digits only, 1-65535."""
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_PORT:
        raise ValueError(f"the port is not a number from 1 to {MAX_PORT}; {PASSWORD_HINT}")
    return int(text)


def require_host(parts: SplitResult) -> None:
    if not parts.hostname:
        raise ValueError("has no host name")


def reject_query(parts: SplitResult, instead: str) -> None:
    if parts.query:
        names = sorted({pair.partition("=")[0] for pair in parts.query.split("&") if pair})
        listed = f" ({', '.join(names)})" if names and "@" not in parts.query else ""
        raise ValueError(f"query parameters{listed} are not supported; {instead}")


def check_http_url(url: str) -> SplitResult:
    """An ``http://`` or ``https://`` URL with a host, such as an S3 endpoint or a webhook."""
    parts = split_url(url, ("http", "https"))
    require_host(parts)
    return parts


def _port_text(netloc: str) -> str | None:
    """The port as written in ``host:port`` (None when absent); ``urlsplit`` only checks it lazily."""
    host_port = netloc.rpartition("@")[2]
    if host_port.startswith("["):
        host_port = host_port.partition("]")[2]
        return host_port[1:] if host_port.startswith(":") else None
    host, colon, port = host_port.rpartition(":")
    return port if colon else None
