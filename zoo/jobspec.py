"""Job specs: YAML in, frozen dataclasses out, every error naming the field path.

A spec describes one training job, or, with ``sweep:``, the cross product of several. This
module is torch-free and Ray-free so that ``zoo submit --dry-run`` and bad-spec errors are
instant. Validation happens completely before anything is written anywhere: a spec that fails
here never creates a job row.

Paths (``base_model`` when it is a local directory, ``data.train``/``data.eval``) are relative to
the spec file's directory, as docker-compose does, so a spec means the same thing from any cwd.
Error messages start with the field path (``prolora.r: must be a positive integer (got 0)``).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from zoo.config import PRoLoRAConfig
from zoo.errors import ConfigError, InvalidNameError, SpecError
from zoo.names import parse_tag, validate_name
from zoo.train_options import TrainOptions
from zoo.untrusted import UntrustedInputError, clip, load_yaml

TASKS = ("seq-cls", "causal-lm")
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
RESOURCE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$")
MAX_SWEEP_JOBS = 10_000
MAX_SPEC_BYTES = 1 << 20


# ---------------------------------------------------------------- dataclasses ----------------


@dataclass(frozen=True)
class DataSpec:
    """Where the training (and optional eval) JSONL lives: a local path or ``s3://`` URI."""

    train: str
    eval: str | None = None


@dataclass(frozen=True)
class ResourceSpec:
    """Ray resources for one job: fractional GPUs pack small jobs onto one card."""

    gpus: float = 0.0
    cpus: float = 1.0
    memory_gb: float | None = None
    custom: Mapping[str, float] = field(default_factory=dict)

    def ray_options(self) -> dict[str, Any]:
        """The ``.options(...)`` of the Ray train task."""
        opts: dict[str, Any] = {"num_gpus": self.gpus, "num_cpus": self.cpus}
        if self.memory_gb:
            opts["memory"] = int(self.memory_gb * 1024**3)
        if self.custom:
            opts["resources"] = dict(self.custom)
        return opts


