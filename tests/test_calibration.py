"""Calibration rows: our score beside the published one, the difference, the tolerance; the job fails beyond it."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from conftest import REPO

from workflow_scripts import study
from workflow_scripts.report import calibration, paths


def _write(path: str, obj: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)


CONFIG = {"reference_models": {
    "llava-1.5-7b": {"label": "LLaVA-1.5-7B", "template": "vicuna_v1", "published": {
        "mme": {"metric": "perception", "value": 1510.7, "tolerance": 10, "source": "MODEL_ZOO"},
        "pope": {"metric": "f1_mean", "value": 85.9, "tolerance": 0.5, "source": "MODEL_ZOO"}}},
    "toy-export": {"label": "Export", "template": "vicuna_v1", "published": {
        "flickr30k": {"metric": "CIDEr", "same_as_cell": "toy/layernorm/0.003", "tolerance": 0.0, "source": "-"}}}}}


def test_rows_hold_ours_published_difference_and_verdict(tmp_path):
    results = str(tmp_path)
    _write(paths.reference_metrics(results, "llava-1.5-7b", "mme"), {"perception": 1503.2})
    _write(paths.reference_metrics(results, "llava-1.5-7b", "pope"), {"f1_mean": 85.1})
    _write(paths.reference_metrics(results, "toy-export", "flickr30k"), {"CIDEr": 41.25})
    _write(paths.eval_metrics(results, "toy", "layernorm", "0.003", "flickr30k"), {"CIDEr": 41.25})
    rows = {(r["reference"], r["bench"]): r for r in calibration.calibration_rows(CONFIG, results)}
    mme = rows[("llava-1.5-7b", "mme")]
    assert mme["difference"] == pytest.approx(-7.5) and mme["within"]  # 1503.2 - 1510.7, |7.5| <= 10
    pope = rows[("llava-1.5-7b", "pope")]
    assert pope["difference"] == pytest.approx(-0.8) and not pope["within"]  # 85.1 - 85.9, 0.8 > 0.5
    toy = rows[("toy-export", "flickr30k")]
    assert toy["published"] == 41.25 and toy["difference"] == 0.0 and toy["within"]
    assert "toy/layernorm/0.003" in toy["source"]


def test_a_row_beyond_its_tolerance_fails_and_writes_no_table(tmp_path, capsys):
    results = str(tmp_path / "results")
    _write(paths.reference_metrics(results, "llava-1.5-7b", "mme"), {"perception": 1503.2})
    _write(paths.reference_metrics(results, "llava-1.5-7b", "pope"), {"f1_mean": 85.1})
    config = {"reference_models": {"llava-1.5-7b": CONFIG["reference_models"]["llava-1.5-7b"]}}
    out = tmp_path / "tables"
    with pytest.raises(SystemExit, match=r"pope f1_mean 85.10 vs published 85.90 \(difference -0.80, tolerance 0.5\)"):
        calibration.main(["--config-json", json.dumps(config), "--results", results, "--out-dir", str(out)])
    assert "| LLaVA-1.5-7B | mme | perception | 1503.20 | 1510.70 | -7.50 |" in capsys.readouterr().out
    assert not out.exists()
    config["reference_models"]["llava-1.5-7b"]["published"]["pope"]["tolerance"] = 1.0
    calibration.main(["--config-json", json.dumps(config), "--results", results, "--out-dir", str(out)])
    assert json.loads((out / "calibration.json").read_text())[1]["within"]


def test_reference_entries_are_checked_against_the_study():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    study.check_config(config)
    bad = json.loads(json.dumps(config))
    bad["reference_models"]["llava-1.5-7b"]["published"]["mme"]["same_as_cell"] = "vicuna-7b/layernorm/0.002"
    with pytest.raises(study.ConfigError, match="published.mme: give either value"):
        study.check_config(bad)
    bad = json.loads(json.dumps(config))
    bad["reference_models"]["llava-1.5-7b"]["export_of"] = "vicuna-7b/layernorm/0.002"
    with pytest.raises(study.ConfigError, match="either path .* or export_of"):
        study.check_config(bad)
    bad = json.loads(json.dumps(config))
    bad["reference_models"]["llava-1.5-7b"]["published"]["gqa"] = {"metric": "acc", "value": 62.0, "tolerance": 1,
                                                                      "source": "x"}
    with pytest.raises(study.ConfigError, match="published.gqa: not configured"):
        study.check_config(bad)


def test_table1_reference_rows_show_ours_published_and_difference(tmp_path):
    from workflow_scripts.report import tables

    results = str(tmp_path)
    _write(paths.reference_metrics(results, "llava-1.5-7b", "mme"), {"perception": 1503.2, "cognition": 300.0})
    columns = [("MME-P", "mme", "perception"), ("MME-C", "mme", "cognition"), ("POPE", "pope", "f1_mean")]
    config = {"reference_models": {"llava-1.5-7b": CONFIG["reference_models"]["llava-1.5-7b"]}}
    ours, published, diff = tables.reference_rows(config, results, columns)
    assert ours == ["LLaVA-1.5-7B", "released checkpoint, our evaluation", "n/a", "n/a", 1503.2, "n/a", None]
    assert published == ["LLaVA-1.5-7B", "published", "n/a", "n/a", 1510.7, "n/a", 85.9]
    assert diff[4] == pytest.approx(-7.5) and diff[5:] == ["n/a", None]  # POPE not evaluated yet: missing, not 0


def test_mme_can_ask_as_llava_did(tmp_path):
    """LLaVA-1.5's MME protocol: its short-answer suffix instead of "Please answer yes or no." (two spaces kept
    apart); the official wording stays the default."""
    from workflow_scripts.evaluate import mme

    sub = tmp_path / "MME_Benchmark_release_version" / "count"
    sub.mkdir(parents=True)
    (sub / "000000006040.jpg").write_bytes(b"jpg")
    (sub / "000000006040.txt").write_text("Are there two cats?  Please answer yes or no.\tYes\n"
                                          "Are there three cats? Please answer yes or no.\tNo\n")
    official, _ = mme.build_prompts(str(tmp_path / "MME_Benchmark_release_version"))
    llava, refs = mme.build_prompts(str(tmp_path / "MME_Benchmark_release_version"), "llava")
    assert official[0].question.endswith("Are there two cats?  Please answer yes or no.")
    assert [p.question.split("\n", 1)[1] for p in llava] == [
        "Are there two cats?\nAnswer the question using a single word or phrase.",
        "Are there three cats?\nAnswer the question using a single word or phrase."]
    assert {p.id for p in llava} == set(refs)  # scored against the same references
