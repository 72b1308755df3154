"""The configuration file: one TOML file, every threshold with a default.

::

    [detectors.xid_correlation]
    gap_s = 180            # any field of the detector's Config
    enabled = true         # every detector is on unless this says false

``load`` checks the file before any data flows: an unknown detector, an unknown key,
a value of the wrong type or a value that is not positive raises ``ConfigError``,
whose message is one line naming the file, the setting and the value.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import textwrap
import tomllib
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from fleetwatch.detectors import REGISTRY
from fleetwatch.detectors.base import Detector

T = TypeVar("T")


class ConfigError(ValueError):
    """The configuration file is unreadable or names something that is not so."""


def read(path: Path | None) -> tuple[dict[str, Any], str]:
    """The file's tables (empty without a file), and how to name it in an error."""
    if path is None:
        return {}, "defaults"
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")), str(path)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def load(path: Path | None) -> dict[str, Any]:
    """Detector name -> its Config (defaults, overridden by the file); off ones left out."""
    raw, where = read(path)
    unknown_top = set(raw) - {"detectors", "watch"}
    if unknown_top:
        raise ConfigError(f"{where}: unknown section [{sorted(unknown_top)[0]}]")
    sections = raw.get("detectors", {})
    if not isinstance(sections, dict):
        raise ConfigError(f"{where}: [detectors] must be a table")
    for name in sections:
        if name not in REGISTRY:
            known = ", ".join(sorted(REGISTRY))
            raise ConfigError(f"{where}: unknown detector [detectors.{name}] (known: {known})")
    configs: dict[str, Any] = {}
    for name, spec in REGISTRY.items():
        section = dict(sections.get(name, {}))
        enabled = section.pop("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{where}: detectors.{name}.enabled must be true or false")
        config: Any = settings(spec.config, section, where, f"detectors.{name}")
        if enabled:
            configs[name] = config
    return configs


def settings(cls: type[T], section: Any, where: str, prefix: str) -> T:
    """The dataclass ``cls`` with the values of one TOML table, checked.

    Each key must be a field; a value must have its default's type (a whole number
    where the default is one); numbers must be positive.
    """
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: [{prefix}] must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, value in section.items():
        if key not in fields:
            raise ConfigError(f"{where}: unknown setting {prefix}.{key}")
        default = fields[key].default
        setting = f"{prefix}.{key}"
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: {setting} must be true or false, got {value!r}")
        elif isinstance(default, int | float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{where}: {setting} must be a number, got {value!r}")
            if isinstance(default, int) and not isinstance(value, int):
                raise ConfigError(f"{where}: {setting} must be a whole number, got {value!r}")
            if value <= 0:
                raise ConfigError(f"{where}: {setting} must be positive, got {value!r}")
        elif isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"{where}: {setting} must be a string, got {value!r}")
        values[key] = value
    return cls(**values)


def build(configs: dict[str, Any]) -> list[Detector]:
    """The detectors ``configs`` turns on, configured."""
    return [REGISTRY[name].factory(config) for name, config in configs.items()]


@cache
def field_docs(config: type) -> dict[str, str]:
    """Each Config field's docstring (the string right after it in the class body)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(config)))
    docs: dict[str, str] = {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    for node, following in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs
