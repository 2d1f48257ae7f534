"""Generation and the evaluation driver: batched == batch size 1, rescoring of our and LLaVA's answer files,
a clear error for missing benchmark data, the blind control."""

import json
import os
import subprocess
import sys

import pytest
from conftest import subprocess_env
from transformers import AutoProcessor, LlavaForConditionalGeneration

from workflow_scripts import study
from workflow_scripts.evaluate import mme, pope, run
from workflow_scripts.evaluate.generate import generate
from workflow_scripts.model.build import build_mllm

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def toy_mllm(trained_base_models, tmp_path_factory):
    """An assembled toy MLLM saved like an export (untrained connector: answers vary by image anyway)."""
    out = tmp_path_factory.mktemp("mllm") / "model"
    model, processor = build_mllm(*trained_base_models[:2])
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return str(out)


def test_batched_generation_equals_batch_size_one(toy_mllm, smoke_world):
    config, _ = smoke_world
    model = LlavaForConditionalGeneration.from_pretrained(toy_mllm)
    processor = AutoProcessor.from_pretrained(toy_mllm)
    prompts, _ = pope.build_prompts(study.data_path(config, "pope_root"), study.data_path(config, "pope_images"),
                                    ["random", "adversarial"])
    prompts = prompts[:24]
    one = generate(model, processor, prompts, "vicuna_v1", max_new_tokens=8, batch_size=1)
    batched = generate(model, processor, prompts, "vicuna_v1", max_new_tokens=8, batch_size=8)
    assert one == batched
    assert len(set(one)) > 1  # not a degenerate constant answer


def test_sampled_decoding_is_seeded_and_differs_from_greedy(toy_mllm, smoke_world):
    """decoding.strategy sample (the authors' sibling code): the same seed answers the same, and it is not
    greedy decoding under another name."""
    config, _ = smoke_world
    model = LlavaForConditionalGeneration.from_pretrained(toy_mllm)
    processor = AutoProcessor.from_pretrained(toy_mllm)
    prompts, _ = pope.build_prompts(study.data_path(config, "pope_root"), study.data_path(config, "pope_images"),
                                    ["random"])
    prompts = prompts[:16]
    hot = {"strategy": "sample", "temperature": 1.5, "top_k": 50}
    a = generate(model, processor, prompts, "vicuna_v1", 8, 8, decoding=hot, seed=1)
    b = generate(model, processor, prompts, "vicuna_v1", 8, 8, decoding=hot, seed=1)
    c = generate(model, processor, prompts, "vicuna_v1", 8, 8, decoding=hot, seed=2)
    greedy = generate(model, processor, prompts, "vicuna_v1", 8, 8)
    assert a == b and a != c and a != greedy


def test_blind_control_changes_what_the_model_sees(toy_mllm, smoke_world):
    config, _ = smoke_world
    model = LlavaForConditionalGeneration.from_pretrained(toy_mllm)
    processor = AutoProcessor.from_pretrained(toy_mllm)
    prompts, _ = mme.build_prompts(study.data_path(config, "mme_root"))
    seen = generate(model, processor, prompts[:16], "vicuna_v1", 6, 8)
    blind = generate(model, processor, prompts[:16], "vicuna_v1", 6, 8, blind=True)
    assert seen != blind


