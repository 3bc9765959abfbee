"""Restoring a PostgreSQL backup beside the target and renaming it in, so the target holds either
its old contents or the complete restore, never part of one.

The backup is restored into a new database (``<db>__stctl_restore_<token>``) created with the
target's owner, encoding, locale and tablespace (and, for an empty target, its extensions). When
that restore is complete -- and, with ``--validate``, proven equal to the backup -- it gets the
target's database-level settings, grants, connection limit and comment, and the two are swapped
by renaming both in one transaction; the old database is dropped afterwards. Until the swap the
target keeps serving its old contents; a failure at any point before it drops only the new
database. Sessions still connected at the swap are terminated, because PostgreSQL cannot rename
a database that is in use.

A running restore holds a session-level advisory lock named after its new database (and one
named after the target), so a ``kill -9`` releases it with the session: the next restore to the
same target drops every ``__stctl_restore_`` database whose lock nobody holds, and every
``__stctl_old_`` database (the old contents, after a kill just after the swap) whose restore's
lock nobody holds and no session uses.

Needs CREATEDB (or superuser) and the privileges of the target's owner role; checked by
:func:`check_replace` before the restore reads anything.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from storagectl.backends.postgres.guard import guard_held, hold_guards
from storagectl.backends.postgres.schema import quote_ident, quote_literal
from storagectl.errors import OperationFailed, PermissionDenied, StoragectlError, raise_with_state

if TYPE_CHECKING:
    from storagectl.backends.postgres.backend import PostgresBackend

log = logging.getLogger(__name__)

NAME_BYTES = 63  # NAMEDATALEN - 1
SWAP_ATTEMPTS = 4  # a client reconnecting between terminate and rename makes the rename fail
KEPT = "the target database still holds its old contents"
KEPT_EMPTY = "the target database was left empty and unchanged"
# GUCs whose stored per-database value is a list (GUC_LIST_QUOTE): split and written back one string
# literal per element, as pg_dump does, never pasted as SQL.
LIST_SETTINGS = frozenset({"search_path", "temp_tablespaces", "session_preload_libraries",
                           "local_preload_libraries", "shared_preload_libraries"})
PROVIDERS = {"c": ("libc", None), "i": ("icu", "ICU_LOCALE"), "b": ("builtin", "BUILTIN_LOCALE")}

PROPERTIES_SQL = """
SELECT pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), d.datcollate, d.datctype, {locale},
       t.spcname, d.datconnlimit, shobj_description(d.oid, 'pg_database'),
       r.rolsuper OR r.rolcreatedb, r.rolsuper OR ({owner_rights}), d.datacl IS NOT NULL
FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace
JOIN pg_roles r ON r.rolname = current_user
WHERE d.datname = %s
"""
GRANTS_SQL = """
SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
       a.is_grantable
FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = %s AND d.datacl IS NOT NULL
"""
EXTENSIONS_SQL = """
SELECT e.extname, n.nspname, e.extversion FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname <> 'plpgsql' ORDER BY e.oid
"""
SETTINGS_SQL = """
SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole) END, unnest(s.setconfig)
FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = %s
"""


def locale_columns(server_version_num: int) -> str:
    """Provider, provider locale and ICU rules, as each major version's catalog has them."""
    if server_version_num >= 170000:  # daticulocale became datlocale; the builtin provider arrived
        return "d.datlocprovider::text, d.datlocale, d.daticurules"
    if server_version_num >= 160000:
        return "d.datlocprovider::text, d.daticulocale, d.daticurules"
    if server_version_num >= 150000:
        return "d.datlocprovider::text, d.daticulocale, NULL"
    return "NULL, NULL, NULL"  # libc only; CREATE DATABASE has no LOCALE_PROVIDER


def owner_rights(server_version_num: int) -> str:
    """Renaming, dropping and granting need the owner's privileges (USAGE: inherited, not just a
    NOINHERIT membership); from 16 on, ``CREATE DATABASE ... OWNER`` also needs SET ROLE."""
    usage = "pg_has_role(current_user, d.datdba, 'USAGE')"
    return f"{usage} AND pg_has_role(current_user, d.datdba, 'SET')" if server_version_num >= 160000 else usage