@dataclass(frozen=True)
class JobSpec:
    """One concrete job (a sweep has already been expanded)."""

    name: str
    base_model: str
    task: str
    data: DataSpec
    prolora: PRoLoRAConfig
    train: TrainOptions = field(default_factory=TrainOptions)
    resources: ResourceSpec = field(default_factory=ResourceSpec)
    retries: int = 2
    tags: tuple[str, ...] = ()
    alias: str | None = None
    sweep_point: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict; ``from_dict`` inverts it (this is what the catalog stores)."""
        # One level per section by hand: ``dataclasses.asdict`` deep-copies every value, which
        # made serialising a large sweep's job rows a visible part of `zoo submit`.
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("data", "prolora", "train", "resources"):
            section = out[key]
            out[key] = {f.name: getattr(section, f.name) for f in fields(section)}
        for key in ("target_modules", "modules_to_save"):
            value = out["prolora"][key]
            out["prolora"][key] = list(value) if isinstance(value, tuple) else value
        out["tags"] = list(self.tags)
        out["resources"]["custom"] = dict(self.resources.custom)
        out["sweep_point"] = dict(self.sweep_point)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobSpec:
        """Rebuild from ``to_dict`` output (trusted: it was validated at submit time)."""
        return cls(
            name=data["name"],
            base_model=data["base_model"],
            task=data["task"],
            data=DataSpec(**data["data"]),
            prolora=PRoLoRAConfig(**data["prolora"]),
            train=TrainOptions(**data["train"]),
            resources=ResourceSpec(**data["resources"]),
            retries=data["retries"],
            tags=tuple(data["tags"]),
            alias=data["alias"],
            sweep_point=dict(data.get("sweep_point") or {}),
        )

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        return cls.from_dict(json.loads(text))

    def with_locations(self, *, base_model: str | None = None, train: str | None = None,
                       eval: str | None = None) -> JobSpec:  # noqa: A002 - mirrors the field
        """A copy whose paths point at uploaded (store) locations."""
        from dataclasses import replace

        data = replace(self.data, train=train or self.data.train,
                       eval=eval if eval is not None else self.data.eval)
        return replace(self, base_model=base_model or self.base_model, data=data)

    @property
    def display_name(self) -> str:
        """``name`` plus the sweep point, e.g. ``sentiment[prolora.r=4,train.seed=1]``."""
        if not self.sweep_point:
            return self.name
        inner = ",".join(f"{k}={v}" for k, v in self.sweep_point.items())
        return f"{self.name}[{inner}]"


# ---------------------------------------------------------------- schema ---------------------
# Leaf kinds: "str", "int", "int>0", "int>=0", "num", "num>0", "num>=0", "bool", "strlist",
# "tags", "str|null", "int|null", "num|null", "modules" (list of names or one regex), "resmap".
# The prolora and train sections are their dataclasses' fields: the types come from the
# annotations, the ranges from the dataclasses' own validation (one home for each rule).

_HINT_KINDS = {int: "int", float: "num", bool: "bool", str: "str", int | None: "int|null",
               float | None: "num|null", tuple[str, ...]: "strlist",
               tuple[str, ...] | str: "modules"}


def _kinds_of(cls: type) -> dict[str, str]:
    hints = typing.get_type_hints(cls)
    return {f.name: _HINT_KINDS[hints[f.name]] for f in fields(cls)}


_SECTIONS: dict[str, type] = {"prolora": PRoLoRAConfig, "train": TrainOptions}
_SCHEMA: dict[str, Any] = {
    "name": "name",
    "base_model": "str",
    "task": "task",
    "data": {"train": "str", "eval": "str|null"},
    "prolora": _kinds_of(PRoLoRAConfig),
    "train": _kinds_of(TrainOptions),
    "resources": {"gpus": "num>=0", "cpus": "num>=0", "memory_gb": "num>0|null",
                  "custom": "resmap"},
    "retries": "int>=0",
    "tags": "tags",
    "alias": "str|null",
    "sweep": "sweep",
}
MAX_RETRIES = 100
_REQUIRED = {"": ("name", "base_model", "task", "data"), "data": ("train",)}


def leaf_paths(schema: Mapping[str, Any] = _SCHEMA, prefix: str = "") -> list[str]:
    """Every settable dotted path (what ``--set`` and ``sweep:`` may name)."""
    out: list[str] = []
    for key, kind in schema.items():
        path = f"{prefix}{key}"
        if isinstance(kind, Mapping):
            out.extend(leaf_paths(kind, path + "."))
        elif key != "sweep":
            out.append(path)
    return out


def _kind_of(path: str) -> Any:
    node: Any = _SCHEMA
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_leaf(path: str, kind: str, value: Any) -> Any:
    """Validate one leaf and return its normalised value; raise SpecError naming ``path``."""
    if kind.endswith("|null"):
        if value is None:
            return None
        kind = kind[: -len("|null")]
    is_int = isinstance(value, int) and not isinstance(value, bool)
    is_num = is_int or (isinstance(value, float) and value == value and abs(value) != float("inf"))
    if kind.startswith("int"):
        if not is_int:
            raise SpecError(f"{path}: expected an integer, got {value!r}")
        if kind == "int>0" and value <= 0:
            raise SpecError(f"{path}: must be a positive integer (got {value})")
        if kind == "int>=0" and value < 0:
            raise SpecError(f"{path}: must be an integer >= 0 (got {value})")
        return value
    if kind.startswith("num"):
        if not is_num:
            raise SpecError(f"{path}: expected a number, got {value!r}")
        if kind == "num>0" and value <= 0:
            raise SpecError(f"{path}: must be a positive number (got {value})")
        if kind == "num>=0" and value < 0:
            raise SpecError(f"{path}: must be a number >= 0 (got {value})")
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise SpecError(f"{path}: expected true or false, got {value!r}")
        return value
    if kind in ("str", "name", "task"):
        if not isinstance(value, str) or not value.strip():
            raise SpecError(f"{path}: expected a non-empty string, got {clip(repr(value), 80)}")
        if kind == "name":
            return _named(path, validate_name, value)
        if kind == "task" and value not in TASKS:
            raise SpecError(f"{path}: must be one of {', '.join(TASKS)} (got {value!r})")
        return value
    if kind == "strlist":
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise SpecError(f"{path}: expected a list of strings, got {value!r}")
        return tuple(value)
    if kind == "modules":
        if isinstance(value, str) and value:
            return value
        return _check_leaf(path, "strlist", value)
    if kind == "tags":
        if isinstance(value, str):
            value = [value]
        tags = _check_leaf(path, "strlist", value)
        return tuple(str(_named(f"{path}[{i}]", parse_tag, tag)) for i, tag in enumerate(tags))
    if kind == "resmap":
        if not isinstance(value, Mapping):
            raise SpecError(f"{path}: expected a mapping of resource name to amount")
        out = {}
        for name, amount in value.items():
            if not isinstance(name, str) or not RESOURCE_RE.match(name):
                raise SpecError(f"{path}: {name!r} is not a valid resource name")
            out[name] = _check_leaf(f"{path}.{name}", "num>0", amount)
        return out
    raise AssertionError(f"unknown schema kind {kind}")  # pragma: no cover - schema bug


def _named(path: str, rule: Any, value: str) -> Any:
    """Apply a catalog name rule (``zoo.names``) so a spec accepts exactly what publish
    accepts: a name or tag refused here would otherwise be refused after training."""
    try:
        return rule(value)
    except InvalidNameError as exc:
        raise SpecError(f"{path}: {exc}") from None


def _check_section(raw: Any, schema: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    where = prefix.rstrip(".") or "spec"
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}: expected a mapping, got {_type_name(raw)}")
    out: dict[str, Any] = {}
    for key in raw:
        if not isinstance(key, str) or key not in schema:
            allowed = ", ".join(k for k in schema)
            raise SpecError(f"{prefix}{key}: unknown field (allowed in {where}: {allowed})")
    for key in _REQUIRED.get(prefix.rstrip("."), ()):
        if raw.get(key) is None:
            raise SpecError(f"{prefix}{key}: required field is missing")
    for key, value in raw.items():
        kind = schema[key]
        path = f"{prefix}{key}"
        if isinstance(kind, Mapping):
            out[key] = _check_section(value if value is not None else {}, kind, path + ".")
        elif kind != "sweep":
            out[key] = _check_leaf(path, kind, value)
    return out


# ---------------------------------------------------------------- loading --------------------


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser when built
    """SafeLoader with YAML 1.2 floats: ``1e-3`` is a number, not the string PyYAML makes it."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)?(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str, source: str = "spec") -> Any:
    """YAML → Python, bounded (``zoo.untrusted``: no aliases, size and nesting caps); any
    problem becomes ONE short line with the line number."""
    try:
        return load_yaml(text, loader=_Loader, max_bytes=MAX_SPEC_BYTES)
    except UntrustedInputError as exc:
        raise SpecError(f"{source}: {exc}") from None


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides (values parsed as YAML: ``train.lr=1e-3`` is a float)."""
    out = json.loads(json.dumps(raw, default=str))  # deep copy of plain data
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SpecError(f"--set {item!r}: expected key=value")
        if key == "sweep" or key.startswith("sweep."):
            value = parse_yaml(text, f"--set {key}")
            out.setdefault("sweep", {})
            if key == "sweep":
                out["sweep"] = value
            else:
                out["sweep"][key[len("sweep."):]] = value
            continue
        is_custom = key.startswith("resources.custom.") and key.count(".") == 2
        if not is_custom and _kind_of(key) is None:
            raise SpecError(f"{key}: unknown field (--set)")
        value = parse_yaml(text, f"--set {key}")
        _set_path(out, key, value)
    return out


def _set_path(raw: dict[str, Any], path: str, value: Any) -> None:
    node = raw
    parts = path.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _expand_sweep(raw: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(concrete raw spec, sweep point) for each element of the cross product."""
    sweep = raw.get("sweep")
    base = {k: v for k, v in raw.items() if k != "sweep"}
    if sweep is None:
        return [(base, {})]
    if not isinstance(sweep, Mapping) or not sweep:
        raise SpecError("sweep: expected a non-empty mapping of field path to a list of values")
    allowed = set(leaf_paths()) - {"name", "sweep"}
    keys, choices = [], []
    for key, values in sweep.items():
        if not isinstance(key, str) or key not in allowed:
            raise SpecError(f"sweep: unknown key {key!r} (sweepable: {', '.join(sorted(allowed))})")
        if not isinstance(values, list) or not values:
            raise SpecError(f"sweep.{key}: expected a non-empty list of values, got {values!r}")
        keys.append(key)
        choices.append(values)
    total = 1
    for values in choices:
        total *= len(values)
    if total > MAX_SWEEP_JOBS:
        raise SpecError(f"sweep: {total} jobs exceeds the limit of {MAX_SWEEP_JOBS}")
    out = []
    for combo in itertools.product(*choices):
        concrete = json.loads(json.dumps(base, default=str))
        point = {}
        for key, value in zip(keys, combo, strict=True):
            _set_path(concrete, key, value)
            point[key] = value
        out.append((concrete, point))
    return out


