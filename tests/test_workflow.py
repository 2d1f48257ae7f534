"""Workflow tests: Snakemake itself runs the toy rules on the smoke config, and dry-runs the paper's config."""

import csv
import json
import os
import re

import pytest
import yaml
from conftest import REPO, paper_config_file, snakemake

from workflow_scripts.io import sha256_file

pytestmark = pytest.mark.slow


def test_smoke_workflow_builds_every_stage(smoke_run):
    tmp_path = smoke_run
    world = json.loads((tmp_path / "resources/smoke/world.json").read_text())
    assert world["counts"]["pope"]["random"] > 0
    llm = json.loads((tmp_path / "results/smoke/toy_models/llm_metrics.json").read_text())
    vision = json.loads((tmp_path / "results/smoke/toy_models/vision_metrics.json").read_text())
    assert llm["val_perplexity_after"] < llm["val_perplexity_before"] / 10
    assert vision["retrieval_top1_after"] > 2 * vision["retrieval_chance"]
    for model in ("llm", "vision"):
        assert (tmp_path / f"resources/smoke/models/{model}/model.safetensors").exists()
        assert (tmp_path / f"results/smoke/logs/toy_{model}/toy_{model}.log").read_text().strip()
    assert (tmp_path / "results/smoke/benchmarks/toy_world.tsv").exists()
    assert json.loads((tmp_path / "results/smoke/preflight/inputs.json").read_text())["cc3m_tsv"]["found"] == "43 rows"
    cc3m = json.loads((tmp_path / "resources/smoke/data/cc3m/shards_summary.json").read_text())
    assert cc3m["downloaded"] > 0 and cc3m["failed_to_download"] > 0
    assert list((tmp_path / "resources/smoke/data/cc3m/shards").glob("*.tar"))
    assert json.loads((tmp_path / "results/smoke/pretrain/smoke-vicuna/metrics.json").read_text())["steps"] == 3
    for strategy in ("finetune", "layernorm"):
        for lr in ("0.003", "0.001"):
            cell = tmp_path / f"results/smoke/finetune/smoke-vicuna/{strategy}/{lr}"
            assert json.loads((cell / "efficiency.json").read_text())["strategy"] == strategy
            # exported only for the calibration row (reference_models.smoke-export.export_of)
            assert (cell / "export").exists() == ((strategy, lr) == ("layernorm", "0.003"))
            assert not os.access(cell / "trainable_delta.safetensors", os.W_OK) or os.geteuid() == 0  # protected
            assert (tmp_path / f"results/smoke/logs/finetune/smoke-vicuna/{strategy}/{lr}.log").exists()
    table = list(csv.DictReader((tmp_path / "results/smoke/efficiency/param_table.csv").open()))
    assert [r["strategy"] for r in table] == ["finetune", "layernorm"]
    flickr = json.loads((tmp_path / "results/smoke/eval/smoke-vicuna/layernorm/0.001/flickr30k/metrics.json")
                        .read_text())
    assert flickr["images"] == 8 and flickr["CIDEr"] >= 0 and flickr["provenance"]["template"] == "vicuna_v1"
    assert flickr["provenance"]["decoding"]["strategy"] == "greedy"
    assert "METEOR" not in flickr and "ROUGE-L" in flickr  # the smoke config's extra_metrics
    rows = list(csv.DictReader((tmp_path / "results/smoke/plan/study_grid.csv").open()))
    assert [(r["strategy"], r["lr"]) for r in rows] == [("finetune", "0.003"), ("finetune", "0.001"),
                                                        ("layernorm", "0.003"), ("layernorm", "0.001")]
    # calibration: the export, loaded as a standard HF Llava folder, scores exactly the cell's own evaluation
    (row,) = json.loads((tmp_path / "results/smoke/tables/calibration.json").read_text())
    assert row["ours"] == row["published"] and row["within"] and row["bench"] == "flickr30k"
    reference = json.loads((tmp_path / "results/smoke/eval_reference/smoke-export/flickr30k/metrics.json").read_text())
    assert reference["provenance"]["model"] != flickr["provenance"]["model"]  # it went through the other path
    again = snakemake(tmp_path, "--configfile", str(REPO / "config/smoke.yaml"), "--cores", "2", "-n")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def chosen_lrs(tmp_path):
    doc = json.loads((tmp_path / "results/smoke/selection/best_lr.json").read_text())
    return {s: sel["lr"] for s, sel in doc["selected"]["smoke-vicuna"].items()}


