"""train_adapter on tiny real models: learning, determinism, exact resume, base left intact."""

from __future__ import annotations

import pytest

import zoo
from zoo.base_models import load_base
from zoo.digest import base_model_digest
from zoo.errors import ConfigError, TrainingStopped
from zoo.evaluate import evaluate_adapter
from zoo.train import TrainOptions, train_adapter

LLAMA_CFG = zoo.PRoLoRAConfig(r=4, unshared_r=1, share_a=2, share_b=2, alpha=8, dropout=0.1,
                              target_modules=["q_proj", "v_proj", "o_proj", "down_proj"])
BERT_CFG = zoo.PRoLoRAConfig(r=4, unshared_r=1, share_a=2, share_b=2, alpha=16,
                             target_modules=["query", "value"], modules_to_save=("classifier",))


def run_llama(llama_dir, lm_files, options, **kwargs):
    return train_adapter(base_model=str(llama_dir), task="causal-lm", train_path=str(lm_files[0]),
                         eval_path=kwargs.pop("eval_path", None), prolora=LLAMA_CFG,
                         options=options, **kwargs)


def test_causal_lm_training_lowers_the_loss(llama_dir, lm_files):
    seen = []
    result = run_llama(llama_dir, lm_files, TrainOptions(max_steps=40, lr=1e-2, batch_size=16),
                       eval_path=str(lm_files[1]), progress=seen.append)
    m = result.metrics
    assert result.steps == 40 and m["steps"] == 40
    assert m["train_loss"] < m["train_loss_first"] - 0.3, m
    assert m["eval_loss"] < m["train_loss_first"] - 0.3, m
    assert {"eval_perplexity", "eval_exact_match", "eval_examples"} <= set(m)
    assert [p["step"] for p in seen] == list(range(1, 41))
    assert all({"loss", "lr", "epoch", "max_steps"} <= set(p) for p in seen)
    lrs = [p["lr"] for p in seen]
    assert lrs[0] < lrs[1] == pytest.approx(1e-2) and lrs[-1] < lrs[20] < lrs[1]  # warmup, decay
    cfg = result.adapter.config
    assert cfg.base_model == str(llama_dir) and cfg.task == "causal-lm"
    assert cfg.base_model_digest == base_model_digest(llama_dir)
    assert cfg.extra["seed"] == 0 and len(cfg.extra["dataset_fingerprint"]) == 64
    assert m["adapter_params"] == result.adapter.num_params > 0


def test_seq_cls_training_learns_and_the_file_reproduces_the_metrics(bert_dir, cls_files, tmp_path):
    train, evaluation = cls_files
    result = train_adapter(base_model=str(bert_dir), task="seq-cls", train_path=str(train),
                           eval_path=str(evaluation), prolora=BERT_CFG,
                           options=TrainOptions(max_steps=80, lr=1e-2, batch_size=16))
    m = result.metrics
    assert m["train_loss"] < m["train_loss_first"] - 0.1, m
    assert m["eval_accuracy"] >= 0.7, m
    assert result.adapter.config.label_names == ("neg", "pos")
    assert m["saved_params"] == 2 * 32 + 2  # the classifier head travels with the adapter

    path = tmp_path / "a.safetensors"
    result.adapter.save(path)
    base, tok = load_base(bert_dir, "seq-cls", label_names=["neg", "pos"])
    before = evaluate_adapter(base, tok, "seq-cls", evaluation, 32, label_names=["neg", "pos"])
    zoo.attach(base, zoo.Adapter.load(path))
    after = evaluate_adapter(base, tok, "seq-cls", evaluation, 32,
                             label_names=result.adapter.config.label_names)
    assert after["accuracy"] == pytest.approx(m["eval_accuracy"])
    assert after["loss"] == pytest.approx(m["eval_loss"], rel=1e-5)
    assert after["loss"] < before["loss"]


def test_same_seed_same_adapter_bytes(llama_dir, lm_files):
    options = TrainOptions(max_steps=6, lr=5e-3, batch_size=8, grad_accum=2, seed=3)
    a = run_llama(llama_dir, lm_files, options).adapter
    b = run_llama(llama_dir, lm_files, options).adapter
    c = run_llama(llama_dir, lm_files, TrainOptions(max_steps=6, lr=5e-3, batch_size=8,
                                                    grad_accum=2, seed=4)).adapter
    assert a.to_bytes() == b.to_bytes()
    assert a.digest != c.digest


def test_resume_from_a_checkpoint_gives_the_uninterrupted_adapter(llama_dir, lm_files):
    # 256 examples / batch 16 = 16 micro-batches per epoch; 12 steps x accum 2 crosses an epoch
    options = TrainOptions(max_steps=12, lr=5e-3, batch_size=16, grad_accum=2, seed=1,
                           checkpoint_every=5)
    blobs = {}
    full = run_llama(llama_dir, lm_files, options,
                     checkpoint=lambda blob, step: blobs.__setitem__(step, blob))
    assert sorted(blobs) == [5, 10]
    for step in (5, 10):
        resumed = run_llama(llama_dir, lm_files, options, resume_from=blobs[step])
        assert resumed.adapter.to_bytes() == full.adapter.to_bytes(), f"resume from {step}"
        assert resumed.metrics["train_loss"] == full.metrics["train_loss"]