@dataclass(frozen=True)
class DatabaseProperties:
    """What ``pg_dump --create`` would carry for a database, read from the catalog (not carried:
    the grantor of each grant, IS_TEMPLATE, security labels)."""

    owner: str
    encoding: str
    collate: str
    ctype: str
    locale_provider: str | None  # 'c' libc, 'i' icu, 'b' builtin (17+); None before 15
    provider_locale: str | None  # daticulocale / datlocale
    icu_rules: str | None  # 16+
    tablespace: str
    connection_limit: int
    comment: str | None
    may_create: bool  # CREATEDB (or superuser)
    has_owner_rights: bool  # the owner role's privileges (or superuser)
    has_acl: bool  # False: the default ACL, nothing to copy
    grants: tuple[tuple[str, str, bool], ...] = ()  # (privilege, grantee SQL, grantable)
    settings: tuple[tuple[str | None, str], ...] = ()  # (role or None for everyone, "name=value")


def read_properties(backend: PostgresBackend, admin: Any, database: str) -> DatabaseProperties:
    version = admin.execute("SELECT current_setting('server_version_num')::int").fetchone()[0]
    sql = PROPERTIES_SQL.format(locale=locale_columns(version), owner_rights=owner_rights(version))
    row = admin.execute(sql, [database]).fetchone()
    if row is None:
        raise OperationFailed(f"{backend.label}: database {database!r} does not exist")
    if row[4] is not None and row[4] not in PROVIDERS:
        raise OperationFailed(f"{backend.label}: database {database!r} uses locale provider {row[4]!r}, "
                              "which storagectl cannot recreate; nothing was changed",
                              hint="Try: restore into a database you create yourself, without --yes")
    grants = tuple(admin.execute(GRANTS_SQL, [database]).fetchall())
    settings = tuple(admin.execute(SETTINGS_SQL, [database]).fetchall())
    return DatabaseProperties(*row, grants=grants, settings=settings)


def create_statement(props: DatabaseProperties, name: str) -> str:
    """CREATE DATABASE ``name`` shaped like the target (TABLESPACE only when not the default: naming
    pg_default would need CREATE on it, which pg_dump avoids too)."""
    tablespace = "" if props.tablespace == "pg_default" else f" TABLESPACE = {quote_ident(props.tablespace)}"
    return (f"CREATE DATABASE {quote_ident(name)} WITH TEMPLATE = template0 OWNER = {quote_ident(props.owner)} "
            f"ENCODING = {quote_literal(props.encoding)} LC_COLLATE = {quote_literal(props.collate)} "
            f"LC_CTYPE = {quote_literal(props.ctype)}{_locale_options(props)}{tablespace}")


def property_statements(props: DatabaseProperties, name: str) -> list[str]:
    """Settings, connection limit, grants and comment: applied after the load, just before the swap,
    so the restore's own sessions never run under them (read-only defaults, low limits, timeouts)."""
    db = quote_ident(name)
    statements = [setting_statement(db, role, entry) for role, entry in props.settings]
    if props.connection_limit != -1:
        statements.append(f"ALTER DATABASE {db} CONNECTION LIMIT {props.connection_limit}")
    if props.has_acl:
        statements += [f"REVOKE ALL ON DATABASE {db} FROM PUBLIC",
                       f"REVOKE ALL ON DATABASE {db} FROM {quote_ident(props.owner)}"]
        statements += [f"GRANT {privilege} ON DATABASE {db} TO {grantee}" + (" WITH GRANT OPTION" if grantable else "")
                       for privilege, grantee, grantable in props.grants]
    if props.comment is not None:
        statements.append(f"COMMENT ON DATABASE {db} IS {quote_literal(props.comment)}")
    return statements


def _locale_options(props: DatabaseProperties) -> str:
    if props.locale_provider is None:
        return ""
    provider, locale_option = PROVIDERS[props.locale_provider]
    options = f" LOCALE_PROVIDER = {provider}"
    if locale_option and props.provider_locale:
        options += f" {locale_option} = {quote_literal(props.provider_locale)}"
    if props.icu_rules:
        options += f" ICU_RULES = {quote_literal(props.icu_rules)}"
    return options


