"""``zoo serve`` as a user runs it: a subprocess with its own embedded Ray, stopped by Ctrl-C;
bad input fails with one line before Ray starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
from click.testing import CliRunner

from tests.conftest import free_port
from zoo.cli.main import cli
from zoo.testing import random_adapter, save_tiny_kv_llama


def zoo_env(tmp_path) -> dict[str, str]:
    return {"ZOO_CATALOG_URL": f"sqlite:///{tmp_path / 'catalog.db'}",
            "ZOO_STORE_URL": str(tmp_path / "store"), "ZOO_HOME": str(tmp_path / "home")}


def setup_zoo(tmp_path) -> str:
    from transformers import AutoModelForCausalLM

    from zoo.config import PRoLoRAConfig
    from zoo.digest import base_model_digest

    env = zoo_env(tmp_path)
    runner = CliRunner()
    assert runner.invoke(cli, ["init"], env=env).exit_code == 0
    base = save_tiny_kv_llama(tmp_path / "kv")
    assert runner.invoke(cli, ["base", "add", "kv", str(base)], env=env).exit_code == 0
    model = AutoModelForCausalLM.from_pretrained(base)
    adapter = random_adapter(model, PRoLoRAConfig(r=4, unshared_r=2, share_a=2, share_b=2),
                             base_model="kv", seed=1, base_model_digest=base_model_digest(base))
    adapter.save(tmp_path / "a.safetensors")
    pushed = runner.invoke(cli, ["push", str(tmp_path / "a.safetensors"), "--name", "sent",
                                 "--alias", "sent@prod"], env=env)
    assert pushed.exit_code == 0, pushed.output
    return pushed.stdout.strip()


def test_bad_input_is_one_line_before_ray(tmp_path):
    setup_zoo(tmp_path)
    runner = CliRunner()
    for args, code, text in [(["serve", "nope"], 4, "no registered base model"),
                             (["serve", "kv", "--refresh", "soon"], 2, "duration"),
                             (["serve", "kv", "--select", "r<<"], 2, "")]:
        result = runner.invoke(cli, args, env=zoo_env(tmp_path))
        assert result.exit_code == code, (args, result.output)
        assert result.stderr.startswith("zoo: error:") and text in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_serve_command_answers_and_stops_on_ctrl_c(tmp_path):
    adapter_id = setup_zoo(tmp_path)
    port = free_port()
    env = {**os.environ, **zoo_env(tmp_path)}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen([sys.executable, "-m", "zoo.cli.main", "serve", "kv", "--port", str(port),
                             "--refresh", "2s"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 180
        while not any(line.startswith("serving ") for line in lines):  # deployed and said so
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "zoo serve did not come up"
            time.sleep(1)
        assert "serving 1 adapter(s) of kv" in lines[0]
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=30)
        assert {"kv", "sent@prod", adapter_id} <= {m["id"] for m in models.json()["data"]}
        resp = httpx.post(f"http://127.0.0.1:{port}/v1/completions", timeout=60,
                          json={"model": "sent@prod", "prompt": "k1 = v2", "max_tokens": 3,
                                "temperature": 0})
        assert resp.status_code == 200 and resp.headers["x-zoo-adapter-id"] == adapter_id
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0  # Ctrl-C is a clean stop


def test_replicas_get_urls_without_passwords():
    from zoo.workers.serve import ServeConfig, forwarded

    config = ServeConfig(base="kv", catalog_url="postgresql+psycopg://zoo:s3cret@db/zoo",
                         store_url="s3://bucket/zoo")
    sent = forwarded(config)
    assert "s3cret" not in sent.catalog_url and sent.catalog_url.startswith("postgresql+psycopg://zoo@db")
    assert sent.store_url == "s3://bucket/zoo" and sent.base == "kv"


def test_a_ray_serve_config_file_can_build_the_app():
    """``import_path: zoo.workers.serve:app_builder`` with the zoo serve settings as args."""
    from ray import serve

    from zoo.workers.serve import ServeConfig, app_builder, build_app

    args = {"base": "kv", "catalog_url": "sqlite:///x.db", "store_url": "/tmp/s", "tag": "prod",
            "max_adapters": 8, "refresh_s": 5}
    assert isinstance(app_builder(args), serve.Application)
    scaled = build_app(ServeConfig(**args), autoscaling={"min_replicas": 1, "max_replicas": 4},
                       num_gpus=1)
    assert isinstance(scaled, serve.Application)