def _resolve_location(path: str, value: str, base_dir: Path, *, want_dir: bool) -> str:
    """A local path made absolute and checked; ``s3://`` and hub ids pass through."""
    if value.startswith("s3://"):
        if len(value) <= len("s3://") or value[len("s3://"):].startswith("/"):
            raise SpecError(f"{path}: {value!r} is not a valid s3:// URI")
        return value
    if "://" in value:
        raise SpecError(f"{path}: unsupported URI scheme in {value!r} (use a path or s3://)")
    local = (base_dir / os.path.expanduser(value)).resolve()
    looks_local = value.startswith((".", "/", "~")) or local.exists()
    if want_dir and not looks_local and HUB_ID_RE.match(value):
        return value  # a hub id such as "org/model" (resolved offline from the HF cache)
    if want_dir and not local.is_dir():
        raise SpecError(f"{path}: model directory not found: {local}")
    if not want_dir and not local.is_file():
        raise SpecError(f"{path}: data file not found: {local}")
    return str(local)


def _build(raw: dict[str, Any], point: dict[str, Any], base_dir: Path,
           resolved: dict[tuple[str, str], str]) -> JobSpec:
    """One job from a concrete raw spec. ``resolved`` memoises location checks across the
    jobs of one sweep (the same files, looked up once instead of once per job)."""

    def locate(path: str, value: str, *, want_dir: bool) -> str:
        if (path, value) not in resolved:
            resolved[path, value] = _resolve_location(path, value, base_dir, want_dir=want_dir)
        return resolved[path, value]

    checked = _check_section(raw, _SCHEMA, "")
    sections = {key: _section(key, checked.get(key) or {}) for key in _SECTIONS}
    data = checked["data"]
    resources = checked.get("resources") or {}
    return JobSpec(
        name=checked["name"],
        base_model=locate("base_model", checked["base_model"], want_dir=True),
        task=checked["task"],
        data=DataSpec(
            train=locate("data.train", data["train"], want_dir=False),
            eval=None if data.get("eval") is None
            else locate("data.eval", data["eval"], want_dir=False),
        ),
        prolora=sections["prolora"],
        train=sections["train"],
        resources=ResourceSpec(**resources),
        retries=_bounded("retries", checked.get("retries", 2), MAX_RETRIES),
        tags=checked.get("tags", ()),
        alias=_check_alias(checked.get("alias"), checked["name"]),
        sweep_point=point,
    )