def test_resume_rejects_foreign_or_garbage_checkpoints(llama_dir, lm_files):
    options = TrainOptions(max_steps=4, lr=5e-3, batch_size=8, checkpoint_every=2)
    blobs = []
    run_llama(llama_dir, lm_files, options, checkpoint=lambda b, s: blobs.append(b))
    other = TrainOptions(max_steps=4, lr=1e-3, batch_size=8, checkpoint_every=2)
    with pytest.raises(ConfigError, match="belongs to a different job"):
        run_llama(llama_dir, lm_files, other, resume_from=blobs[0])
    with pytest.raises(ConfigError, match="not readable"):
        run_llama(llama_dir, lm_files, options, resume_from=b"not a checkpoint")


def test_a_given_model_is_trained_then_left_exactly_as_it_was(bert_dir, cls_files):
    import torch

    model, tok = load_base(bert_dir, "seq-cls", label_names=["neg", "pos"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    result = train_adapter(base_model=str(bert_dir), task="seq-cls", train_path=str(cls_files[0]),
                           eval_path=None, prolora=BERT_CFG, model=model, tokenizer=tok,
                           options=TrainOptions(max_steps=5, lr=1e-2, batch_size=8))
    assert result.adapter.num_params > 0
    after = model.state_dict()
    assert set(after) == set(before)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == grads
    assert not any("PRoLoRA" in type(m).__name__ for m in model.modules())


def test_should_stop_raises_and_detaches(bert_dir, cls_files):
    model, tok = load_base(bert_dir, "seq-cls", label_names=["neg", "pos"])
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(TrainingStopped, match="at step 2 of 50"):
        train_adapter(base_model=str(bert_dir), task="seq-cls", train_path=str(cls_files[0]),
                      eval_path=None, prolora=BERT_CFG, model=model, tokenizer=tok,
                      options=TrainOptions(max_steps=50, batch_size=8), should_stop=stop)
    assert not any("PRoLoRA" in type(m).__name__ for m in model.modules())


def test_given_model_with_wrong_label_count_is_rejected(bert_dir, cls_files):
    model, tok = load_base(bert_dir, "seq-cls", label_names=["a", "b", "c"])
    with pytest.raises(ConfigError, match="has 3 labels but the data has 2"):
        train_adapter(base_model=str(bert_dir), task="seq-cls", train_path=str(cls_files[0]),
                      eval_path=None, prolora=BERT_CFG, model=model, tokenizer=tok,
                      options=TrainOptions(max_steps=1))


def test_bad_data_fails_before_loading_the_model(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x"}\n')
    with pytest.raises(ConfigError, match=r"bad\.jsonl:1: missing column 'completion'"):
        train_adapter(base_model="nobody/never-loaded", task="causal-lm", train_path=str(bad),
                      eval_path=None, prolora=LLAMA_CFG, options=TrainOptions(max_steps=1))


def test_options_validation_and_schedule():
    with pytest.raises(ConfigError, match="not both"):
        TrainOptions(max_steps=3, epochs=1.0)
    with pytest.raises(ConfigError, match="lr=0"):
        TrainOptions(lr=0)
    with pytest.raises(ConfigError, match="unknown train option"):
        TrainOptions.from_dict({"steps": 3})
    assert TrainOptions(epochs=2.0, batch_size=10, grad_accum=2).total_steps(95) == 10
    assert TrainOptions().total_steps(33) == 3  # neither given: one epoch
    o = TrainOptions(max_steps=100, lr=1.0, warmup_steps=10)
    assert [o.lr_at(s, 100) for s in (0, 9, 10, 55, 99)] == pytest.approx(
        [0.1, 1.0, 1.0, 0.5, 1 / 90])


@pytest.mark.gpu
def test_cuda_training_uses_bf16_autocast_with_fp32_adapter(llama_dir, lm_files):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    result = run_llama(llama_dir, lm_files, TrainOptions(max_steps=30, lr=1e-2, batch_size=16),
                       eval_path=str(lm_files[1]), device="cuda")
    m = result.metrics
    assert m["train_loss"] < m["train_loss_first"] - 0.3, m
    assert result.adapter.config.dtype == "float32"
    assert all(t.device.type == "cpu" for t in result.adapter.tensors.values())


def test_eval_before_reports_the_untrained_start_without_changing_training(bert_dir, cls_files):
    train, evaluation = cls_files
    runs = [train_adapter(base_model=str(bert_dir), task="seq-cls", train_path=str(train),
                          eval_path=str(evaluation), prolora=BERT_CFG,
                          options=TrainOptions(max_steps=30, lr=1e-2, batch_size=16,
                                               eval_before=flag))
            for flag in (False, True)]
    plain, with_baseline = runs
    assert "baseline_accuracy" not in plain.metrics
    m = with_baseline.metrics
    assert {"baseline_accuracy", "baseline_loss"} <= set(m)
    assert 0.0 <= m["baseline_accuracy"] <= 1.0
    assert m["baseline_loss"] != m["eval_loss"]  # measured before training, not after
    for key, tensor in plain.adapter.tensors.items():  # same training either way
        assert tensor.equal(with_baseline.adapter.tensors[key]), key
