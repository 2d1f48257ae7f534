"""Shared fixtures: the repository's configs (with schema defaults), a smoke-sized toy world in a temp folder."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
SCHEMA = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())


def _with_defaults(validator_class):
    # jsonschema does not fill defaults; Snakemake's validate does. Mirror it so tests see what rules see.
    validate_props = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        for name, sub in properties.items():
            if isinstance(instance, dict) and "default" in sub:
                instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from validate_props(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


DefaultFiller = _with_defaults(jsonschema.Draft202012Validator)


def validated(config: dict) -> dict:
    """The config with schema defaults filled in; raises jsonschema.ValidationError when invalid."""
    config = copy.deepcopy(config)
    DefaultFiller(SCHEMA).validate(config)
    return config


def load_config(name: str) -> dict:
    return validated(yaml.safe_load((REPO / name).read_text()))


def subprocess_env() -> dict:
    """Environment for child processes: the venv's tools first on PATH (rules call `python`)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["NO_ALBUMENTATIONS_UPDATE"] = "1"
    return env


@pytest.fixture(scope="session")
def smoke_config() -> dict:
    return load_config("config/smoke.yaml")


@pytest.fixture(scope="session")
def smoke_world(tmp_path_factory, smoke_config):
    """A smoke-sized toy world generated once for the session: (config with tmp paths, manifest dict)."""
    from workflow_scripts import study
    from workflow_scripts.toyworld import world

    base = tmp_path_factory.mktemp("world")
    config = copy.deepcopy(smoke_config)
    config["data_root"] = str(base / "data")
    config["toy_world"]["root"] = str(base)
    spec = {"toy": config["toy_world"], "paths": study.relative_data_paths(config), "data_root": config["data_root"]}
    import json

    world.main(["--spec", json.dumps(spec), "--manifest", str(base / "world.json")])
    return config, json.loads((base / "world.json").read_text())


@pytest.fixture(scope="session")
def toy_tokenizer(smoke_world):
    """A toy LLaMA tokenizer trained on the smoke world's text, with the <image> token added."""
    import json

    from workflow_scripts.toyworld.toy_llm import train_tokenizer

    config, _ = smoke_world
    path = Path(config["toy_world"]["root"]) / "pretrain" / "text_train.jsonl"
    texts = [json.loads(line)["text"] for line in path.read_text().splitlines()]
    tokenizer = train_tokenizer(texts, 400)
    tokenizer.add_tokens(["<image>"], special_tokens=True)
    return tokenizer


TINY = {"hidden": 16, "layers": 2, "heads": 2, "intermediate": 32, "vision_hidden": 24}


@pytest.fixture(scope="session")
def tiny_base_models(tmp_path_factory, smoke_world):
    """An untrained tiny LLaMA (+ the toy tokenizer, without <image>) and tiny CLIP saved in HF format, for
    tests that need a real MLLM but not a useful one. Sizes in TINY (counts in tests are computed from them)."""
    import json

    from transformers import CLIPConfig, CLIPModel, LlamaConfig, LlamaForCausalLM

    from workflow_scripts.toyworld.toy_llm import train_tokenizer
    from workflow_scripts.toyworld.toy_vision import image_processor

    config, _ = smoke_world
    base = tmp_path_factory.mktemp("tiny")
    texts = [json.loads(line)["text"] for line in
             (Path(config["toy_world"]["root"]) / "pretrain" / "text_train.jsonl").read_text().splitlines()]
    tok = train_tokenizer(texts, 400)
    import torch

    torch.manual_seed(0)
    llm = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=TINY["hidden"],
                                       intermediate_size=TINY["intermediate"], num_hidden_layers=TINY["layers"],
                                       num_attention_heads=TINY["heads"], num_key_value_heads=TINY["heads"],
                                       tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0))
    llm.save_pretrained(base / "llm")
    tok.save_pretrained(base / "llm")
    clip = CLIPModel(CLIPConfig(
        text_config=dict(vocab_size=50, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16),
        vision_config=dict(hidden_size=TINY["vision_hidden"], intermediate_size=32, num_hidden_layers=2,
                           num_attention_heads=2, image_size=64, patch_size=16), projection_dim=8))
    clip.save_pretrained(base / "vision")
    image_processor(64).save_pretrained(base / "vision")
    return str(base / "llm"), str(base / "vision")


@pytest.fixture(scope="session")
def smoke_shards(smoke_world, tmp_path_factory):
    """The smoke world's CC3M rows downloaded by img2dataset into webdataset shards."""
    from workflow_scripts import study
    from workflow_scripts.data import cc3m

    config, _ = smoke_world
    out = tmp_path_factory.mktemp("shards")
    cc3m.main(["--tsv", study.data_path(config, "cc3m_tsv"), "--shards", str(out / "shards"), "--summary",
               str(out / "summary.json"), "--image-size", "64", "--per-shard", "10", "--threads", "4",
               "--allow-file-urls"])
    return str(out / "shards")


def training_config(config: dict, **stage2) -> dict:
    """The smoke config with stage-2 overrides, as the training scripts receive it."""
    config = copy.deepcopy(config)
    config["stage2"].update(stage2)
    return config


@pytest.fixture(scope="session")
def trained_base_models(smoke_world, tmp_path_factory):
    """The smoke config's toy LLM and toy CLIP, trained once per session: (llm_dir, vision_dir, metrics)."""
    import json

    from workflow_scripts.toyworld import toy_llm, toy_vision

    config, _ = smoke_world
    root = Path(config["toy_world"]["root"]) / "pretrain"
    out = tmp_path_factory.mktemp("trained")
    toy_llm.main(["--train", str(root / "text_train.jsonl"), "--val", str(root / "text_val.jsonl"), "--spec",
                  json.dumps(config["toy_world"]["llm"]), "--out", str(out / "llm"), "--metrics",
                  str(out / "llm.json")])
    toy_vision.main(["--train", str(root / "clip_train.jsonl"), "--test", str(root / "clip_test.jsonl"),
                     "--images", str(root), "--image-size", str(config["toy_world"]["image_size"]), "--spec",
                     json.dumps(config["toy_world"]["vision"]), "--out", str(out / "vision"), "--metrics",
                     str(out / "vision.json")])
    metrics = {k: json.loads((out / f"{k}.json").read_text()) for k in ("llm", "vision")}
    return str(out / "llm"), str(out / "vision"), metrics


def paper_config_file(tmp_path: Path) -> Path:
    """config.yaml with its data root pointed at empty stand-ins for the inputs the DAG needs to build."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["data_root"] = str(tmp_path / "resources")
    for rel in (config["data"]["cc3m_tsv"], config["data"]["instruct_json"],
                config["benchmarks"]["flickr30k"]["karpathy_json"], config["benchmarks"]["coco"]["karpathy_json"]):
        (tmp_path / "resources" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "resources" / rel).write_text("")
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake(workdir: Path, *args: str, timeout: int = 600, env: dict | None = None):
    """Snakemake's CLI on the repository's Snakefile in ``workdir`` (the default profile applies unless
    ``--profile`` is given); ``env`` replaces the child's environment (default: ``subprocess_env()``)."""
    import subprocess

    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env or subprocess_env(), timeout=timeout)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The smoke workflow's default target, run once per session (tests that change it work on a copy)."""
    tmp_path = tmp_path_factory.mktemp("smoke_run")
    proc = snakemake(tmp_path, "--configfile", str(REPO / "config/smoke.yaml"), "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp_path
