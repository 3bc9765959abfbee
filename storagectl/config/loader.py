"""Find, read, interpolate and validate the YAML configuration file.

Every problem is reported as ``file:line key.path: message`` so an operator can jump to it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from difflib import get_close_matches
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError, field_validator

from storagectl.config.document import Loc, YamlDocument
from storagectl.config.models import (
    NAME_PATTERN,
    BackendSettings,
    Config,
    DataMigrationSettings,
    DestinationSettings,
    JobSettings,
    StrictModel,
    TableMapSettings,
    ToolsSettings,
    one_entry_per_source,
    valid_name,
)
from storagectl.config.source import (  # noqa: F401 - find_config_path, user_config_path: re-exported
    find_config_path,
    one_line,
    read_config_file,
    user_config_path,
)
from storagectl.errors import ConfigError
from storagectl.redact import has_userinfo, is_secret_key


class RawConfig(StrictModel):
    version: int = 1
    backends: dict[str, dict[str, Any]] = {}
    destinations: dict[str, dict[str, Any]] = {}
    jobs: dict[str, dict[str, Any]] = {}
    tools: dict[str, Any] = {}
    data_migrations: dict[str, dict[str, Any]] = {}


def load_config(explicit: Path | None = None, environ: dict[str, str] | None = None) -> Config:
    path = find_config_path(explicit)
    return parse_config(read_config_file(path), path, os.environ if environ is None else environ)


def parse_config(text: str, path: Path, environ: dict[str, str] | os._Environ[str]) -> Config:
    return validate_document(YamlDocument(text, path, environ))


def validate_document(document: YamlDocument) -> Config:
    """The config ``document`` holds; every problem of it in one ConfigError."""
    path = document.path
    data = document.data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}:1 the config file must be a mapping with backends, destinations and jobs",
            problems=[f"{path}:1 the config file must be a mapping with backends, destinations and jobs"],
        )
    # Top-level x-* keys hold YAML anchors to merge elsewhere (`<<: *defaults`), as in docker compose.
    data = {key: value for key, value in data.items() if not key.startswith("x-")}
    return _ConfigValidator(document).validate(data)


class _ConfigValidator:
    def __init__(self, document: YamlDocument) -> None:
        self.document = document
        self.problems: list[str] = list(document.problems)
        self.context = {"base_dir": document.path.parent.resolve()}

    def validate(self, data: dict[str, Any]) -> Config:
        raw = self._model(RawConfig, data, ())
        if raw is None:
            raise self._error()
        backends = self._entries("backends", raw.backends, _backend_settings_class)
        destinations = self._entries("destinations", raw.destinations, _destination_settings_class)
        jobs = {
            name: job
            for name, entry in raw.jobs.items()
            if self._check_name(("jobs", name)) and (job := self._model(JobSettings, entry, ("jobs", name)))
        }
        tools = self._model(ToolsSettings, raw.tools, ("tools",)) or ToolsSettings()
        moves = {
            name: move
            for name, entry in raw.data_migrations.items()
            if self._check_name(("data_migrations", name))
            and (move := self._model(DataMigrationSettings, entry, ("data_migrations", name)))
        }
        config = Config(self.document.path, backends, destinations, jobs, tools, moves)
        self._cross_references(raw, config)
        if self.problems:
            raise self._error()
        return config

    def _error(self) -> ConfigError:
        """One line per problem, each reported once (a merged mapping's problem shows up at every merge)."""
        problems = [one_line(problem) for problem in dict.fromkeys(self.problems)]
        return ConfigError(problems[0], problems=problems)

    def _entries(self, section: str, entries: dict[str, dict[str, Any]], settings_class) -> dict[str, Any]:
        result = {}
        for name, entry in entries.items():
            loc = (section, name)
            if not self._check_name(loc):
                continue
            if not isinstance(entry, dict):
                self._problem(loc, "must be a mapping with at least `kind`")
                continue
            kind = entry.get("kind")
            if kind is None:
                self._problem(loc, "required key `kind` is missing")
                continue
            try:
                cls = settings_class(str(kind))
            except ConfigError as exc:
                self._problem((*loc, "kind"), exc.message)
                continue
            model = self._model(cls, entry, loc)
            if model is not None:
                result[name] = model
        return result

    def _check_name(self, loc: Loc) -> bool:
        if valid_name(str(loc[-1])):
            return True
        self._problem(loc, f"invalid name; names must match {NAME_PATTERN}")
        return False

    def _model(self, model: type[BaseModel], data: Any, loc: Loc) -> Any:
        try:
            return model.model_validate(data, context=self.context)
        except ValidationError as exc:
            for error in _entry_errors(exc.errors(include_url=False)):
                self._validation_problem(model, loc, _input_loc(error["loc"], data), error)
            return None

    def _validation_problem(self, model: type[BaseModel], loc: Loc, error_loc: Loc, error: dict[str, Any]) -> None:
        full = (*loc, *error_loc)
        kind = error["type"]
        if kind == "extra_forbidden" and error_loc:
            fields = _fields_at(model, error_loc[:-1])
            close = get_close_matches(str(error_loc[-1]), fields, n=1, cutoff=0.6)
            message = "unknown key" + (f" (did you mean {close[0]}?)" if close else "")
            if not close and fields:
                message += f"; valid keys: {', '.join(fields)}"
        elif kind == "missing":
            message = "required key is missing"
        else:
            message = error["msg"].removeprefix("Value error, ")
            message += self._got(full, error.get("input"), message)
        self._problem(full, message)

    def _got(self, loc: Loc, bad: Any, message: str) -> str:
        """`` (got 'value')`` -- unless the value is a secret or came from the environment."""
        names = self.document.environment_names(loc)
        if names:
            return " (value from " + ", ".join(f"${name}" for name in names) + " not shown)"
        if (loc and is_secret_key(str(loc[-1]))) or not isinstance(bad, str | int | float) or repr(bad) in message \
                or has_userinfo(bad):
            return ""
        return f" (got {bad!r})"

    def _problem(self, loc: Loc, message: str) -> None:
        """Every message passes here: whatever a validator quoted, environment values are masked."""
        self.problems.append(f"{self.document.where(loc)}: {self.document.scrub(message)}")

    def _cross_references(self, raw: RawConfig, config: Config) -> None:
        """Job references, checked on the raw entries so they are reported with other problems."""
        for name, job in raw.jobs.items():
            if not isinstance(job, dict):
                continue
            backends = job.get("backends")
            for i, backend in enumerate(backends if isinstance(backends, list) else []):
                if str(backend) not in raw.backends:
                    self._unknown_ref(("jobs", name, "backends", i), "backend", str(backend), raw.backends)
            destination = job.get("destination")
            if destination is not None and str(destination) not in raw.destinations:
                self._unknown_ref(("jobs", name, "destination"), "destination", str(destination),
                                  raw.destinations)
            self._check_selection(name, job, raw)
            lock = job.get("lock")
            lock_name = lock.get("backend") if isinstance(lock, dict) else None
            if lock_name is not None:
                self._check_lock_backend(("jobs", name, "lock", "backend"), str(lock_name), raw)

        for name, move in raw.data_migrations.items():
            for side in ("source", "target"):
                backend = move.get(side) if isinstance(move, dict) else None
                if backend is not None and str(backend) not in raw.backends:
                    self._unknown_ref(("data_migrations", name, side), "backend", str(backend), raw.backends)

    def _check_selection(self, job: str, entry: dict[str, Any], raw: RawConfig) -> None:
        """Each ``select:`` key must apply to every backend of the job (``--table`` is no Redis option)."""
        from storagectl.selection import OPTIONS

        select, backends = entry.get("select"), entry.get("backends")
        if not isinstance(select, dict) or not isinstance(backends, list):
            return
        for key in (key for key in select if key in OPTIONS and select[key]):
            for backend in backends:
                kind = raw.backends.get(str(backend), {}).get("kind") if isinstance(
                    raw.backends.get(str(backend)), dict) else None
                fields = _selection_fields(str(kind)) if kind else None
                if fields is not None and key not in fields:
                    takes = ", ".join(fields) or "no select keys"
                    self._problem(("jobs", job, "select", key), f"does not apply to backend {backend!r} ({kind}); "
                                  f"a {kind} backend takes {takes}")
                    break

    def _check_lock_backend(self, loc: Loc, name: str, raw: RawConfig) -> None:
        entry = raw.backends.get(name)
        if entry is None:
            self._unknown_ref(loc, "backend", name, raw.backends)
        elif isinstance(entry, dict) and entry.get("kind") != "redis":
            self._problem(loc, f"lock backend {name!r} is a {entry.get('kind')} backend; it must be redis")

    def _unknown_ref(self, loc: Loc, what: str, name: str, known: Iterable[str]) -> None:
        known = list(known)
        close = get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else f"; configured: {', '.join(known) or 'none'}"
        self._problem(loc, f"unknown {what} {name!r}{hint}")


def load_table_maps(path: Path, environ: dict[str, str] | None = None) -> list[TableMapSettings]:
    """``--map FILE``: a YAML mapping with ``tables:``, a list as in a ``data_migrations`` entry,
    validated like the config (``file:line key: problem``, unknown keys rejected). Its errors point at
    the map file, not at ``config validate``, which does not read it."""
    hint = "Try: fix the --map file (a YAML mapping with a tables: list, as in a data_migrations entry)"
    try:
        document = YamlDocument(read_config_file(path), path, os.environ if environ is None else environ)
    except ConfigError as exc:
        def reword(line: str) -> str:
            return line.replace("config file", "--map file")

        raise ConfigError(reword(exc.message), problems=[reword(line) for line in exc.problems],
                          hint=hint) from None
    validator = _ConfigValidator(document)
    data = document.data if isinstance(document.data, dict) else {"tables": document.data}
    found = validator._model(TableMapFile, data, ())
    if found is None or validator.problems:
        error = validator._error()
        error.hint = hint
        raise error
    # a name alone moves that table as it is, as in a data_migrations entry
    return [TableMapSettings(source=entry) if isinstance(entry, str) else entry for entry in found.tables]


class TableMapFile(StrictModel):
    tables: list[TableMapSettings | str]

    @field_validator("tables")
    @classmethod
    def _one_entry_per_source(cls, tables: list[TableMapSettings | str]) -> list[TableMapSettings | str]:
        return one_entry_per_source(tables)


def _backend_settings_class(kind: str) -> type[BackendSettings]:
    from storagectl.backends import backend_class

    return backend_class(kind).Settings


def _selection_fields(kind: str) -> tuple[str, ...] | None:
    from storagectl.backends import backend_class

    try:
        return tuple(backend_class(kind).selection_fields)
    except ConfigError:
        return None  # an unknown kind is reported where it is named


def _destination_settings_class(kind: str) -> type[DestinationSettings]:
    from storagectl.destinations import destination_class

    return destination_class(kind).Settings


def _input_loc(error_loc: tuple[Any, ...], data: Any) -> Loc:
    """The error's location in the input: pydantic adds union/validator tags (``function-after[...]``,
    ``list[int]``) to it, which are dropped -- unless the input really has a key of that name."""
    result: list[str | int] = []
    for part in error_loc:
        present = isinstance(data, dict) and part in data or (
            isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data))
        if present:
            data = data[part]
        elif _is_pydantic_tag(part):
            continue
        else:
            data = None
        result.append(part)
    return tuple(result)


