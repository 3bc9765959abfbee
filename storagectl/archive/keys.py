"""age recipients and identities (pyrage): X25519 (``age1...``) and SSH keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from storagectl.errors import UsageError


def parse_recipients(texts: list[str]) -> list[Any]:
    from pyrage import RecipientError, ssh, x25519

    recipients = []
    for text in texts:
        try:
            parse = ssh.Recipient.from_str if text.startswith("ssh-") else x25519.Recipient.from_str
            recipients.append(parse(text.strip()))
        except (RecipientError, ValueError) as exc:
            raise UsageError(f"invalid age recipient {text[:24]!r}...: {exc}",
                             hint="Try: an age1... public key (age-keygen -y KEYFILE) or an ssh-ed25519 key") from exc
    return recipients


def load_identities(path: Path) -> list[Any]:
    """The identities in an age identity file (``AGE-SECRET-KEY-1...`` lines, ``#`` comments)."""
    from pyrage import IdentityError, ssh, x25519

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read identity file {path}: {exc.strerror or exc}") from exc
    if "PRIVATE KEY-----" in text:
        return [_ssh_identity(ssh, text, path)]
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    try:
        identities = [x25519.Identity.from_str(line) for line in lines]
    except (IdentityError, ValueError):
        raise UsageError(f"identity file {path} holds no valid age identity",
                         hint="Try: a file written by age-keygen (AGE-SECRET-KEY-1... lines)") from None
    if not identities:
        raise UsageError(f"identity file {path} holds no age identity")
    return identities


def _ssh_identity(ssh: Any, text: str, path: Path) -> Any:
    try:
        return ssh.Identity.from_buffer(text.encode())
    except Exception:  # noqa: BLE001 - pyrage raises several types for bad keys
        raise UsageError(f"identity file {path} is not a usable SSH private key") from None