def setting_statement(db: str, role: str | None, entry: str) -> str:
    name, _, value = entry.partition("=")
    if name in LIST_SETTINGS:
        try:
            elements = split_guc_list(value)
        except ValueError as exc:
            raise OperationFailed(f"cannot copy the database setting {name} ({exc}); nothing was changed",
                                  hint=f"Try: fix it with ALTER DATABASE ... SET {name}, then rerun") from None
        value_sql = ", ".join(quote_literal(element) for element in elements) or "''"
    else:
        value_sql = quote_literal(value)
    target = f"ROLE {quote_ident(role)} IN DATABASE {db}" if role else f"DATABASE {db}"
    return f"ALTER {target} SET {quote_ident(name)} TO {value_sql}"


def split_guc_list(value: str) -> list[str]:
    """The elements of a stored list GUC (``"$user", public``), parsed like PostgreSQL's
    SplitGUCList: comma separated, each optionally double-quoted with ``""`` for a quote, no case
    folding. Raises ValueError for a value PostgreSQL itself would reject."""
    elements: list[str] = []
    index = _skip_spaces(value, 0)
    while index < len(value):
        if value[index] == '"':
            element, index = _quoted(value, index + 1)
        else:
            end = index
            while end < len(value) and value[end] != "," and not value[end].isspace():
                end += 1
            if end == index:
                raise ValueError(f"empty list element in {value!r}")
            element, index = value[index:end], end
        elements.append(element)
        index = _skip_spaces(value, index)
        if index < len(value):
            if value[index] != ",":
                raise ValueError(f"not a list: {value!r}")
            index = _skip_spaces(value, index + 1)
            if index == len(value):
                raise ValueError(f"list ends with a comma: {value!r}")
    return elements


def _skip_spaces(value: str, index: int) -> int:
    while index < len(value) and value[index].isspace():
        index += 1
    return index


def _quoted(value: str, index: int) -> tuple[str, int]:
    element = []
    while index < len(value):
        if value[index] == '"':
            if value[index + 1:index + 2] != '"':
                return "".join(element), index + 1
            index += 1
        element.append(value[index])
        index += 1
    raise ValueError(f"unterminated quote in {value!r}")


def side_name(database: str, role: str, token: str) -> str:
    """``<database>__stctl_<role>_<token>`` within PostgreSQL's 63-byte name limit."""
    suffix = f"__stctl_{role}_{token}"
    stem = database.encode("utf-8")[: NAME_BYTES - len(suffix)].decode("utf-8", "ignore")
    return stem + suffix


# -- the replacement ------------------------------------------------------------------------------
def check_replace(backend: PostgresBackend) -> DatabaseProperties:
    """Everything a replacement needs, checked before any work: the maintenance database, the
    target's properties and the role's rights."""
    with backend.connect_admin() as admin:
        _admin_session(admin)
        target = backend.current_database()
        props = read_properties(backend, admin, target)
    missing = [need for need, held in (("CREATEDB", props.may_create),
                                       (f"the privileges of its owner role {props.owner!r}", props.has_owner_rights))
               if not held]
    if missing:
        fixes = [fix for fix, held in (("ALTER ROLE <backup role> CREATEDB", props.may_create),
                                       (f"GRANT {quote_ident(props.owner)} TO <backup role>", props.has_owner_rights))
                 if not held]
        raise PermissionDenied(
            f"{backend.label}: replacing database {target!r} needs {' and '.join(missing)} (it is restored beside "
            "the old one and swapped in); nothing was changed", hint=f"Try: {'; '.join(fixes)}")
    return props


@dataclass
class Replacement:
    staged: PostgresBackend  # the new database, to restore into
    notes: list[str] = field(default_factory=list)  # for the operator, after the swap


class SwapOutcomeUnknown(OperationFailed):
    """The connection was lost while the rename committed and the server cannot tell us now."""


class CannotStage(PermissionDenied):
    """The new database cannot be made like the target (e.g. an extension the role may not create):
    raised before any data is loaded; an empty target can still be restored in place."""