def test_run_writes_predictions_and_rescoring_reproduces_metrics(toy_mllm, smoke_world, tmp_path):
    config, _ = smoke_world
    run.main(["--bench", "mme", "--config-json", json.dumps(config), "--template", "vicuna_v1", "--model",
              toy_mllm, "--out-dir", str(tmp_path / "mme")])
    metrics = json.loads((tmp_path / "mme/metrics.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "mme/predictions.jsonl").read_text().splitlines()]
    assert len(rows) == metrics["provenance"]["prompts"] == 40
    # Our predictions file, and the same answers in LLaVA's answer-file format, rescore to the same numbers.
    # LLaVA's MME answer file: "<subtask>/<image file>" ids, the question (with LLaVA's suffix) in "prompt".
    _, refs = mme.build_prompts(study.data_path(config, "mme_root"))
    llava = tmp_path / "llava_answers.jsonl"
    llava.write_text("".join(json.dumps({
        "question_id": f"{refs[r['id']][0]}/{os.path.basename(refs[r['id']][1])}",
        "prompt": refs[r["id"]][3].replace(" Please answer yes or no.", "") + mme.LLAVA_SUFFIX,
        "text": r["output"], "answer_id": "x", "model_id": "llava", "metadata": {}}) + "\n" for r in rows))
    for path in (tmp_path / "mme/predictions.jsonl", llava):
        out = tmp_path / "rescored.json"
        proc = subprocess.run(
            [sys.executable, "-m", "workflow_scripts.evaluate.mme", "score", "--predictions", str(path), "--data",
             study.data_path(config, "mme_root"), "--out", str(out)], capture_output=True, text=True,
            env=subprocess_env(), timeout=120)
        assert proc.returncode == 0, proc.stderr
        rescored = json.loads(out.read_text())
        assert rescored["perception"] == metrics["perception"] and rescored["subtasks"] == metrics["subtasks"]


def test_missing_benchmark_data_names_file_and_source(toy_mllm, smoke_world, tmp_path):
    config, _ = smoke_world
    config = json.loads(json.dumps(config))
    config["benchmarks"]["pope"]["root"] = "no/such/pope"
    with pytest.raises(SystemExit, match=r"pope: missing root file .*no/such/pope\n.*get it from: .*POPE"):
        run.main(["--bench", "pope", "--config-json", json.dumps(config), "--template", "vicuna_v1", "--model",
                  toy_mllm, "--out-dir", str(tmp_path)])


def test_data_parallel_evaluation_under_torchrun_equals_one_process(toy_mllm, smoke_world, tmp_path):
    """What a multi-GPU evaluation job does, on CPU: torchrun with 2 processes (gloo) splits the prompts and
    gathers the answers; predictions and metrics equal the single-process run's."""
    config, _ = smoke_world
    args = ["-m", "workflow_scripts.evaluate.run", "--bench", "mme", "--config-json", json.dumps(config),
            "--template", "vicuna_v1", "--model", toy_mllm, "--batch-size", "8", "--threads", "1"]
    single = subprocess.run([sys.executable, *args, "--out-dir", str(tmp_path / "one")], env=subprocess_env(),
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    multi = subprocess.run([*torchrun, *args, "--out-dir", str(tmp_path / "two")], env=subprocess_env(),
                           capture_output=True, text=True, timeout=300)
    assert multi.returncode == 0, multi.stderr[-3000:]
    one_rows = [json.loads(line) for line in (tmp_path / "one/predictions.jsonl").read_text().splitlines()]
    two_rows = [json.loads(line) for line in (tmp_path / "two/predictions.jsonl").read_text().splitlines()]
    assert len(one_rows) == len(two_rows) == 40 and one_rows == two_rows
    one, two = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "two"))
    assert one["perception"] == two["perception"] and one["subtasks"] == two["subtasks"]


def test_standalone_evaluation_of_an_export_needs_only_config_model_bench(toy_mllm, smoke_world, tmp_path):
    """A user with a Llava folder: the config YAML (schema defaults filled in), the template from the export."""
    import shutil

    import yaml
    from conftest import REPO

    config, _ = smoke_world
    raw = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    raw["data_root"] = config["data_root"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    export = tmp_path / "export"
    shutil.copytree(toy_mllm, export / "model")
    (export / "model" / "study_model.json").write_text(json.dumps({"template": "vicuna_v1"}))
    run.main(["--config", str(tmp_path / "config.yaml"), "--model", str(export), "--bench", "pope",
              "--out-dir", str(tmp_path / "pope")])
    metrics = json.loads((tmp_path / "pope/metrics.json").read_text())
    assert metrics["provenance"]["template"] == "vicuna_v1" and set(metrics["splits"]) == {"random", "popular",
                                                                                          "adversarial"}
    with pytest.raises(SystemExit, match="no model folder there"):
        run.main(["--config", str(tmp_path / "config.yaml"), "--model", str(tmp_path / "nope"), "--bench", "pope",
                  "--out-dir", str(tmp_path / "x")])
    (export / "model" / "study_model.json").unlink()
    with pytest.raises(SystemExit, match="records its template"):
        run.main(["--config", str(tmp_path / "config.yaml"), "--model", str(export), "--bench", "pope",
                  "--out-dir", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="no such file"):
        run.main(["--config", str(tmp_path / "missing.yaml"), "--model", str(export), "--bench", "pope",
                  "--out-dir", str(tmp_path / "x")])
