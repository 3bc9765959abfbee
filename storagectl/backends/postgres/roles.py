"""Owners and privileges in the schema SQL of a PostgreSQL backup, for restores into another server
(``restore --no-owner / --no-privileges / --role``, and the roles ``restore --dry-run`` lists).

The archive keeps pg_dump's plain SQL with owners and privileges, as pg_dump wrote it, so the choice
is the restore's, as with ``pg_restore``. That SQL is a sequence of entries, each under a
``-- Name: ...; Type: ...`` header; the filters work on whole entries and on the one statement pg_dump
appends to an entry for its owner, never on text inside a definition:

- privileges are entries of their own (types ``ACL`` and ``DEFAULT ACL``): dropped whole;
- the owner is the ``ALTER <type> <name> OWNER TO <role>;`` line pg_dump writes last in an entry,
  after its definition (only ``SET`` lines of the next entry may follow): that line is dropped.
  A function whose body contains such a line keeps it: the body ends before the entry's last line.
"""

from __future__ import annotations

import re
from typing import Any

from storagectl.archive.api import OwnershipOptions
from storagectl.backends.postgres.tools import ENTRY_HEADER

_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_OWNER_LINE = re.compile(rf"^ALTER [A-Z ]+ .+ OWNER TO (?P<role>{_IDENT});[ \t]*$", re.MULTILINE)
_AFTER_OWNER = re.compile(r"(?:\s|SET [^\n]*;|SELECT pg_catalog\.set_config\([^\n]*;)*")
_GRANTEE = re.compile(rf"\b(?:TO|FROM|FOR ROLE)\s+(?P<roles>{_IDENT}(?:\s*,\s*{_IDENT})*)")
PRIVILEGE_TYPES = ("ACL", "DEFAULT ACL")


def filter_schema(sql_text: str, options: OwnershipOptions) -> str:
    """``sql_text`` without the owner statements and/or privilege entries ``options`` leave out."""
    if options.keeps_owners and options.privileges:
        return sql_text
    pieces = []
    for entry_type, text in entries(sql_text):
        if not options.privileges and entry_type in PRIVILEGE_TYPES:
            text = _setting_lines(text)
        elif not options.keeps_owners and entry_type is not None:
            text = _without_owner(text)
        pieces.append(text)
    return "".join(pieces)


def roles_named(sql_text: str) -> dict[str, set[str]]:
    """The roles the SQL names: ``owners`` (OWNER TO) and ``grantees`` (GRANT/REVOKE and default
    privileges, PUBLIC left out)."""
    owners: set[str] = set()
    grantees: set[str] = set()
    for entry_type, text in entries(sql_text):
        if (owner := _owner_statement(text)) is not None:
            owners.add(unquote(owner["role"]))
        if entry_type in PRIVILEGE_TYPES:
            for match in _GRANTEE.finditer(text):
                grantees |= {unquote(name) for name in re.findall(_IDENT, match["roles"])}
    grantees.discard("PUBLIC")
    return {"owners": owners, "grantees": grantees}


def missing_roles(conn: Any, roles: set[str]) -> list[str]:
    """Of ``roles``, those the server does not have, sorted."""
    present = {row[0] for row in conn.execute("SELECT rolname FROM pg_catalog.pg_roles "
                                              "WHERE rolname = ANY(%s)", [sorted(roles)])}
    return sorted(roles - present)


def entries(sql_text: str) -> list[tuple[str | None, str]]:
    """(entry type, text from its header to the next) in order; the text before the first header
    has type None."""
    headers = list(ENTRY_HEADER.finditer(sql_text))
    starts = [0, *(header.start() for header in headers)]
    types: list[str | None] = [None, *(header["type"] for header in headers)]
    ends = [*starts[1:], len(sql_text)]
    return [(kind, sql_text[start:end]) for kind, start, end in zip(types, starts, ends, strict=True)]


def _owner_statement(text: str) -> re.Match[str] | None:
    """The entry's own ``OWNER TO`` statement: its last line but for session settings."""
    owner_lines = list(_OWNER_LINE.finditer(text))
    if not owner_lines or not _AFTER_OWNER.fullmatch(text, owner_lines[-1].end()):
        return None
    return owner_lines[-1]


def _without_owner(text: str) -> str:
    owner = _owner_statement(text)
    return text if owner is None else text[:owner.start()] + text[owner.end():]


def _setting_lines(text: str) -> str:
    """Of a dropped entry, the session settings pg_dump put at its end for the entries after it."""
    return "".join(line for line in text.splitlines(keepends=True)
                   if line.startswith(("SET ", "SELECT pg_catalog.set_config(")))


def unquote(identifier: str) -> str:
    if identifier.startswith('"'):
        return identifier[1:-1].replace('""', '"')
    return identifier