@contextmanager
def staged_replacement(backend: PostgresBackend, props: DatabaseProperties, *,
                       extensions: tuple[tuple[str, str, str], ...] = (), kept: str = KEPT) -> Iterator[Replacement]:
    """A backend on a new database shaped like ``backend``'s (``props``, from :func:`check_replace`)
    holding ``extensions`` (name, schema, version). When the block exits normally the new database
    replaces the target (the old one is dropped); when it raises, the new database is dropped and
    the target is untouched (``kept`` says so). Errors say which state they leave."""
    target = backend.current_database()
    token = secrets.token_hex(4)
    staged_name, old_name = side_name(target, "restore", token), side_name(target, "old", token)
    replacement = Replacement(backend.for_database(staged_name))
    problems: list[str] = []  # what a failure leaves for the operator to fix, besides the old contents
    swapped = False
    with backend.connect_admin() as guard:
        hold_guards(backend, guard, (target, staged_name))  # released with the session, by a kill -9 too
        replacement.notes += drop_stale_side_databases(backend, guard, target)
        try:
            with backend.connect_admin() as admin:
                _admin_session(admin)
                _run(backend, admin, create_statement(props, staged_name), f"creating the database {staged_name}")
                _try_properties(backend, admin, props, staged_name)  # fails now, not after hours of loading
            _carry_extensions(backend, replacement.staged, extensions)
            yield replacement
            with backend.connect_admin() as admin:
                _admin_session(admin)
                for statement in property_statements(props, staged_name):
                    _run(backend, admin, statement, f"copying the target's properties to {staged_name}")
                interrupt = _swap(backend, admin, target, staged_name, old_name, problems)
                swapped = True
        except SwapOutcomeUnknown:
            raise
        except CannotStage:
            _drop(backend, staged_name)
            raise
        except BaseException as exc:
            if swapped or _exists(backend, old_name):  # e.g. an interrupt while the admin connection closed
                raise_with_state(exc, f"the restored database was swapped in; the old contents are in database "
                                      f"{old_name}: drop it")
            if not _drop(backend, staged_name):
                problems.append(f"the new database {staged_name} could not be dropped: drop it")
            raise_with_state(exc, "; ".join([kept, *problems]))
        if interrupt is not None:
            raise_with_state(interrupt, f"just after the restored database was swapped in; the old contents are "
                                        f"in database {old_name}: drop it")
        _drop_after_swap(backend, old_name, replacement)


def read_extensions(conn: Any) -> tuple[tuple[str, str, str], ...]:
    """The database's extensions but plpgsql, as (name, schema, version), in creation order."""
    return tuple(conn.execute(EXTENSIONS_SQL).fetchall())


def _carry_extensions(backend: PostgresBackend, staged: PostgresBackend,
                      extensions: tuple[tuple[str, str, str], ...]) -> None:
    """Create the target's extensions (e.g. installed through template1) in the new database, as a
    restore into the target itself would have found them."""
    import psycopg

    if not extensions:
        return
    with staged.connect() as conn:
        for name, schema, version in extensions:
            exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]).fetchone()
            where = f" SCHEMA {quote_ident(schema)}" if exists else ""  # else the control file names it
            try:
                conn.execute(f"CREATE EXTENSION IF NOT EXISTS {quote_ident(name)}{where} "
                             f"VERSION {quote_literal(version)} CASCADE")
            except psycopg.Error as exc:
                raise CannotStage(f"{backend.label}: cannot create extension {name} in a new database "
                                  f"({backend.error_line(exc)})",
                                  hint="Try: ALTER ROLE <backup role> SUPERUSER, or install it in template1") from exc


def drop_stale_side_databases(backend: PostgresBackend, conn: Any, target: str) -> list[str]:
    """Drop what restores into ``target`` that no longer run left behind (a ``kill -9``, a lost
    machine): ``__stctl_restore_<token>`` databases, and ``__stctl_old_<token>`` ones (the old
    contents, after a kill just after the swap). A restore guards its staging name until it has
    dropped the old database, so both are stale when nobody holds the guard of
    ``__stctl_restore_<token>``. An old database someone is connected to (reading the old
    contents) is kept. Returns what was dropped, for the operator."""
    notes = []
    for role, force, what in (("restore", True, "left behind by an earlier restore that no longer runs"),
                              ("old", False, "the old contents left behind by an earlier restore that no longer "
                                             "runs")):
        for name, token in _side_databases(conn, target, role):
            if guard_held(conn, side_name(target, "restore", token)) or not _drop(backend, name, force=force):
                continue
            log.warning("%s: dropped database %s, %s (into %r)", backend.label, name, what, target)
            notes.append(f"dropped database {name}, {what}")
    return notes


