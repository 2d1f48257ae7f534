"""Preflight names what is missing or malformed, and where to get it."""

import copy
import json
from pathlib import Path

from workflow_scripts.data import preflight


def test_toy_world_passes(smoke_world):
    config, _ = smoke_world
    found, problems = preflight.preflight(config)
    assert problems == []
    assert found["pope_root"]["found"].startswith("random: ")
    assert found["instruct_json"]["found"] == f"{config['toy_world']['counts']['instruct']} records"


def test_missing_and_malformed_inputs_are_named(smoke_world, tmp_path):
    config, _ = smoke_world
    config = copy.deepcopy(config)
    config["benchmarks"]["mme"]["root"] = "no/such/MME"
    bad = tmp_path / "coco_pope_random.json"
    bad.write_text('{"question_id": 1, "image": "a.jpg", "text": "Is there a dog?", "label": "maybe"}\n')
    config["benchmarks"]["pope"]["root"] = str(Path(tmp_path).resolve())
    config["benchmarks"]["pope"]["splits"] = ["random"]
    _, problems = preflight.preflight(config)
    assert len(problems) == 2
    assert problems[0].startswith("missing mme_root: ") and "MME_Benchmark_release_version" in problems[0]
    assert "unreadable pope_root" in problems[1] and "coco_pope_random.json: line 1: label" in problems[1]


def test_main_exits_nonzero_and_writes_nothing(tmp_path, smoke_world, capsys):
    config, _ = smoke_world
    config = copy.deepcopy(config)
    config["data"]["instruct_json"] = "missing.json"
    out = tmp_path / "inputs.json"
    try:
        preflight.main(["--config-json", json.dumps(config), "--out", str(out)])
        raise AssertionError("preflight passed with a missing input")
    except SystemExit as e:
        assert e.code == 1
    assert "missing instruct_json" in capsys.readouterr().err and not out.exists()
