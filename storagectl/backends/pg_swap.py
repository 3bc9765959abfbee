"""``restore --yes`` over a non-empty PostgreSQL database without risking its contents.

The backup is restored into a new database beside the target (same owner, encoding, locale,
tablespace), which gets the target's database-level settings, grants, connection limit and
comment. Only when that restore is complete -- and, with ``--validate``, proven equal to the
backup -- are the two swapped by renaming both in one transaction; the old database is dropped
afterwards. Until the swap the target keeps serving its old contents; a failure at any point
before it drops only the new database. Sessions still connected to the target are terminated at
the swap, because PostgreSQL cannot rename a database that is in use.

Needs CREATEDB (or superuser) and ownership of the target database; checked before any work.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from storagectl.backends.pg_schema import quote_ident, quote_literal
from storagectl.errors import OperationFailed, PermissionDenied

if TYPE_CHECKING:
    from storagectl.backends.postgres import PostgresBackend

NAME_BYTES = 63  # NAMEDATALEN - 1
SWAP_ATTEMPTS = 3  # a client reconnecting between terminate and rename makes the rename fail
# GUCs whose stored per-database value is a list of already-quoted identifiers (GUC_LIST_QUOTE):
# written back verbatim, as pg_dump does, not as one string literal.
LIST_SETTINGS = frozenset({"search_path", "temp_tablespaces", "session_preload_libraries",
                           "local_preload_libraries", "shared_preload_libraries"})

PROPERTIES_SQL = """
SELECT pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), d.datcollate, d.datctype, {locale},
       t.spcname, d.datconnlimit, shobj_description(d.oid, 'pg_database'),
       rolsuper OR (rolcreatedb AND pg_has_role(current_user, d.datdba, 'MEMBER'))
FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace
JOIN pg_roles r ON r.rolname = current_user
WHERE d.datname = %s
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
GRANTS_SQL = """
SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
       a.is_grantable
FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = %s AND d.datacl IS NOT NULL
"""
SETTINGS_SQL = """
SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole) END, unnest(s.setconfig)
FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = %s
"""


@dataclass(frozen=True)
class DatabaseProperties:
    """What ``pg_dump --create`` would carry for a database, read from the catalog."""

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
    may_swap: bool  # CREATEDB (or superuser) and a member of the owning role
    grants: tuple[tuple[str, str, bool], ...]  # (privilege, grantee SQL, grantable); () = default ACL
    has_acl: bool
    settings: tuple[tuple[str | None, str], ...]  # (role or None for everyone, "name=value")


def read_properties(admin: Any, database: str) -> DatabaseProperties:
    version = admin.execute("SELECT current_setting('server_version_num')::int").fetchone()[0]
    row = admin.execute(PROPERTIES_SQL.format(locale=locale_columns(version)), [database]).fetchone()
    if row is None:
        raise OperationFailed(f"database {database!r} does not exist")
    grants = tuple(admin.execute(GRANTS_SQL, [database]).fetchall())
    has_acl = admin.execute("SELECT datacl IS NOT NULL FROM pg_database WHERE datname = %s", [database]).fetchone()[0]
    settings = tuple(admin.execute(SETTINGS_SQL, [database]).fetchall())
    return DatabaseProperties(*row, grants=grants, has_acl=has_acl, settings=settings)


def create_statements(props: DatabaseProperties, name: str) -> list[str]:
    """CREATE DATABASE ``name`` like the target, then its settings, grants and comment."""
    db = quote_ident(name)
    statements = [
        f"CREATE DATABASE {db} WITH TEMPLATE = template0 OWNER = {quote_ident(props.owner)} "
        f"ENCODING = {quote_literal(props.encoding)} LC_COLLATE = {quote_literal(props.collate)} "
        f"LC_CTYPE = {quote_literal(props.ctype)}{_locale_options(props)} "
        f"TABLESPACE = {quote_ident(props.tablespace)} CONNECTION LIMIT = {props.connection_limit}",
    ]
    statements += [_setting_statement(db, role, entry) for role, entry in props.settings]
    if props.has_acl:
        statements += [f"REVOKE ALL ON DATABASE {db} FROM PUBLIC",
                       f"REVOKE ALL ON DATABASE {db} FROM {quote_ident(props.owner)}"]
        statements += [f"GRANT {privilege} ON DATABASE {db} TO {grantee}" + (" WITH GRANT OPTION" if grantable else "")
                       for privilege, grantee, grantable in props.grants]
    if props.comment is not None:
        statements.append(f"COMMENT ON DATABASE {db} IS {quote_literal(props.comment)}")
    return statements