def _side_databases(conn: Any, target: str, role: str) -> list[tuple[str, str]]:
    """(name, token) of the ``<target>__stctl_<role>_<token>`` databases of the server."""
    stem = side_name(target, role, "0" * 8)[:-8]
    rows = conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)", [stem]).fetchall()
    return [(name, name[len(stem):]) for (name,) in rows if re.fullmatch("[0-9a-f]{8}", name[len(stem):])]


def _admin_session(admin: Any) -> None:
    # quote_literal doubles quotes only: backslashes must not be escapes in this session
    admin.execute("SET standard_conforming_strings = on")


def _try_properties(backend: PostgresBackend, admin: Any, props: DatabaseProperties, name: str) -> None:
    """Apply the target's settings, limit, grants and comment to the new database and roll back:
    whatever the role may not do (a superuser-only setting, another role's settings) fails here."""
    with admin.transaction(force_rollback=True):
        for statement in property_statements(props, name):
            _run(backend, admin, statement, f"copying the target's properties to {name}")


def _swap(backend: PostgresBackend, admin: Any, target: str, staged: str, old: str,
          problems: list[str]) -> KeyboardInterrupt | None:
    """Both renames in one transaction: clients see either the old database or the new one. A client
    pool that reconnects at once can make the rename fail; the last attempt therefore also stops new
    connections to the target for the moment of the swap. Returns the interrupt that arrived after
    the rename had committed, if one did; raises (with ``problems`` filled in) when not swapped."""
    import psycopg

    pid = admin.info.backend_pid
    for attempt in range(1, SWAP_ATTEMPTS + 1):
        block = attempt == SWAP_ATTEMPTS
        try:
            if block:
                admin.execute(f"ALTER DATABASE {quote_ident(target)} ALLOW_CONNECTIONS false")
            _terminate_sessions(backend, admin, (target, staged))
            with admin.transaction():
                admin.execute(f"ALTER DATABASE {quote_ident(target)} RENAME TO {quote_ident(old)}")
                admin.execute(f"ALTER DATABASE {quote_ident(staged)} RENAME TO {quote_ident(target)}")
            return None
        except BaseException as exc:
            refused = isinstance(exc, psycopg.Error | StoragectlError) and not admin.broken
            swapped = False if refused else swap_state(backend, staged, old, pid)  # ends the old session first
            if swapped:
                return exc if isinstance(exc, KeyboardInterrupt) else None
            if block:
                problems.extend(_reopen(backend, target, staged) if swapped is False else [
                    f"connections to {target!r} may be blocked: run ALTER DATABASE {quote_ident(target)} "
                    "ALLOW_CONNECTIONS true if so"])
            if swapped is None:
                raise SwapOutcomeUnknown(
                    f"{backend.label}: the swap of the restored database was cut off (connection lost or "
                    f"interrupted) and whether it committed is unknown: {target!r} holds either the old or the "
                    f"restored contents, and {staged!r} or {old!r} the other" + "".join(f"; {p}" for p in problems),
                    hint=f"Try: psql -l to see which exists; drop {staged} or {old} once checked") from exc
            if isinstance(exc, psycopg.errors.ObjectInUse) and not block:
                time.sleep(0.5 * attempt)
                continue
            error = _swap_error(backend, exc, target, lost=not refused)
            if error is exc:
                raise
            raise error from exc
    raise AssertionError("unreachable: the last attempt returns or raises")


def _swap_error(backend: PostgresBackend, exc: BaseException, target: str, *, lost: bool) -> BaseException:
    import psycopg

    if isinstance(exc, KeyboardInterrupt | StoragectlError):
        return exc
    if isinstance(exc, psycopg.errors.ObjectInUse):
        return OperationFailed(f"{backend.label}: cannot swap in the restored database: {target!r} is still in use "
                               f"({backend.error_line(exc)})", hint="Try: stop the clients using it, then rerun")
    if lost:
        return OperationFailed(f"{backend.label}: connection lost while swapping in the restored database: "
                               f"{backend.error_line(exc)}", hint="Try: check the server, then rerun")
    return OperationFailed(f"{backend.label}: swapping in the restored database failed: {backend.error_line(exc)}",
                           hint="Try: check the server log for details")


