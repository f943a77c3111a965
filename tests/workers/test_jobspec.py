"""Job spec parsing: every bad input is one SpecError whose message starts with the field path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from zoo.errors import SpecError
from zoo.jobspec import JobSpec, leaf_paths, load_specs

GOOD = """\
name: sentiment
base_model: ./model
task: seq-cls
data: {train: data/train.jsonl, eval: data/eval.jsonl}
prolora: {r: 8, unshared_r: 1, share_a: 2, share_b: 2, alpha: 16, dropout: 0.05,
          target_modules: [query, value]}
train: {max_steps: 200, lr: 2.0e-4, batch_size: 16, max_length: 128, seed: 0}
resources: {gpus: 0.25, cpus: 1}
retries: 2
tags: [demo, team=nlp]
alias: sentiment@latest
"""


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text('{"text": "a", "label": 0}\n')
    (tmp_path / "data" / "eval.jsonl").write_text('{"text": "b", "label": 1}\n')
    return tmp_path
NO_ALIAS = GOOD.replace("alias: sentiment@latest\n", "")  # a sweep has no single adapter


def write(spec_dir: Path, text: str) -> Path:
    path = spec_dir / "job.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_good_spec_parses_with_paths_relative_to_the_spec_file(spec_dir, monkeypatch):
    monkeypatch.chdir("/")
    [spec] = load_specs(write(spec_dir, GOOD))
    assert spec.name == "sentiment"
    assert spec.base_model == str(spec_dir / "model")
    assert spec.data.train == str(spec_dir / "data" / "train.jsonl")
    assert spec.prolora.r == 8 and spec.prolora.target_modules == ("query", "value")
    assert spec.train.lr == pytest.approx(2e-4)
    assert spec.resources.ray_options() == {"num_gpus": 0.25, "num_cpus": 1.0}
    assert spec.tags == ("demo", "team=nlp")
    assert spec.alias == "sentiment@latest"
    assert JobSpec.from_json(spec.to_json()) == spec


def test_sweep_is_the_cross_product(spec_dir):
    text = NO_ALIAS + "sweep:\n  prolora.r: [4, 8, 16]\n  train.seed: [0, 1]\n"
    specs = load_specs(write(spec_dir, text))
    assert len(specs) == 6
    assert {(s.prolora.r, s.train.seed) for s in specs} == {
        (r, seed) for r in (4, 8, 16) for seed in (0, 1)}
    assert specs[0].display_name == "sentiment[prolora.r=4,train.seed=0]"


def test_set_overrides_are_yaml_typed(spec_dir):
    [spec] = load_specs(write(spec_dir, GOOD), overrides=[
        "train.lr=1e-3", "prolora.r=4", "resources.custom.zoo_worker=1", "tags=[a, b]"])
    assert spec.train.lr == pytest.approx(1e-3) and isinstance(spec.train.lr, float)
    assert spec.prolora.r == 4
    assert spec.resources.ray_options()["resources"] == {"zoo_worker": 1.0}
    assert spec.tags == ("a", "b")
    specs = load_specs(write(spec_dir, NO_ALIAS), overrides=["sweep.train.seed=[1, 2, 3]"])
    assert [s.train.seed for s in specs] == [1, 2, 3]


@pytest.mark.parametrize(("edit", "expected"), [
    (("retries: 2", "retries: 2\nepochs: 3"), "epochs: unknown field"),
    (("seed: 0}", "seed: 0, sede: 1}"), "train.sede: unknown field"),
    (("r: 8,", "r: 0,"), "prolora.r: r=0 is invalid: must be a positive integer"),
    (("r: 8,", "r: -3,"), "prolora.r: r=-3 is invalid"),
    (("r: 8,", "r: 100000000000000000000,"), "prolora.r: r=100000000000000000000 is invalid"),
    (("lr: 2.0e-4", "lr: 0"), "train.lr: lr=0.0 is invalid"),
    (("r: 8,", "r: eight,"), "prolora.r: expected an integer, got 'eight'"),
    (("lr: 2.0e-4", "lr: fast"), "train.lr: expected a number, got 'fast'"),
    (("unshared_r: 1", "unshared_r: 9"), "prolora.unshared_r:"),
    (("task: seq-cls", "task: translate"), "task: must be one of seq-cls, causal-lm"),
    (("./model", "./nope"), "base_model: model directory not found"),
    (("data/train.jsonl", "data/missing.jsonl"), "data.train: data file not found"),
    (("gpus: 0.25", "gpus: -1"), "resources.gpus: must be a number >= 0 (got -1)"),
    (("tags: [demo, team=nlp]", "tags: [../etc]"), "tags[0]: tag key '../etc' contains '..'"),
    # what publish refuses, the spec refuses before any training
    (("tags: [demo, team=nlp]", "tags: [team=nlp/core]"), "tags[0]: tag value 'nlp/core'"),
    (("tags: [demo, team=nlp]", "tags: [a..b]"), "tags[0]: tag key 'a..b' contains '..'"),
    (("alias: sentiment@latest", "alias: other@latest"), "alias: 'other@latest' must be"),
    (("name: sentiment", "name: ../x"), "name: name '../x' contains '..'"),
    (("name: sentiment\n", ""), "name: required field is missing"),
    (("retries: 2", "sweep: {prolora.rank: [1, 2]}"), "sweep: unknown key 'prolora.rank'"),
    (("retries: 2", "sweep: {prolora.r: 4}"), "sweep.prolora.r: expected a non-empty list"),
    (("alias: sentiment@latest", "sweep: {prolora.r: [4, 0]}"), "prolora.r: r=0 is invalid"),
    (("retries: 2", "sweep: {prolora.r: [4, 8]}"), "alias: a sweep makes 2 jobs"),
    (("retries: 2", "retries: 1000"), "retries: at most 100"),
])
def test_bad_specs_name_the_field(spec_dir, edit, expected):
    old, new = edit
    assert old in GOOD
    with pytest.raises(SpecError) as info:
        load_specs(write(spec_dir, GOOD.replace(old, new, 1)))
    message = str(info.value)
    assert message.startswith(expected.split(":")[0] + ":"), message
    assert expected in message
    assert "\n" not in message


def test_malformed_yaml_is_one_line_with_line_number(spec_dir):
    path = write(spec_dir, GOOD.replace("task: seq-cls", "task: [seq-cls"))
    with pytest.raises(SpecError) as info:
        load_specs(path)
    message = str(info.value)
    assert "malformed YAML" in message and " line " in message and "\n" not in message


def test_bad_overrides(spec_dir):
    path = write(spec_dir, GOOD)
    with pytest.raises(SpecError, match=r"^train\.lrr: unknown field"):
        load_specs(path, overrides=["train.lrr=1"])
    with pytest.raises(SpecError, match=r"^train\.lr: expected a number, got 'fast'"):
        load_specs(path, overrides=["train.lr=fast"])
    with pytest.raises(SpecError, match="expected key=value"):
        load_specs(path, overrides=["train.lr"])


def test_hub_ids_and_s3_pass_through(spec_dir):
    text = GOOD.replace("./model", "org/some-model").replace(
        "data/train.jsonl", "s3://bucket/train.jsonl")
    [spec] = load_specs(write(spec_dir, text))
    assert spec.base_model == "org/some-model"
    assert spec.data.train == "s3://bucket/train.jsonl"


def test_every_leaf_path_is_sweepable_or_settable():
    paths = leaf_paths()
    assert "prolora.r" in paths and "train.seed" in paths and "resources.gpus" in paths
    assert "sweep" not in paths


def test_names_the_catalog_allows_are_allowed(spec_dir):
    """One set of name rules: a spec takes every name publish takes (Unicode letters, dots)."""
    text = GOOD.replace("name: sentiment", "name: модель.v2").replace(
        "alias: sentiment@latest", "alias: модель.v2@prod")
    [spec] = load_specs(write(spec_dir, text))
    assert spec.name == "модель.v2" and spec.alias == "модель.v2@prod"


def test_jobs_train_with_the_library_defaults(spec_dir):
    """The spec's train section IS TrainOptions: omitted fields get train_adapter's defaults
    (warmup, gradient clipping), and every option can be set."""
    from zoo.train_options import TrainOptions

    text = GOOD[:GOOD.index("\ntrain:") + 1] + GOOD[GOOD.index("resources:"):]
    [spec] = load_specs(write(spec_dir, text))
    assert spec.train == TrainOptions()
    assert spec.train.warmup_ratio == 0.03 and spec.train.max_grad_norm == 0.3
    [spec] = load_specs(write(spec_dir, GOOD), overrides=["train.max_grad_norm=1.0",
                                                           "train.grad_accum=2"])
    assert spec.train.max_grad_norm == 1.0 and spec.train.grad_accum == 2


def test_a_yaml_alias_bomb_is_refused_at_once(spec_dir):
    """600 bytes of nested anchors used to expand until MemoryError (37 s)."""
    import time

    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
        f'{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n'
        for p, c in zip("abcdefgh", "bcdefghi", strict=True))
    start = time.monotonic()
    with pytest.raises(SpecError, match="aliases") as info:
        load_specs(write(spec_dir, bomb))
    assert time.monotonic() - start < 30  # a guard against hanging, not a timing claim
    assert "\n" not in str(info.value) and len(str(info.value)) < 400


def test_an_oversized_spec_is_refused(spec_dir):
    with pytest.raises(SpecError, match="at most"):
        load_specs(write(spec_dir, GOOD + "# " + "x" * (2 << 20) + "\n"))