PROVIDERS = {"c": ("libc", None), "i": ("icu", "ICU_LOCALE"), "b": ("builtin", "BUILTIN_LOCALE")}


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


def _setting_statement(db: str, role: str | None, entry: str) -> str:
    name, _, value = entry.partition("=")
    value_sql = value if name in LIST_SETTINGS else quote_literal(value)
    target = f"ROLE {quote_ident(role)} IN DATABASE {db}" if role else f"DATABASE {db}"
    return f"ALTER {target} SET {quote_ident(name)} TO {value_sql}"


def side_name(database: str, role: str, token: str) -> str:
    """``<database>__stctl_<role>_<token>`` within PostgreSQL's 63-byte name limit."""
    suffix = f"__stctl_{role}_{token}"
    stem = database.encode("utf-8")[: NAME_BYTES - len(suffix)].decode("utf-8", "ignore")
    return stem + suffix


@contextmanager
def staged_replacement(backend: PostgresBackend) -> Iterator[PostgresBackend]:
    """A backend on a new, empty database shaped like ``backend``'s. When the block exits normally
    the new database replaces the target (the old one is dropped); when it raises, the new database
    is dropped and the target is untouched."""
    target = backend.database_name()
    token = secrets.token_hex(4)
    staged_name, old_name = side_name(target, "restore", token), side_name(target, "old", token)
    with backend.connect_admin() as admin:
        props = read_properties(admin, target)
        _require_swap_rights(backend, props, target)
        for statement in create_statements(props, staged_name):
            _run(backend, admin, statement, f"creating the staging database {staged_name}")
    try:
        yield backend.for_database(staged_name)
        with backend.connect_admin() as admin:
            _swap(backend, admin, target, staged_name, old_name)
    except BaseException:
        _drop_quietly(backend, staged_name)
        raise
    _drop_quietly(backend, old_name)


def _require_swap_rights(backend: PostgresBackend, props: DatabaseProperties, target: str) -> None:
    if not props.may_swap:
        raise PermissionDenied(
            f"{backend.label}: replacing database {target!r} needs CREATEDB and membership in its owner "
            f"role {props.owner!r} (it is restored beside the old one and swapped in); nothing was changed",
            hint=f"Try: ALTER ROLE <backup role> CREATEDB; GRANT {quote_ident(props.owner)} TO <backup role>",
        )


def _swap(backend: PostgresBackend, admin: Any, target: str, staged: str, old: str) -> None:
    """Both renames in one transaction: clients see either the old database or the new one."""
    import psycopg

    for attempt in range(1, SWAP_ATTEMPTS + 1):
        try:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid()", [target])
            with admin.transaction():
                admin.execute(f"ALTER DATABASE {quote_ident(target)} RENAME TO {quote_ident(old)}")
                admin.execute(f"ALTER DATABASE {quote_ident(staged)} RENAME TO {quote_ident(target)}")
            return
        except psycopg.errors.ObjectInUse as exc:
            if attempt == SWAP_ATTEMPTS:
                raise OperationFailed(
                    f"{backend.label}: cannot swap in the restored database: {target!r} is still in use "
                    f"({backend.error_line(exc)}); the old contents were kept",
                    hint="Try: stop the clients that reconnect to it, then rerun the restore") from exc
            time.sleep(0.5 * attempt)
        except psycopg.errors.InsufficientPrivilege as exc:
            raise PermissionDenied(
                f"{backend.label}: cannot disconnect the sessions on {target!r} to swap in the restored "
                f"database ({backend.error_line(exc)}); the old contents were kept",
                hint="Try: GRANT pg_signal_backend TO <backup role>, or stop those clients first") from exc
        except psycopg.Error as exc:
            raise OperationFailed(
                f"{backend.label}: swapping in the restored database failed: {backend.error_line(exc)}; "
                "the old contents were kept", hint="Try: check the server log for details") from exc



def _run(backend: PostgresBackend, admin: Any, statement: str, doing: str) -> None:
    import psycopg

    try:
        admin.execute(statement)
    except psycopg.Error as exc:
        raise OperationFailed(f"{backend.label}: {doing} failed: {backend.error_line(exc)}; nothing was changed",
                              hint="Try: check the server log for details") from exc


def _drop_quietly(backend: PostgresBackend, name: str) -> None:
    """Best effort: a database that cannot be dropped (e.g. a logical replication slot uses it) is
    left for the operator, named in the log."""
    import logging

    import psycopg

    from storagectl.errors import StoragectlError

    try:
        with backend.connect_admin() as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
    except (psycopg.Error, StoragectlError) as exc:
        logging.getLogger(__name__).warning("%s: could not drop database %s (%s); drop it by hand",
                                            backend.label, name, backend.error_line(exc))