def test_lr_selection_drives_the_full_evaluation(smoke_run):
    """The checkpoint picks each strategy's LR from the sweep; only there do the other benchmarks run."""
    tmp_path = smoke_run
    doc = json.loads((tmp_path / "results/smoke/selection/best_lr.json").read_text())
    for strategy, sel in doc["selected"]["smoke-vicuna"].items():
        sweep = {lr: json.loads((tmp_path / f"results/smoke/eval/smoke-vicuna/{strategy}/{lr}/flickr30k/metrics.json")
                                .read_text())["CIDEr"] for lr in ("0.003", "0.001")}
        assert sel["scores"] == sweep
        best = max(sweep.values())
        assert sel["lr"] == max((lr for lr in sweep if sweep[lr] == best), key=float)
        others = {lr for lr in sweep if lr != sel["lr"]}
        for bench in ("mme", "vqav2", "coco", "pope"):
            assert (tmp_path / f"results/smoke/eval/smoke-vicuna/{strategy}/{sel['lr']}/{bench}/metrics.json").exists()
            assert not any((tmp_path / f"results/smoke/eval/smoke-vicuna/{strategy}/{lr}/{bench}").exists()
                           for lr in others)
    blind_lr = doc["selected"]["smoke-vicuna"]["finetune"]["lr"]
    blind = json.loads((tmp_path / f"results/smoke/eval_blind/smoke-vicuna/finetune/{blind_lr}/pope/metrics.json")
                       .read_text())
    assert blind["provenance"]["control"] == "blind"
    for bench in ("mme", "vqav2", "coco", "flickr30k", "pope"):
        assert (tmp_path / f"results/smoke/eval_stage1/smoke-vicuna/{bench}/metrics.json").exists()


