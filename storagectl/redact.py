"""Keep secrets out of everything storagectl prints or logs."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@")
# also inside longer names (``sslpassword=``, ``client_secret=``, ``auth_token=``): no word boundary
_KV_PASSWORD = re.compile(r"(?i)([a-z_]*(?:password|passwd|pwd|secret|token))=([^\s&;]+)")
_SECRET_KEYS = ("password", "secret", "token", "key_id", "access_key")
_NEVER_ECHOED = ("on_success", "on_failure")  # a webhook URL often carries its token in the path


def is_secret_key(key: str) -> bool:
    """A config key whose value is never shown (nor cached): a password, a key, a token, a hook URL."""
    key = key.lower()
    return key in _NEVER_ECHOED or any(marker in key for marker in _SECRET_KEYS)


def has_userinfo(value: object) -> bool:
    """A URL with ``user:password@``: never echoed at all, since a mis-encoded password (an ``@`` or
    ``/`` in it) would be only partly masked by :func:`redact_url`."""
    return isinstance(value, str) and "://" in value and "@" in value


def has_url_password(value: object) -> bool:
    """A URL that may hold a password: a ``:`` anywhere between ``://`` and its last ``@`` (so a
    password with an ``@`` or ``/`` in it counts too). ``postgresql://app@db/x`` names a user only."""
    if not has_userinfo(value):
        return False
    return ":" in str(value).partition("://")[2].rpartition("@")[0]


def redact_url(url: str) -> str:
    """Replace the password of a URL with ``***``; leave everything else as it was."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if parts.password is None:
        return redact_text(url)
    # The hosts as written: a libpq host list (h1:5432,h2:5433) has no single port to parse.
    netloc = f"{parts.username or ''}:{MASK}@{parts.netloc.rpartition('@')[2]}"
    return redact_text(urlunsplit(parts._replace(netloc=netloc)))


def redact_text(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """Mask URL passwords, ``password=...`` pairs and any of the given secret values in text."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _KV_PASSWORD.sub(lambda m: f"{m[1]}={MASK}", text)
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, MASK)
    return text
