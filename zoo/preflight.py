"""Checks a job spec against what it names, before anything runs: the base model's
architecture (from its config alone: the model is built on the ``meta`` device, no weights are
read) and the data files' fields.

Without this, ``target_modules: [query, value]`` on a Llama passes validation and the job
fails on a worker 13 s later; with it, ``zoo submit --dry-run`` says at once which module
names the base does have. A base the submitter cannot read (an ``s3://`` prefix, a hub id not
in the local cache) is checked by the worker as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError, DataError, SpecError
from zoo.jobspec import JobSpec


def check_specs(specs: Sequence[JobSpec]) -> None:
    """Raise SpecError (the field path first) for the first spec whose targets, saved modules
    or data do not fit. Each distinct base and data file is looked at once."""
    skeletons: dict[tuple[str, str], Any] = {}
    for spec in specs:
        key = (spec.base_model, spec.task)
        if key not in skeletons:
            skeletons[key] = _skeleton(spec.base_model, spec.task)
        if skeletons[key] is not None:
            _check_targets(spec, skeletons[key])
    seen: set[tuple[str, str]] = set()
    for spec in specs:
        for field, path in (("data.train", spec.data.train), ("data.eval", spec.data.eval)):
            if path and (field, path) not in seen and Path(path).is_file():
                seen.add((field, path))
                _check_data(field, spec.task, path)


def _skeleton(base_model: str, task: str) -> Any:
    """The base's module tree from its config, on the meta device; None when unreadable here."""
    from zoo.base_models import local_model_dir

    directory = None if base_model.startswith("s3://") else local_model_dir(base_model)
    if directory is None or not (Path(directory) / "config.json").is_file():
        return None
    import torch
    import transformers

    config = transformers.AutoConfig.from_pretrained(directory, local_files_only=True)
    cls = (transformers.AutoModelForCausalLM if task == "causal-lm"
           else transformers.AutoModelForSequenceClassification)
    try:
        with torch.device("meta"):
            return cls.from_config(config)
    except ValueError as exc:  # an architecture transformers cannot build for this task
        raise SpecError(f"base_model: {directory} cannot serve task {task} ({exc})") from None


def _check_targets(spec: JobSpec, model: Any) -> None:
    from zoo.surgery import find_saved_modules, find_targets

    try:
        find_targets(model, spec.prolora)
    except ConfigError as exc:
        raise SpecError(f"prolora.target_modules: {exc}") from None
    try:
        find_saved_modules(model, spec.prolora.modules_to_save)
    except ConfigError as exc:
        raise SpecError(f"prolora.modules_to_save: {exc}") from None


def _check_data(field: str, task: str, path: str) -> None:
    """Every row has the task's fields of the right types (the parser the trainer uses)."""
    from zoo.datasets import load_causal_lm, load_seq_cls

    try:
        if task == "seq-cls":
            load_seq_cls(path)
        else:
            load_causal_lm(path)
    except DataError as exc:
        raise SpecError(f"{field}: {exc}") from None
