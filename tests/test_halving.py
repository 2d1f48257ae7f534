"""selection.mode halving on the smoke workflow: every LR trains to the rung, the rung's best continue from the
rung's own checkpoint, and a continued run ends with the weights of an uninterrupted one (the exact sweep's)."""

import json
import shutil

import pytest
import torch
import yaml
from conftest import REPO, snakemake
from safetensors.torch import load_file

pytestmark = [pytest.mark.slow, pytest.mark.long]
LLM, R = "smoke-vicuna", "results/smoke_halving"


@pytest.fixture(scope="module")
def halving_run(smoke_run, tmp_path_factory):
    work = tmp_path_factory.mktemp("halving")
    shutil.copytree(smoke_run / "resources", work / "resources")  # the same toy world and models
    config = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    config["results_root"] = R
    config["selection"] = {**config.get("selection", {}), "mode": "halving", "halving": {"fraction": 0.34, "keep": 1}}
    (work / "halving.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(work, "--configfile", str(work / "halving.yaml"), "--cores", "2", f"{R}/selection/best_lr.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work


def test_every_lr_reaches_the_rung_and_only_the_best_continues(halving_run):
    work = halving_run
    rung = json.loads((work / f"{R}/selection/halving_rung.json").read_text())
    chosen = json.loads((work / f"{R}/selection/best_lr.json").read_text())
    assert chosen["mode"] == "halving" and "successive halving" in chosen["rule"]
    for strategy in ("finetune", "layernorm"):
        scores = rung["scores"][LLM][strategy]
        kept = rung["kept"][LLM][strategy]
        assert len(kept) == 1 and scores[kept[0]] == max(s for s in scores.values() if s is not None)
        for lr in ("0.003", "0.001"):
            stopped = json.loads((work / f"{R}/finetune_rung/{LLM}/{strategy}/{lr}/efficiency.json").read_text())
            assert stopped["rung"] == {"fraction": 0.34, "stopped_at_step": 2, "of_steps": 3}
            full = work / f"{R}/finetune/{LLM}/{strategy}/{lr}/efficiency.json"
            checkpoints = work / f"{R}/checkpoints/finetune/{LLM}/{strategy}/{lr}"
            if lr in kept:  # continued from the rung's checkpoint, then released it
                run = json.loads(full.read_text())
                assert run["resumed_from"].endswith("checkpoint-2") and run["steps_this_run"] == 1
                assert run["steps"] == 3 and not checkpoints.exists()
            else:  # stopped: never trained further, its checkpoint kept should the mode change to exact
                assert not full.exists() and (checkpoints / "checkpoint-2").exists()
        sel = chosen["selected"][LLM][strategy]
        assert sel["lr"] == kept[0] and sel["rung_scores"] == scores
        assert [lr for lr, s in sel["scores"].items() if s is not None] == kept


def test_a_continued_run_ends_where_an_uninterrupted_one_does(halving_run, smoke_run):
    chosen = json.loads((halving_run / f"{R}/selection/best_lr.json").read_text())
    for strategy in ("finetune", "layernorm"):
        lr = chosen["selected"][LLM][strategy]["lr"]
        continued = load_file(halving_run / f"{R}/finetune/{LLM}/{strategy}/{lr}/trainable_delta.safetensors")
        straight = load_file(smoke_run / f"results/smoke/finetune/{LLM}/{strategy}/{lr}/trainable_delta.safetensors")
        assert set(continued) == set(straight)
        for name in straight:
            assert torch.allclose(continued[name], straight[name], atol=1e-6), (strategy, name)


def test_switching_to_exact_trains_only_the_stopped_lrs_from_their_rung(halving_run):
    """The rerun nobody plans: the same results root, the mode set back to exact. The dry run announces the two
    stopped cells' finetunes and their scores; they resume from the rung's checkpoint; the kept cells stay."""
    from test_reruns import executed, planned

    work = halving_run
    config = yaml.safe_load((work / "halving.yaml").read_text())
    config["selection"]["mode"] = "exact"
    (work / "exact.yaml").write_text(yaml.safe_dump(config))
    kept = json.loads((work / f"{R}/selection/halving_rung.json").read_text())["kept"][LLM]
    deltas = {s: (work / f"{R}/finetune/{LLM}/{s}/{lrs[0]}/trainable_delta.safetensors").stat().st_mtime_ns
              for s, lrs in kept.items()}
    args = ("--configfile", str(work / "exact.yaml"), "--cores", "2", f"{R}/selection/best_lr.json")
    dry = snakemake(work, *args, "-n")
    assert dry.returncode == 0, dry.stderr[-3000:]
    plan = planned(dry)
    assert plan["finetune"] == 2 and plan["evaluate"] == 2 and plan["select_lr"] == 1
    run = snakemake(work, *args)
    assert run.returncode == 0, run.stderr[-3000:]
    assert executed(run) == plan
    for strategy, lrs in kept.items():
        stopped = next(lr for lr in ("0.003", "0.001") if lr not in lrs)
        resumed = json.loads((work / f"{R}/finetune/{LLM}/{strategy}/{stopped}/efficiency.json").read_text())
        assert resumed["resumed_from"].endswith("checkpoint-2") and resumed["steps_this_run"] == 1
        assert (work / f"{R}/finetune/{LLM}/{strategy}/{lrs[0]}/trainable_delta.safetensors").stat().st_mtime_ns \
            == deltas[strategy]
    chosen = json.loads((work / f"{R}/selection/best_lr.json").read_text())
    assert chosen["mode"] == "exact"
    assert all(s is not None for sel in chosen["selected"][LLM].values() for s in sel["scores"].values())
