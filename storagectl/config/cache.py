"""The validated configuration, remembered, so quick commands start without YAML or pydantic.

`backup list/show/run`, `restore` and `inspect` read the config through :func:`load_config_quickly`.
When the cache holds the file's validated form and nothing that validation depended on has changed,
the sections come back as plain objects (:class:`PlainSettings`: the fields, and the methods of the
model's own plain mixins, named in the entry as written): no YAML parsing, no pydantic (about 80-110
ms of every start, issue 19).
In every other case the file is validated as before -- and only a file that validated is ever
remembered, so an invalid file is always reported by the full validation, ``file:line`` and all.

What the validation depended on, all of it in an entry's key: the file (its bytes, inode, size,
mtime and ctime) and where it is (as given and resolved, and its directory resolved: relative paths
in it are relative to that); every environment variable it names, set or not; the stat of every
password file it names; ``$HOME`` (``~`` in paths); the CPU count (a job's default ``parallel``); the
Python version; and the code: the mtimes of storagectl's modules and of where pydantic and PyYAML
are installed.

No secret is written. A section holding one -- a password, a key, a token, a URL with a password, a
hook URL, or any value taken from the environment -- is remembered as not cached, and reading it
validates the whole file as before. Environment values enter only an entry's key, as a salted
BLAKE2b digest; the file is the user's alone (0600, in a 0700 directory).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path, PosixPath
from typing import TYPE_CHECKING, Any, ClassVar

try:  # CPython's own BLAKE2b, as hashlib uses it: importing hashlib loads OpenSSL (~3 ms of a start)
    from _blake2 import blake2b
except ImportError:  # another Python: the same function through hashlib
    from hashlib import blake2b

from storagectl.config.source import VARIABLE, NamedEntries, decode_config, find_config_path, read_config_bytes
from storagectl.redact import has_url_password, is_secret_key, redact_text

if TYPE_CHECKING:
    from storagectl.config.document import YamlDocument
    from storagectl.config.models import Config

FORMAT = 3
SECTIONS = ("backends", "destinations", "jobs", "tools", "data_migrations")
_PERSON = b"storagectl-cfg"
_ANY = "-"  # the backend and destination of the remembered ad-hoc job: replaced when it is read


def default_cache_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("storagectl")) / "config"


def load_config_quickly(explicit: Path | None, cache_dir: Path, environ: Any = None) -> Any:
    """A :class:`CachedConfig` when ``cache_dir`` remembers this file validated and nothing it depended
    on changed; otherwise the file validated now (and remembered), as ``load_config`` returns it."""
    environ = os.environ if environ is None else environ
    path = find_config_path(explicit)
    data = read_config_bytes(path)
    entry = _read_entry(_entry_path(cache_dir, path))
    if entry is not None and entry.get("key") == _key(path, data, environ, entry):
        with contextlib.suppress(KeyError, TypeError, ValueError, AttributeError):  # a damaged entry: a miss
            return CachedConfig(path, entry["sections"], lambda: _validate(path, data, environ, cache_dir),
                                entry.get("ad_hoc_job"))
    return _validate(path, data, environ, cache_dir)


def load_config_remembered(explicit: Path | None, cache_dir: Path, environ: Any = None) -> Config:
    """``load_config``'s Config: built from the cache entry when it is current and holds every section
    (no YAML, no validation: see :meth:`CachedConfig.full`), else the file validated now and remembered."""
    config = load_config_quickly(explicit, cache_dir, environ)
    return config.full() if isinstance(config, CachedConfig) else config


def _validate(path: Path, data: bytes, environ: Any, cache_dir: Path) -> Config:
    from storagectl.config.document import YamlDocument
    from storagectl.config.loader import validate_document

    document = YamlDocument(decode_config(data, path), path, environ)
    config = validate_document(document)
    with contextlib.suppress(OSError):  # a read-only home: validated again next time
        remember(config, document, data, cache_dir)
    return config


def remember(config: Config, document: YamlDocument, data: bytes, cache_dir: Path) -> None:
    """Write the cache entry of ``config`` (validated from ``document``, read as ``data``), unless the
    one there is current."""
    from storagectl.fsutil import atomic_writer

    entry_path = _entry_path(cache_dir, config.path)
    current = _read_entry(entry_path)
    if current is not None and current.get("key") == _key(config.path, data, document.environ, current):
        return
    text = data.decode("utf-8")
    entry: dict[str, Any] = {
        "format": FORMAT, "salt": os.urandom(16).hex(),
        "environment": sorted({match["name"] for match in VARIABLE.finditer(text) if match["name"]}),
        "files": sorted(str(path) for path in _password_files(config)),
    }
    entry["key"] = _key(config.path, data, document.environ, entry)
    from_environment = {loc[0] for loc in document.from_environment}
    entry["sections"] = {name: None if name in from_environment else _encoded_section(getattr(config, name))
                         for name in SECTIONS}
    entry["ad_hoc_job"] = _encoded_section(config.ad_hoc_job(_ANY, _ANY))
    cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with atomic_writer(entry_path, mode=0o600) as handle:
        handle.write(json.dumps(entry).encode("utf-8"))


class CachedConfig(NamedEntries):
    """A config read back from the cache, with what callers use of a Config: ``path``, the sections
    and the lookups by name. A section that was not cached (it holds a secret), and anything a plain
    object lacks (a method, a property), come from :meth:`full`, once."""

    def __init__(self, path: Path, sections: dict[str, Any], validate: Callable[[], Config],
                 ad_hoc_job: Any = None) -> None:
        self.path = path
        self._encoded_ad_hoc_job = ad_hoc_job
        self._validate = validate
        self._full: Config | None = None
        self._encoded = sections
        self._sections = {name: _decoded(sections[name], self._settings, (name,)) for name in SECTIONS}

    def full(self) -> Config:
        """The Config as ``load_config`` returns it: its models constructed from the entry's values when
        it holds every section, else (a section with a secret or a value from the environment) the
        file validated again."""
        if self._full is None:
            self._full = self._constructed() or self._validate()
        return self._full

    def _constructed(self) -> Config | None:
        from storagectl.config.models import Config

        if any(self._encoded[name] is None for name in SECTIONS):
            return None
        try:
            return Config(self.path, **{name: _decoded(self._encoded[name], _constructed_model) for name in SECTIONS})
        except (KeyError, TypeError, ValueError, AttributeError, ImportError):  # a damaged entry: validated
            return None

    def ad_hoc_job(self, backend: str, destination: str) -> Any:
        """A job's defaults as the entry remembers them (they depend on nothing but the code and the
        CPU count, both in its key), for ``backend`` and ``destination``."""
        remembered = self._encoded_ad_hoc_job
        if remembered is None:
            return super().ad_hoc_job(backend, destination)
        job = _decoded(remembered, self._settings, ("ad_hoc_job",))
        return job.model_copy(update={"backends": [backend], "destination": destination})

    def _settings(self, entry: dict[str, Any], fields: dict[str, Any], loc: tuple[str | int, ...]) -> PlainSettings:
        return _plain_class(entry["class"], tuple(entry["methods"]), tuple(entry["fields"]))(
            fields, entry["set"], self, loc)

    def __getattr__(self, name: str) -> Any:
        section = self.__dict__.get("_sections", {}).get(name)
        return section if section is not None else getattr(self.full(), name)


class PlainSettings:
    """A settings model read back from the cache: its fields as attributes, the methods of the model's
    plain mixins (the same classes the pydantic model has, see :func:`_method_classes`), and the little
    of pydantic's model API callers use (``model_fields``, ``model_fields_set``, ``model_copy``).
    Anything else (a class variable, a method outside the mixins) is the model's in
    :meth:`CachedConfig.full`.

    The mixins are imported when a method is first asked for, not when the entry is read: a kind's
    mixin lives in its backend module, which `backup list` never needs."""

    model_fields: ClassVar[dict[str, None]] = {}
    method_classes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, fields: dict[str, Any], fields_set: list[str], owner: CachedConfig,
                 loc: tuple[str | int, ...]) -> None:
        self.__dict__.update(fields)
        self.__dict__["_fields_set"] = frozenset(fields_set)
        self.__dict__["_cached_at"] = (owner, loc)

    @property
    def model_fields_set(self) -> set[str]:
        return set(self._fields_set)

    def model_copy(self, *, update: dict[str, Any] | None = None) -> Any:
        """A copy with ``update``'s fields replaced (not validated, as pydantic's ``model_copy``)."""
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__, **(update or {}))
        copy.__dict__["_fields_set"] = self._fields_set | set(update or {})
        return copy

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        for where in self.method_classes:
            found = _storagectl_class(where).__dict__.get(name)
            if found is not None:
                return found.__get__(self, type(self)) if hasattr(found, "__get__") else found
        owner, loc = self.__dict__["_cached_at"]
        target: Any = owner.full()
        for step in loc:
            target = target[step] if isinstance(target, dict | list | tuple) else getattr(target, step)
        return getattr(target, name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"settings are read-only: cannot set {name}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({'.'.join(map(str, self.__dict__['_cached_at'][1]))})"


@functools.cache
def _plain_class(model: str, methods: tuple[str, ...], fields: tuple[str, ...]) -> type[PlainSettings]:
    """The plain form of the settings class ``model``: :class:`PlainSettings` with its fields and the
    model's plain mixins ``methods`` (``module:QualName``, storagectl's own, without pydantic)."""
    for where in methods:
        if not where.startswith("storagectl."):
            raise ValueError(f"not a storagectl class: {where}")
    return type(f"Plain{model.rpartition(':')[2]}", (PlainSettings,),
                {"model_fields": dict.fromkeys(fields), "method_classes": methods, "__module__": __name__})


# -- the key -------------------------------------------------------------------------------------------
def _key(path: Path, data: bytes, environ: Any, entry: dict[str, Any]) -> str | None:
    """The digest of everything the validation of ``path`` depended on; None for an entry of another format."""
    try:
        if entry.get("format") != FORMAT:
            return None
        digest = blake2b(digest_size=32, salt=bytes.fromhex(entry["salt"]), person=_PERSON)
        parts = [str(path), os.path.realpath(path), os.path.realpath(path.parent), _stat(path),
                 os.path.expanduser("~"), os.cpu_count(), sys.version, _code_stamp(),
                 [[name, environ.get(name)] for name in entry["environment"]],
                 [[name, _stat(Path(name))] for name in entry["files"]]]
        digest.update(json.dumps(parts).encode("utf-8", "surrogatepass"))
    except (KeyError, TypeError, ValueError):
        return None
    digest.update(data)
    return digest.hexdigest()


def _stat(path: Path | str) -> list[int] | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return [found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns]


def _code_stamp() -> list[Any]:
    """What says the code that validated is the code running: storagectl's modules (an editable
    install changes without a new version) and the directories pydantic and PyYAML are installed in
    (an upgrade replaces their files)."""
    from importlib.util import find_spec

    package = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    stamp: list[Any] = []
    for directory, subdirectories, files in os.walk(package):
        subdirectories[:] = sorted(name for name in subdirectories if name != "__pycache__")
        stamp += [[directory[len(package):], name, _stat(os.path.join(directory, name))]
                  for name in sorted(files) if name.endswith(".py")]
    for library in ("pydantic", "pydantic_core", "yaml"):
        spec = find_spec(library)
        where = Path(spec.origin).parent if spec is not None and spec.origin else None
        stamp += [[library, _stat(where) if where else None, _stat(where.parent) if where else None]]
    return stamp


def _password_files(config: Config) -> list[Path]:
    """The ``password_file`` of every settings model in ``config``, however deeply nested."""
    from pydantic import BaseModel

    from storagectl.config.models import PasswordMixin

    found, pending = [], [getattr(config, name) for name in SECTIONS]
    while pending:
        value = pending.pop()
        if isinstance(value, PasswordMixin) and value.password_file is not None:
            found.append(value.password_file)
        if isinstance(value, BaseModel):
            pending += [getattr(value, name) for name in type(value).model_fields]
        elif isinstance(value, dict):
            pending += value.values()
        elif isinstance(value, list | tuple):
            pending += value
    return found


# -- the entry --------------------------------------------------------------------------------------------
def _entry_path(cache_dir: Path, path: Path) -> Path:
    where = f"{path}\0{os.path.realpath(path)}".encode("utf-8", "surrogatepass")
    return cache_dir / f"{blake2b(where, digest_size=16).hexdigest()}.json"


def _read_entry(path: Path) -> dict[str, Any] | None:
    try:
        entry = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return entry if isinstance(entry, dict) else None


class _NotCached(Exception):
    """A value the cache must not hold (a secret) or cannot give back as it was (a type it does not know)."""


def _encoded_section(section: Any) -> Any:
    try:
        return _encoded(section, None)
    except _NotCached:
        return None


def _encoded(value: Any, key: str | None) -> Any:
    """``value`` as JSON, tagged so :func:`_decoded` gives back the same types."""
    from pydantic import BaseModel

    if key is not None and value is not None and is_secret_key(key):
        raise _NotCached
    if value is None or type(value) in (bool, int, float):
        return value
    if type(value) is str:
        if has_url_password(value) or redact_text(value) != value:
            raise _NotCached
        return value
    if type(value) is PosixPath:
        return {"$path": str(value)}
    if type(value) is list:
        return [_encoded(item, key) for item in value]
    if type(value) is tuple:
        return {"$tuple": [_encoded(item, key) for item in value]}
    if type(value) is dict and all(type(name) is str for name in value):
        return {"$dict": {name: _encoded(item, name) for name, item in value.items()}}
    if isinstance(value, BaseModel):
        model = type(value)
        if not model.__module__.startswith("storagectl."):  # a plugin's settings: validated each time
            raise _NotCached
        return {"$model": {"class": _where(model), "methods": [_where(mixin) for mixin in _method_classes(model)],
                           "set": sorted(value.model_fields_set),
                           "fields": {name: _encoded(getattr(value, name), name) for name in model.model_fields}}}
    raise _NotCached


ModelBuilder = Callable[[dict[str, Any], dict[str, Any], tuple[str | int, ...]], Any]
"""Makes the object of one ``$model`` entry at ``loc`` from the entry and its fields, decoded."""


def _decoded(value: Any, model: ModelBuilder, loc: tuple[str | int, ...] = ()) -> Any:
    """``value`` as :func:`_encoded` wrote it, back as the same types; each model as ``model`` makes it."""
    if isinstance(value, list):
        return [_decoded(item, model, (*loc, i)) for i, item in enumerate(value)]
    if not isinstance(value, dict):
        return value
    (tag, inner), = value.items()
    if tag == "$path":
        return Path(inner)
    if tag == "$tuple":
        return tuple(_decoded(item, model, (*loc, i)) for i, item in enumerate(inner))
    if tag == "$dict":
        return {name: _decoded(item, model, (*loc, name)) for name, item in inner.items()}
    if tag == "$model":
        return model(inner, {name: _decoded(item, model, (*loc, name)) for name, item in inner["fields"].items()}, loc)
    raise ValueError(f"unknown tag {tag!r}")


def _constructed_model(entry: dict[str, Any], fields: dict[str, Any], loc: tuple[str | int, ...]) -> Any:
    """The validated model again, built with ``model_construct`` from the values its validation gave
    (no validation: they were valid)."""
    return _model_class(entry["class"]).model_construct(set(entry["set"]), **fields)


def _model_class(where: str) -> Any:
    """The settings class ``module:QualName`` an entry names: storagectl's own models only."""
    from pydantic import BaseModel

    found = _storagectl_class(where)
    if not issubclass(found, BaseModel):
        raise ValueError(f"not a model: {where}")
    return found


@functools.cache
def _storagectl_class(where: str) -> type:
    """The class ``module:QualName`` an entry names, of storagectl's own modules only."""
    from importlib import import_module

    module, _, name = where.partition(":")
    if not module.startswith("storagectl."):
        raise ValueError(f"not a storagectl class: {where}")
    found: Any = import_module(module)
    for part in name.split("."):
        found = getattr(found, part)
    if not isinstance(found, type):
        raise ValueError(f"not a class: {where}")
    return found


def _where(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _method_classes(model: type) -> list[type]:
    """The plain mixins of a settings model (its bases that are not pydantic models): where its methods
    live, so the plain form read back from the cache has them too, from the same code."""
    from pydantic import BaseModel

    return [cls for cls in model.__mro__[1:]
            if cls is not object and not issubclass(cls, BaseModel) and cls.__module__.startswith("storagectl.")]