def _reopen(backend: PostgresBackend, target: str, staged: str) -> list[str]:
    """Undo ALLOW_CONNECTIONS false on the (still old) target after a failed swap, on a fresh
    connection (the failure may have been the old one's); returns what the operator must do if it
    could not, for the error message."""
    command = f"ALTER DATABASE {quote_ident(target)} ALLOW_CONNECTIONS true"
    try:
        with backend.connect_admin() as admin:
            admin.execute("SET lock_timeout = '10s'")
            if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [staged]).fetchone():
                admin.execute(command)  # not swapped: the target is still the old database
        return []
    except BaseException as exc:  # noqa: BLE001 - the swap's own failure is what propagates
        log.error("%s: connections to %r may still be blocked (%s); run: %s", backend.label, target,
                  backend.error_line(exc), command)
        return [f"connections to {target!r} may still be blocked: run {command}"]


def _terminate_sessions(backend: PostgresBackend, admin: Any, databases: tuple[str, ...]) -> None:
    import psycopg

    try:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = ANY(%s) AND pid <> pg_backend_pid()", [list(databases)])
    except psycopg.errors.InsufficientPrivilege as exc:
        raise PermissionDenied(
            f"{backend.label}: cannot disconnect the sessions on {databases[0]!r} to swap in the restored "
            f"database ({backend.error_line(exc)})",
            hint="Try: GRANT pg_signal_backend TO <backup role>, or stop those clients first") from exc


def swap_state(backend: PostgresBackend, staged: str, old: str, pid: int, wait: float = 10.0) -> bool | None:
    """After the swap's connection was lost: True if the rename committed, False if not, None when
    the server cannot tell. The old session (``pid``) is ended first, so an uncommitted rename it
    may still hold rolls back instead of committing behind our back."""
    try:
        with backend.connect_admin() as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
            deadline = time.monotonic() + wait
            while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
                if time.monotonic() > deadline:
                    return None
                time.sleep(0.05)
            names = {row[0] for row in admin.execute(
                "SELECT datname FROM pg_database WHERE datname = ANY(%s)", [[staged, old]])}
    except BaseException:  # noqa: BLE001 - unreachable or interrupted again: unknown, said as such
        return None
    return {frozenset({old}): True, frozenset({staged}): False}.get(frozenset(names))


def _exists(backend: PostgresBackend, name: str) -> bool:
    try:
        with backend.connect_admin() as admin:
            return admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None
    except BaseException:  # noqa: BLE001 - cannot tell: the caller's message stands
        return False


def _run(backend: PostgresBackend, admin: Any, statement: str, doing: str) -> None:
    import psycopg

    try:
        admin.execute(statement)
    except psycopg.Error as exc:
        raise OperationFailed(f"{backend.label}: {doing} failed: {backend.error_line(exc)}",
                              hint="Try: check the server log for details") from exc


def _drop(backend: PostgresBackend, name: str, *, force: bool = True) -> bool:
    """Best effort; False when the database is still there (e.g. a logical replication slot uses it;
    without ``force``, a session is connected to it)."""
    import psycopg

    try:
        with backend.connect_admin() as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)}" + (" WITH (FORCE)" if force else ""))
        return True
    except (psycopg.Error, StoragectlError) as exc:
        log.warning("%s: could not drop database %s (%s)", backend.label, name, backend.error_line(exc))
        return False


def _drop_after_swap(backend: PostgresBackend, old_name: str, replacement: Replacement) -> None:
    try:
        dropped = _drop(backend, old_name)
    except KeyboardInterrupt as exc:
        raise_with_state(exc, f"after the restored database was swapped in; the old contents are in database "
                              f"{old_name}: drop it when done")
    if not dropped:
        replacement.notes.append(f"the old contents are kept in database {old_name}, which could not be dropped "
                                 f"(see the warning above); to read it first: ALTER DATABASE {quote_ident(old_name)} "
                                 "ALLOW_CONNECTIONS true; drop it when done")
