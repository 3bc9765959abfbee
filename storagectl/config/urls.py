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


# -- PostgreSQL URLs as libpq reads them, without loading libpq (psycopg costs ~150 ms of start-up) --
_POSTGRES_PREFIXES = ("postgresql://", "postgres://")
# Query keywords read here; all known to libpq since PostgreSQL 12. Any other goes to libpq itself,
# which knows its own version's (and words the error for an unknown one).
POSTGRES_URL_KEYWORDS = frozenset({
    "host", "hostaddr", "port", "dbname", "user", "password", "passfile", "connect_timeout", "client_encoding",
    "options", "application_name", "fallback_application_name", "keepalives", "keepalives_idle",
    "keepalives_interval", "keepalives_count", "tcp_user_timeout", "sslmode", "sslcompression", "sslcert",
    "sslkey", "sslrootcert", "sslcrl", "requirepeer", "krbsrvname", "gsslib", "gssencmode", "service",
    "target_session_attrs",
})


class _AskLibpq(Exception):
    """Not a plain URL: libpq's own parser gives the answer, or the exact error."""


def parse_postgres_url(url: str) -> dict[str, str] | None:
    """The connection parameters libpq reads from a ``postgresql://`` URL -- what psycopg's
    ``conninfo_to_dict`` returns -- following libpq's ``conninfo_uri_parse_options`` step by step.
    None when the URL is not plain (a bad %-escape, an unknown query keyword, a scheme not in lower
    case, ...): the caller then asks libpq, for its answer or its exact message."""
    try:
        return _parse_postgres_url(url)
    except _AskLibpq:
        return None


def _parse_postgres_url(url: str) -> dict[str, str]:
    prefix = next((p for p in _POSTGRES_PREFIXES if url.startswith(p)), None)
    if prefix is None or "\0" in url or any(char.isspace() for char in url):
        raise _AskLibpq  # libpq 17+ trims spaces around values and refuses them inside; older ones kept them
    params: dict[str, str] = {}
    rest = url[len(prefix):]
    credentials_end = _find_any(rest, "@/")
    if credentials_end < len(rest) and rest[credentials_end] == "@":
        userinfo, rest = rest[:credentials_end], rest[credentials_end + 1:]
        user, colon, password = userinfo.partition(":")
        _store(params, "user", user)
        if colon:
            _store(params, "password", password)
    hosts, ports, rest, terminator = _netlocs(rest)
    _store(params, "host", ",".join(hosts))
    _store(params, "port", ",".join(ports))  # "h1,h2:5" has ports ",5": the first is the default
    if terminator == "/":
        dbname, _, query = rest.partition("?")
        _store(params, "dbname", dbname)
        terminator, rest = ("?" if "?" in rest else ""), query
    if terminator == "?":
        _query_params(rest, params)
    return params


def _netlocs(text: str) -> tuple[list[str], list[str], str, str]:
    """Comma-separated ``host[:port]`` (or ``[ipv6][:port]``): hosts, ports, the text after the
    terminator, and the terminator ("/", "?" or "" at the end)."""
    hosts: list[str] = []
    ports: list[str] = []
    while True:
        if text.startswith("["):
            close = text.find("]")
            if close <= 1 or (close + 1 < len(text) and text[close + 1] not in ":/?,"):
                raise _AskLibpq  # unclosed, empty or followed by junk: libpq's messages
            hosts.append(text[1:close])
            text = text[close + 1:]
            end = 0
        else:
            end = _find_any(text, ":/?,")
            hosts.append(text[:end])
        terminator, text = text[end:end + 1], text[end + 1:]
        port = ""
        if terminator == ":":
            end = _find_any(text, "/?,")
            port, terminator, text = text[:end], text[end:end + 1], text[end + 1:]
        ports.append(port)
        if terminator != ",":
            return hosts, ports, text, terminator


def _query_params(query: str, params: dict[str, str]) -> None:
    pairs = query.split("&")
    if pairs[-1] == "":
        pairs.pop()  # libpq stops at the end of the text: a trailing "&" ends the last pair
    for pair in pairs:
        keyword, separator, value = pair.partition("=")
        if not separator or "=" in value:
            raise _AskLibpq  # no "=" or a second one: libpq's message
        keyword, value = _decoded(keyword), _decoded(value)
        if keyword == "ssl" and value == "true":  # libpq's JDBC compatibility
            keyword, value = "sslmode", "require"
        if keyword not in POSTGRES_URL_KEYWORDS:
            raise _AskLibpq
        params[keyword] = value


def _store(params: dict[str, str], keyword: str, text: str) -> None:
    """As libpq: an empty user, password, host list or dbname is not set at all."""
    if text:
        params[keyword] = _decoded(text)


def _decoded(text: str) -> str:
    if "%" not in text:
        return text
    from urllib.parse import unquote_to_bytes

    for index in (i for i, char in enumerate(text) if char == "%"):
        digits = text[index + 1:index + 3]
        if len(digits) != 2 or not all(d in "0123456789abcdefABCDEF" for d in digits) or digits == "00":
            raise _AskLibpq  # a bad or %00 escape: libpq's message
    try:
        return unquote_to_bytes(text).decode()
    except UnicodeDecodeError:
        raise _AskLibpq from None


def _find_any(text: str, characters: str) -> int:
    """Index of the first of ``characters`` in ``text``, or ``len(text)``."""
    return next((i for i, char in enumerate(text) if char in characters), len(text))
