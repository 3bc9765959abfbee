"""Find, read, interpolate and validate the YAML configuration file.

Every problem is reported as ``file:line key.path: message`` so an operator can jump to it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from difflib import get_close_matches
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from storagectl.config.models import (
    NAME_PATTERN,
    BackendSettings,
    Config,
    DestinationSettings,
    JobSettings,
    StrictModel,
    valid_name,
)
from storagectl.errors import ConfigError

ENV_CONFIG = "STORAGECTL_CONFIG"
DEFAULT_FILE = "storagectl.yaml"
Loc = tuple[str | int, ...]

_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}|\$\$")
_SECRET_KEYS = ("password", "secret", "token", "key_id", "access_key")


class RawConfig(StrictModel):
    version: int = 1
    backends: dict[str, dict[str, Any]] = {}
    destinations: dict[str, dict[str, Any]] = {}
    jobs: dict[str, dict[str, Any]] = {}


def user_config_path() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir("storagectl")) / DEFAULT_FILE


def find_config_path(explicit: Path | None) -> Path:
    """``-c`` if given, else ``$STORAGECTL_CONFIG``, else ``./storagectl.yaml``, else the user config dir."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(
                f"config file {explicit} does not exist",
                hint="Try: storagectl config init " + str(explicit),
            )
        return explicit
    from_env = os.environ.get(ENV_CONFIG)
    if from_env:
        path = Path(from_env)
        if not path.is_file():
            raise ConfigError(
                f"config file {path} (from ${ENV_CONFIG}) does not exist",
                hint=f"Try: unset {ENV_CONFIG}, or storagectl config init {path}",
            )
        return path
    candidates = [Path(DEFAULT_FILE), user_config_path()]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise ConfigError(
        f"no config file found (looked for -c, ${ENV_CONFIG}, {looked})",
        hint="Try: storagectl config init, or pass -c PATH",
    )


def load_config(explicit: Path | None = None, environ: dict[str, str] | None = None) -> Config:
    path = find_config_path(explicit)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    return parse_config(text, path, os.environ if environ is None else environ)


def parse_config(text: str, path: Path, environ: dict[str, str] | os._Environ[str]) -> Config:
    document = _YamlDocument(text, path, environ)
    data = document.data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}:1 the config file must be a mapping with backends, destinations and jobs",
            problems=[f"{path}:1 the config file must be a mapping with backends, destinations and jobs"],
        )
    return _ConfigValidator(document).validate(data)


class _YamlDocument:
    """YAML parsed into plain data, remembering the line of every key path."""

    def __init__(self, text: str, path: Path, environ: Any) -> None:
        self.path = path
        self.environ = environ
        self.lines: dict[Loc, int] = {}
        self.problems: list[str] = []
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            self.data = self._convert(node, (), loader) if node is not None else None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else 1
            context = ""
            if exc.context and exc.context_mark and exc.context_mark.line + 1 != line:
                context = f"{exc.context} (line {exc.context_mark.line + 1}): "
            problem = f"{path}:{line} invalid YAML: {context}{exc.problem or exc.context}"
            raise ConfigError(problem, problems=[problem]) from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}", problems=[f"{path}: invalid YAML: {exc}"]) from None
        finally:
            loader.dispose()

    def line_of(self, loc: Loc) -> int:
        while loc and loc not in self.lines:
            loc = loc[:-1]
        return self.lines.get(loc, 1)

    def where(self, loc: Loc) -> str:
        dotted = ".".join(str(part) for part in loc)
        return f"{self.path}:{self.line_of(loc)} {dotted}" if dotted else f"{self.path}:{self.line_of(loc)}"

    def _convert(self, node: yaml.Node, loc: Loc, loader: yaml.SafeLoader) -> Any:
        self.lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            result: dict[str, Any] = {}
            loader.flatten_mapping(node)
            for key_node, value_node in node.value:
                key = loader.construct_object(key_node, deep=True)
                key = str(key)
                child = (*loc, key)
                if key in result:
                    dotted = ".".join(str(part) for part in child)
                    self.problems.append(
                        f"{self.path}:{key_node.start_mark.line + 1} {dotted}: duplicate key "
                        f"(line {self.lines[child]} sets it too)"
                    )
                    continue
                self.lines[child] = key_node.start_mark.line + 1
                result[key] = self._convert(value_node, child, loader)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self._convert(item, (*loc, i), loader) for i, item in enumerate(node.value)]
        value = loader.construct_object(node, deep=True)
        if isinstance(value, str):
            return self._interpolate(value, loc)
        return value

    def _interpolate(self, value: str, loc: Loc) -> str:
        def substitute(match: re.Match[str]) -> str:
            if match[0] == "$$":
                return "$"
            name, default = match["name"], match["default"]
            if name in self.environ:
                return self.environ[name]
            if default is not None:
                return default
            self.problems.append(
                f"{self.where(loc)}: environment variable {name} is not set "
                f"(export {name}=..., or write ${{{name}:-default}})"
            )
            return ""

        return _VAR.sub(substitute, value)