def test_every_benchmark_scored_at_the_chosen_lr(smoke_run):
    tmp_path = smoke_run
    cell = f"results/smoke/eval/smoke-vicuna/layernorm/{chosen_lrs(tmp_path)['layernorm']}"
    mme = json.loads((tmp_path / cell / "mme/metrics.json").read_text())
    assert set(mme["subtasks"]) == {"existence", "count", "position", "color", "numerical_calculation"}
    assert 0 <= mme["perception"] <= 800 and 0 <= mme["cognition"] <= 200
    vqa = json.loads((tmp_path / cell / "vqav2/metrics.json").read_text())
    assert vqa["questions"] == 16 and 0 <= vqa["accuracy"] <= 100  # the configured subset of 24 questions
    pope = json.loads((tmp_path / cell / "pope/metrics.json").read_text())
    assert set(pope["splits"]) == {"random", "popular", "adversarial"} and 0 <= pope["f1_mean"] <= 100
    coco = json.loads((tmp_path / cell / "coco/metrics.json").read_text())
    assert coco["images"] == 8
    rows = [json.loads(line) for line in (tmp_path / cell / "vqav2/predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and {"id", "prompt", "output", "parsed"} <= set(rows[0])
    assert rows[0]["prompt"].count("ASSISTANT:") == 4  # 3 text-only demonstrations, then the question
    for bench in ("mme", "vqav2", "coco", "pope"):  # provenance names the data files with their hashes
        data = json.loads((tmp_path / cell / f"{bench}/metrics.json").read_text())["provenance"]["data"]
        assert all("sha256" in d or "files" in d for d in data.values())


def test_tables_and_figures_hold_the_measured_values(smoke_run):
    tmp_path = smoke_run
    chosen = chosen_lrs(tmp_path)
    for name in ("table1_main", "table2_efficiency", "lr_sweep", "vqav2_question_types"):
        for ext in ("md", "csv", "tex"):
            assert (tmp_path / f"results/smoke/tables/{name}.{ext}").read_text().strip()
    table1 = list(csv.DictReader((tmp_path / "results/smoke/tables/table1_main.csv").open()))
    rows = {r["strategy"]: r for r in table1 if r["LLM"] == "MM-SmokeVicuna"}
    assert set(rows) == {"best no-image guess", "stage 1 only (connector)", "blind (Finetune, blank images)",
                         "text priors (LayerNorm, blank images in training and test)", "Finetune", "LayerNorm"}
    # the calibration rows below the study's: the export of LayerNorm 3e-3 scored as a standard Llava folder
    calibration = {r["strategy"]: r for r in table1 if r["LLM"] == "Export of LayerNorm 3e-3"}
    assert list(calibration) == ["released checkpoint, our evaluation", "published", "difference"]
    assert calibration["published"]["Flickr30k"] == calibration["released checkpoint, our evaluation"]["Flickr30k"]
    assert float(calibration["difference"]["Flickr30k"]) == 0.0 and calibration["difference"]["POPE"] == "n/a"
    guess = json.loads((tmp_path / "results/smoke/eval_stage1/smoke-vicuna/pope/metrics.json").read_text())
    assert float(rows["best no-image guess"]["POPE"]) == pytest.approx(guess["no_image_guess"]["f1_mean"], abs=1e-5)
    assert guess["no_image_guess"]["f1_mean"] == pytest.approx(200 / 3, abs=0.01)  # "yes" everywhere: P .5, R 1
    assert rows["best no-image guess"]["MSCOCO"] == "n/a"
    priors = chosen["layernorm"]
    trained_blank = json.loads((tmp_path / f"results/smoke/finetune_text_priors/smoke-vicuna/layernorm/{priors}"
                                "/efficiency.json").read_text())
    assert trained_blank["blank_images"] is True and trained_blank["steps"] == 3
    tested_blank = json.loads((tmp_path / f"results/smoke/eval_text_priors/smoke-vicuna/layernorm/{priors}"
                               "/mme/metrics.json").read_text())
    assert tested_blank["provenance"]["control"] == "blind"
    assert tested_blank["provenance"]["model"]["delta"]["sha256"] == sha256_file(
        tmp_path / f"results/smoke/finetune_text_priors/smoke-vicuna/layernorm/{priors}/trainable_delta.safetensors")
    for strategy, shown in (("finetune", "Finetune"), ("layernorm", "LayerNorm")):
        cell = tmp_path / f"results/smoke/eval/smoke-vicuna/{strategy}/{chosen[strategy]}"
        assert rows[shown]["LR"] == chosen[strategy]
        assert float(rows[shown]["POPE"]) == pytest.approx(
            json.loads((cell / "pope/metrics.json").read_text())["f1_mean"], abs=1e-5)
        assert float(rows[shown]["MME-P"]) == pytest.approx(
            json.loads((cell / "mme/metrics.json").read_text())["perception"], abs=1e-5)
        # the per-question-type VQAv2 table holds the same evaluation's per-type scores, every type a column
        per_type = json.loads((cell / "vqav2/metrics.json").read_text())["by_question_type"]
        assert per_type and sum(t["questions"] for t in per_type.values()) == 16  # vqav2.subset_size
        typed = {r["strategy"]: r for r in csv.DictReader(
            (tmp_path / "results/smoke/tables/vqav2_question_types.csv").open())}[shown]
        assert {k: float(typed[f"{k} ({t['questions']})"]) for k, t in per_type.items()} == pytest.approx(
            {k: t["accuracy"] for k, t in per_type.items()}, abs=1e-5)
    eff = {r["strategy"]: r for r in csv.DictReader((tmp_path / "results/smoke/tables/table2_efficiency.csv").open())}
    measured = json.loads((tmp_path / f"results/smoke/finetune/smoke-vicuna/layernorm/{chosen['layernorm']}/"
                                      "efficiency.json").read_text())
    assert int(eff["LayerNorm"]["trainable params"]) == measured["parameters"]["trainable_params"]
    sweep = {r["strategy"]: r for r in csv.DictReader((tmp_path / "results/smoke/tables/lr_sweep.csv").open())}
    changed = measured["tensors_changed"]
    assert sweep["LayerNorm: tensors changed"][chosen["layernorm"]] == f"{changed['changed']}/{changed['trainable']}"
    for figure in ("lr_sweep", "loss"):
        png = (tmp_path / f"results/smoke/figures/{figure}_smoke-vicuna.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
        assert (tmp_path / f"results/smoke/figures/{figure}_smoke-vicuna.svg").read_text().lstrip().startswith("<?xml")
        assert (tmp_path / f"results/smoke/figures/{figure}_smoke-vicuna.pdf").read_bytes()[:5] == b"%PDF-"
    assert len(measured["loss_curve"]) == measured["steps"] == 3
    assert [step for step, _ in measured["loss_curve"]] == [1, 2, 3]
    html = (tmp_path / "results/smoke/tables/table1_main.html").read_text()
    assert "<caption>Table 1: benchmarks at the learning rate chosen" in html and "<li>" in html
    tex = (tmp_path / "results/smoke/tables/table1_main.tex").read_text()
    assert "\\toprule" in tex and "\\footnotesize" in tex and "best no-image guess" in tex


def test_training_logs_say_where_the_run_stands(smoke_run):
    tmp_path = smoke_run
    log = next((tmp_path / "results/smoke/logs/finetune/smoke-vicuna/layernorm").glob("*.log")).read_text()
    assert "step 3/3 (100 %) | elapsed" in log and "| ETA " in log and "| loss " in log
    assert "UNEXPECTED" not in log  # the expected CLIP load report is muted
    assert "{'loss'" not in log  # Trainer's bare per-step dicts are gone
    events = list((tmp_path / "results/smoke/tensorboard/finetune/smoke-vicuna/layernorm").rglob("events.out.*"))
    assert events and all(e.stat().st_size > 0 for e in events)
    assert list((tmp_path / "results/smoke/tensorboard/pretrain/smoke-vicuna").rglob("events.out.*"))
    evaluation = (tmp_path / "results/smoke/logs/eval/smoke-vicuna/layernorm").rglob("mme.log")
    assert any("prompts/s | elapsed" in p.read_text() for p in evaluation)


def test_html_report_collects_tables_and_figures(smoke_run):
    tmp_path = smoke_run
    proc = snakemake(tmp_path, "--configfile", str(REPO / "config/smoke.yaml"), "--report", "report.html")
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = (tmp_path / "report.html").read_text(errors="replace")
    assert "lr_sweep_smoke-vicuna.png" in html and "loss_smoke-vicuna.png" in html and "table1_main.html" in html
    assert "one line per tuning strategy" in html  # a figure's caption
    assert "Not in this report yet" not in html
    assert "POPE* — F1" in html or "POPE" in html and "averaged over the random, popular and adversarial" in html


def test_ablation_targets(smoke_run):
    tmp_path = smoke_run
    proc = snakemake(tmp_path, "--configfile", str(REPO / "config/smoke.yaml"), "--cores", "2", "ablations")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lr = chosen_lrs(tmp_path)["layernorm"]
    data = list(csv.DictReader((tmp_path / "results/smoke/tables/ablation_data_type.csv").open()))
    assert [(r["subset"], r["records"], r["LR"]) for r in data] == [("conversation", "10", lr), ("random", "10", lr),
                                                                    ("full", "all", lr)]
    run = json.loads((tmp_path / f"results/smoke/ablations/data_type/smoke-vicuna/conversation/{lr}/efficiency.json")
                     .read_text())
    assert run["records"] == 10 and run["strategy"] == "layernorm"
    full = json.loads((tmp_path / f"results/smoke/eval/smoke-vicuna/layernorm/{lr}/flickr30k/metrics.json").read_text())
    assert float(data[2]["Flickr30k"]) == pytest.approx(full["CIDEr"], abs=1e-5)  # `full` is the main run
    conn = {r["strategy"]: r for r in csv.DictReader((tmp_path / "results/smoke/tables/ablation_connector.csv").open())}
    assert set(conn) == {"LayerNorm", "Connector only"}
    only = json.loads((tmp_path / f"results/smoke/finetune/smoke-vicuna/connector_only/{lr}/efficiency.json")
                      .read_text())
    assert only["parameters"]["groups"]["connector"]["trainable"] == only["parameters"]["trainable_params"]


def test_missing_real_data_fails_in_preflight_with_where_to_get_it(tmp_path):
    """Without the fetch stage (inputs put in place by hand), preflight names what is missing and its source."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["data_root"] = str(tmp_path / "nothing_here")
    del config["fetch"]
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path, "--configfile", str(path), "--cores", "1", "download_cc3m", timeout=120)
    assert proc.returncode != 0
    log = (tmp_path / "results/logs/preflight/preflight.log").read_text()
    assert "missing cc3m_tsv" in log and "get it from: by hand (sources.yaml: cc3m_tsv)" in log
    assert "ConceptualCaptions/download" in log
    assert "missing instruct_images" in log and "http://images.cocodataset.org/zips/train2017.zip" in log
    assert not (tmp_path / "results/preflight/inputs.json").exists()


def test_paper_config_fetches_first_and_a_manual_input_stops_it_with_the_steps(tmp_path):
    """The paper's config: fetch rules run before preflight; offline (no network here), the CC3M tsv that only a
    person can get fails its fetch with the steps, and a model never fetched fails naming where it should be."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["data_root"] = str(tmp_path / "nothing_here")
    config["fetch"]["offline"] = True
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path, "--configfile", str(path), "--cores", "1", "--keep-going", "fetch", timeout=300)
    assert proc.returncode != 0
    log = (tmp_path / "results/logs/fetch_data/cc3m_tsv.log").read_text()
    assert "ConceptualCaptions/download" in log and "cc3m/Train_GCC-training.tsv" in log
    log = (tmp_path / "results/logs/fetch_model/lmsys/vicuna-7b-v1.5.log").read_text()
    assert "lacks config.json or *.safetensors, and fetching is offline" in log
    assert not (tmp_path / "results/preflight/inputs.json").exists()


def job_counts(stdout: str) -> dict[str, int]:
    """Snakemake's job-stats table as {rule: count}."""
    counts = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts


def test_paper_config_dry_run_lists_the_grid(tmp_path):
    """config.yaml with its data root pointed at fake files: the DAG builds and the plan has 396 cells."""
    path = paper_config_file(tmp_path)
    dry = snakemake(tmp_path, "--configfile", str(path), "-n", "--quiet", "rules", timeout=120)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "study_plan" in dry.stdout and "toy_world" not in dry.stdout
    counts = job_counts(dry.stdout)
    # Before selection: 6 LLMs x 6 strategies x 11 LRs finetunes, each scored on Flickr30k only; the other
    # benchmarks and the control rows join the DAG after checkpoint select_lr.
    assert counts["finetune"] == 396 and counts["evaluate"] == 396
    assert counts["pretrain_connector"] == 6 and counts["select_lr"] == 1 and counts["figures"] == 6
    assert "evaluate_stage1" not in counts
    one = snakemake(tmp_path, "--configfile", str(path), "-n", "-p",
                    "results/finetune/vicuna-7b/layernorm/2e-05/efficiency.json", timeout=120)
    assert one.returncode == 0, one.stderr[-3000:]
    # A GPU job leases its GPUs, then torchrun starts one worker per GPU (gpu_lease --launch; test_gpu_lease.py).
    assert ("python -m workflow_scripts.gpu_lease --gpus 4 --launch -- -m workflow_scripts.train.finetune"
            in one.stdout)
    run = snakemake(tmp_path, "--configfile", str(path), "--cores", "1", "results/plan/study_grid.csv")
    assert run.returncode == 0, run.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "results/plan/study_grid.csv").open()))
    assert len(rows) == 6 * 6 * 11
    assert {r["global_batch"] for r in rows} == {"128"}
    # 4 GPUs everywhere; the micro-batch per cell from stage2.by_cell (checkpointing off where memory allows)
    splits = {(r["llm"], r["strategy"]): (r["gpus"], r["per_device_batch"], r["grad_accum"],
                                          r["gradient_checkpointing"], r["zero_stage"]) for r in rows}
    assert splits[("vicuna-7b", "finetune")] == ("4", "16", "2", "True", "2")
    assert splits[("llama2-7b-chat", "layernorm")] == ("4", "4", "8", "False", "2")
    assert splits[("vicuna-13b", "lora")] == ("4", "2", "16", "False", "2")
    assert splits[("llama2-13b", "attn_mlp")] == ("4", "8", "4", "True", "3")
    # A study that has barely started still gets a report (of what exists), not a crash on the missing figures.
    report = snakemake(tmp_path, "--configfile", str(path), "--report", "report.html", timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    assert (tmp_path / "report.html").stat().st_size > 10_000
    assert "Not in this report yet" in (tmp_path / "report.html").read_text(errors="replace")


def test_skipped_cell_leaves_the_dag(tmp_path):
    """A diverged cell listed under skip_cells is neither trained nor waited for; the rest of the study runs."""
    config = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    config["skip_cells"] = ["smoke-vicuna/finetune/0.003"]
    path = tmp_path / "skip.yaml"
    path.write_text(yaml.safe_dump(config))
    dry = snakemake(tmp_path, "--configfile", str(path), "-n", "--quiet", "rules", timeout=120)
    assert dry.returncode == 0, dry.stderr[-3000:]
    counts = job_counts(dry.stdout)
    assert counts["finetune"] == 3 and counts["evaluate"] == 3 and counts["select_lr"] == 1


def test_by_cell_settings_reach_only_their_finetunes(tmp_path):
    """stage2.by_cell changes the config a named cell's finetune job receives; the other cells' job params stay
    byte-identical to a config without the key (so finished runs are not retrained by adding it)."""
    config = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    (tmp_path / "plain.yaml").write_text(yaml.safe_dump(config))
    config["stage2"]["by_cell"] = {"toy": {"layernorm": {"gradient_checkpointing": True, "per_device_batch": 4}}}
    (tmp_path / "by_cell.yaml").write_text(yaml.safe_dump(config))
    cells = [f"results/smoke/finetune/smoke-vicuna/{s}/0.001/efficiency.json" for s in ("layernorm", "finetune")]

    def job_configs(name):
        dry = snakemake(tmp_path, "--configfile", str(tmp_path / name), "-n", "-p", *cells, timeout=120)
        assert dry.returncode == 0, dry.stderr[-3000:]
        found = re.findall(r"train\.finetune .*? --strategy (\w+) .*?--config-json '(\{.*?\})'", dry.stdout)
        return {strategy: json.loads(text)["stage2"] for strategy, text in found}

    plain, by_cell = job_configs("plain.yaml"), job_configs("by_cell.yaml")
    assert set(plain) == set(by_cell) == {"layernorm", "finetune"}
    assert by_cell["finetune"] == plain["finetune"] and "by_cell" not in plain["finetune"]
    assert (by_cell["layernorm"]["gradient_checkpointing"], by_cell["layernorm"]["per_device_batch"]) == (True, 4)
    assert plain["layernorm"]["gradient_checkpointing"] is False