SCALAR_BRANCHES = {"str": "name", "int": "number", "float": "number", "bool": "boolean"}


def _entry_errors(errors: list[Any]) -> list[Any]:
    """The errors of a 'name or mapping' entry (``TableMapSettings | str``) as one problem each:
    pydantic reports every branch of the union. A mapping is explained by the mapping branch's errors
    (``tables.0.renmes: unknown key``) without the scalar branch's ``tables.0.str: Input should be a
    valid string``, which names a key that is not there; anything else (``3``, a list) by one line at
    the entry, ``tables.0: Input should be a name or a mapping``, without the mapping branch's line
    naming a class."""
    unions = {tuple(error["loc"][:-1]) for error in errors if error["loc"] and error["loc"][-1] in SCALAR_BRANCHES}
    kept = []
    for error in errors:
        loc = tuple(error["loc"])
        if not loc or loc[:-1] not in unions:
            kept.append(error)
        elif loc[-1] in SCALAR_BRANCHES:
            if not isinstance(error.get("input"), dict):
                message = f"Input should be a {SCALAR_BRANCHES[loc[-1]]} or a mapping"
                kept.append({**error, "loc": loc[:-1], "msg": message})
        elif error["type"] != "model_type":
            kept.append(error)
    return kept


def _is_pydantic_tag(part: Any) -> bool:
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


def _fields_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """The field names of the (sub)model found at ``loc`` inside ``model``, for did-you-mean."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            current = _unwrap(current, part)
            continue
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        current = _unwrap(field.annotation, None)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(annotation: Any, part: Any) -> Any:
    """Strip Optional / list / dict to the model inside, if any."""
    for _ in range(4):
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation
        args = [a for a in get_args(annotation) if a is not type(None)]
        if not args:
            return annotation
        origin = get_origin(annotation)
        annotation = args[-1] if origin is dict else args[0]
    return annotation