class _ConfigValidator:
    def __init__(self, document: _YamlDocument) -> None:
        self.document = document
        self.problems: list[str] = list(document.problems)
        self.context = {"base_dir": document.path.parent.resolve()}

    def validate(self, data: dict[str, Any]) -> Config:
        raw = self._model(RawConfig, data, ())
        if raw is None:
            raise ConfigError(self.problems[0], problems=self.problems)
        backends = self._entries("backends", raw.backends, _backend_settings_class)
        destinations = self._entries("destinations", raw.destinations, _destination_settings_class)
        jobs = {
            name: job
            for name, entry in raw.jobs.items()
            if self._check_name(("jobs", name)) and (job := self._model(JobSettings, entry, ("jobs", name)))
        }
        config = Config(self.document.path, backends, destinations, jobs)
        self._cross_references(raw, config)
        if self.problems:
            raise ConfigError(self.problems[0], problems=self.problems)
        return config

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
            for error in exc.errors(include_url=False):
                self._validation_problem(model, loc, error)
            return None

    def _validation_problem(self, model: type[BaseModel], loc: Loc, error: dict[str, Any]) -> None:
        error_loc = tuple(part for part in error["loc"] if not _is_pydantic_tag(part))
        full = (*loc, *error_loc)
        kind = error["type"]
        if kind == "extra_forbidden":
            fields = _fields_at(model, error_loc[:-1])
            close = get_close_matches(str(error_loc[-1]), fields, n=1, cutoff=0.6)
            message = "unknown key" + (f" (did you mean {close[0]}?)" if close else "")
            if not close and fields:
                message += f"; valid keys: {', '.join(fields)}"
        elif kind == "missing":
            message = "required key is missing"
        else:
            message = error["msg"].removeprefix("Value error, ")
            bad = error.get("input")
            if not _is_secret(full) and isinstance(bad, str | int | float) and repr(bad) not in message:
                message += f" (got {bad!r})"
        self._problem(full, message)

    def _problem(self, loc: Loc, message: str) -> None:
        self.problems.append(f"{self.document.where(loc)}: {message}")

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
            lock = job.get("lock")
            lock_name = lock.get("backend") if isinstance(lock, dict) else None
            if lock_name is not None:
                self._check_lock_backend(("jobs", name, "lock", "backend"), str(lock_name), raw)

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


def _backend_settings_class(kind: str) -> type[BackendSettings]:
    from storagectl.backends import backend_class

    return backend_class(kind).Settings


def _destination_settings_class(kind: str) -> type[DestinationSettings]:
    from storagectl.destinations import destination_class

    return destination_class(kind).Settings


def _is_pydantic_tag(part: Any) -> bool:
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


def _is_secret(loc: Loc) -> bool:
    return any(marker in str(loc[-1]).lower() for marker in _SECRET_KEYS) if loc else False


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