def _bounded(path: str, value: int, most: int) -> int:
    if value > most:
        raise SpecError(f"{path}: at most {most} (got {value})")
    return value


def _section(key: str, values: dict[str, Any]) -> Any:
    """The dataclass of a section; its own rules (ranges, cross-field) name the field."""
    try:
        return _SECTIONS[key](**values)
    except ConfigError as exc:
        where = f"{key}.{exc.field}" if exc.field else key
        raise SpecError(f"{where}: {exc}") from None


def _check_alias(alias: str | None, name: str) -> str | None:
    """``alias: latest`` or ``alias: NAME@latest``; the name part must be the job's name."""
    if alias is None:
        return None
    label = alias
    if "@" in alias:
        prefix, _, label = alias.partition("@")
        if prefix != name:
            raise SpecError(f"alias: {clip(repr(alias), 80)} must be '{name}@<alias>' "
                            "(the spec's name)")
    label = _named("alias", lambda text: validate_name(text, "alias"), label)
    return f"{name}@{label}"


def load_specs(source: str | os.PathLike[str] | None = None, *, text: str | None = None,
               overrides: Sequence[str] = (), base_dir: str | os.PathLike[str] | None = None,
               ) -> list[JobSpec]:
    """Read, override, validate and expand a spec; one JobSpec per job (≥ 1).

    Raises SpecError (exit code 2) whose message starts with the field path.
    """
    label = os.fspath(source) if source is not None else "spec"
    if text is None:
        if source is None:
            raise SpecError("spec: no file or text given")
        try:
            text = Path(source).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SpecError(f"spec: file not found: {label}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"spec: cannot read {label}: {exc}") from None
    raw = parse_yaml(text, label)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError(f"spec: expected a mapping at the top of {label}, got {_type_name(raw)}")
    raw = apply_overrides(raw, overrides)
    _check_section(raw, _SCHEMA, "")  # unknown fields / types before the sweep multiplies them
    root = Path(base_dir) if base_dir is not None else (
        Path(source).resolve().parent if source is not None else Path.cwd())
    specs = []
    resolved: dict[tuple[str, str], str] = {}
    points = _expand_sweep(raw)
    if len(points) > 1 and raw.get("alias") is not None:
        raise SpecError(f"alias: a sweep makes {len(points)} jobs, and an alias points at ONE "
                        "adapter; drop alias: and point it at the job you pick afterwards "
                        "(`zoo alias set NAME@ALIAS ADAPTER_ID`)")
    for concrete, point in points:
        try:
            specs.append(_build(concrete, point, root, resolved))
        except SpecError as exc:
            if not point:
                raise
            where = ", ".join(f"{k}={v!r}" for k, v in point.items())
            raise SpecError(f"{exc} (in sweep point {where})") from None
    return specs


__all__ = [
    "DataSpec", "JobSpec", "ResourceSpec", "SpecError", "TASKS", "leaf_paths",
    "load_specs", "parse_yaml",
]
