"""LR selection and the tables, on a hand-made results tree: values are checked against hand-written
expectations, and a cell whose run did not finish shows as missing, never as zero."""

import csv
import io
import json

import pytest

from workflow_scripts.report import paths, readme, select_lr, tables
from workflow_scripts.report.render import Table, tex_escape, to_csv, to_latex, to_markdown

CONFIG = {
    "models": {"m": {"label": "MM-M", "path": "x", "template": "vicuna_v1", "size": "toy"}},
    "strategies": ["finetune", "layernorm"],
    "learning_rates": [1.0e-3, 3.0e-4, 1.0e-4],
    "benchmarks": {"mme": {}, "flickr30k": {}, "pope": {}},
    "selection": {"benchmark": "flickr30k", "metric": "CIDEr"},
}


def put(path, obj):
    import os

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)


@pytest.fixture
def results(tmp_path):
    r = str(tmp_path)
    sweep = {("finetune", "0.001"): 10.0, ("finetune", "0.0003"): 12.0, ("finetune", "0.0001"): float("nan"),
             ("layernorm", "0.001"): 20.0, ("layernorm", "0.0003"): 20.0}  # layernorm 1e-4: the run failed
    for (s, lr), cider in sweep.items():
        put(paths.eval_metrics(r, "m", s, lr, "flickr30k"), {"CIDEr": cider})
    # finetune @ 3e-4 has every benchmark; layernorm @ 1e-3 lacks POPE (its evaluation failed).
    put(paths.eval_metrics(r, "m", "finetune", "0.0003", "mme"), {"perception": 900.5, "perception_8": 700.5,
                                                                         "cognition": 200.0})
    put(paths.eval_metrics(r, "m", "finetune", "0.0003", "pope"), {"f1_mean": 80.0})
    put(paths.eval_metrics(r, "m", "layernorm", "0.001", "mme"), {"perception": 1000.0, "perception_8": 800.0,
        "cognition": 250.0, "size": {"items": 150, "expected": 2374, "partial": True}})  # a deliberately partial MME
    put(paths.efficiency(r, "m", "layernorm", "0.001"),
        {"parameters": {"trainable_params": 100, "trainable_pct": 1.5}, "peak_memory_bytes": 2 * 1024 ** 3,
         "peak_memory_kind": "cuda_max_allocated", "step_time_s": 0.5,
         "tensors_changed": {"changed": 9, "trainable": 9, "unchanged": []}})
    put(paths.efficiency(r, "m", "layernorm", "0.0003"),
        {"tensors_changed": {"changed": 4, "trainable": 9, "unchanged": ["model.language_model.norm.weight"]}})
    put(paths.efficiency(r, "m", "finetune", "0.0003"),
        {"parameters": {"trainable_params": 1000, "trainable_pct": 50.0}, "peak_memory_bytes": 8 * 1024 ** 3,
         "peak_memory_kind": "cuda_max_allocated", "step_time_s": 1.0})
    for bench, metrics in (("mme", {"perception": 10.0, "cognition": 0.0}), ("flickr30k", {"CIDEr": 1.0}),
                           ("pope", {"f1_mean": 66.7})):
        put(paths.stage1_metrics(r, "m", bench), metrics)
    put(paths.selection(r), select_lr.select(CONFIG, r))
    return r


def test_best_lr_ties_go_to_the_larger_lr_and_nan_or_missing_is_skipped():
    values = {"0.001": 1e-3, "0.0003": 3e-4, "0.0001": 1e-4}
    assert select_lr.best_lr({"0.001": 5.0, "0.0003": 5.0, "0.0001": 4.0}, values) == "0.001"
    assert select_lr.best_lr({"0.001": float("nan"), "0.0003": 2.0, "0.0001": None}, values) == "0.0003"
    assert select_lr.best_lr({"0.001": None, "0.0003": float("inf")}, values) is None


def test_skipped_cell_is_left_out_even_when_its_file_exists(results):
    config = dict(CONFIG, skip_cells=["m/layernorm/0.001"])
    doc = select_lr.select(config, results)
    assert doc["selected"]["m"]["layernorm"] == {"lr": "0.0003", "score": 20.0,
                                                 "scores": {"0.001": None, "0.0003": 20.0, "0.0001": None}}


def test_selection_document(results):
    doc = json.load(open(paths.selection(results)))
    assert doc["selected"]["m"]["finetune"]["lr"] == "0.0003"
    assert doc["selected"]["m"]["layernorm"] == {"lr": "0.001", "score": 20.0,
                                                 "scores": {"0.001": 20.0, "0.0003": 20.0, "0.0001": None}}
    md = select_lr.markdown(doc)
    assert "| m | layernorm | 0.001 | 20.00 |" in md


def test_stage1_row_names_what_stage1_trained():
    def named(trains):
        return tables.stage1_trained({"stage1": {"trains": trains}})
    assert named(["connector"]) == "connector"
    assert named(["connector", "norms"]) == "connector + norms"
    assert named(["connector", "embeddings", "head", "norms", "attention", "mlp"]) == "connector + LLM"
    assert named(["connector", "mlp", "attention", "norms", "head", "embeddings"]) == "connector + LLM"
    assert tables.stage1_trained({}) == "connector"


def test_vqav2_question_types_table_has_table1s_rows_and_the_recorded_types(results):
    config = {**CONFIG, "benchmarks": {**CONFIG["benchmarks"], "vqav2": {}}}
    colour, count = {"accuracy": 60.0, "questions": 41}, {"accuracy": 34.9, "questions": 109}
    put(paths.eval_metrics(results, "m", "finetune", "0.0003", "vqav2"),
        {"accuracy": 50.0, "by_question_type": {"what color is the": colour, "how many": count}})
    put(paths.stage1_metrics(results, "m", "vqav2"),  # its no-image guess lacks a type: that cell is missing
        {"accuracy": 40.0, "by_question_type": {"how many": {"accuracy": 30.0, "questions": 109}},
         "no_image_guess": {"by_question_type": {"what color is the": {"accuracy": 20.0, "questions": 41}}}})
    t = tables.build(config, results)["vqav2_question_types"]
    assert t.columns == ["LLM", "strategy", "LR", "how many (109)", "what color is the (41)"]
    rows = {r[1]: r for r in t.rows}
    assert [r[1] for r in t.rows] == [r[1] for r in tables.build(config, results)["table1_main"].rows]
    assert rows["best no-image guess"][3:] == [None, 20.0]
    assert rows["stage 1 only (connector)"][3:] == [30.0, None]
    assert rows["Finetune"] == ["MM-M", "Finetune", "0.0003", 34.9, 60.0]
    assert rows["LayerNorm"][3:] == [None, None]  # evaluated before per-type scores: missing, not zero
    assert "not among" in tables.build(CONFIG, results)["vqav2_question_types"].notes[0]


def test_table1_values_and_missing_cells(results):
    t1 = tables.build(CONFIG, results)["table1_main"]
    assert t1.columns == ["LLM", "strategy", "LR", "trainable %", "MME-P", "MME-P8", "MME-C", "Flickr30k", "POPE"]
    rows = {r[1]: r for r in t1.rows}
    assert rows["stage 1 only (connector)"][4:] == [10.0, None, 0.0, 1.0, 66.7]
    # strategies under the paper's names
    assert rows["Finetune"] == ["MM-M", "Finetune", "0.0003", 50.0, 900.5, 700.5, 200.0, 12.0, 80.0]
    assert rows["LayerNorm"] == ["MM-M", "LayerNorm", "0.001", 1.5, "1000.00 (150/2374)", "800.00 (150/2374)",
                                 "250.00 (150/2374)", 20.0, None]
    assert rows["blind (Finetune, blank images)"][2:] == ["0.0003", "n/a", None, None, None, None, None]  # not run
    md = to_markdown(t1)
    assert ("| MM-M | LayerNorm | 0.001 | 1.500 | 1000.00 (150/2374) | 800.00 (150/2374) | 250.00 (150/2374) "
            "| 20.00 | — |") in md
    csv_rows = list(csv.reader(io.StringIO(to_csv(t1))))
    assert csv_rows[0][1] == "strategy" and csv_rows[1][1] == "best no-image guess"
    assert csv_rows[4] == ["MM-M", "Finetune", "0.0003", "50.0", "900.5", "700.5", "200.0", "12.0", "80.0"]
    assert csv_rows[5][-1] == ""  # missing, not 0
    assert "& -- \\\\" in to_latex(t1)


def test_table2_efficiency_and_reductions(results):
    config = dict(CONFIG, strategies=["lora", "layernorm"])
    put(paths.eval_metrics(results, "m", "lora", "0.001", "flickr30k"), {"CIDEr": 3.0})
    put(paths.efficiency(results, "m", "lora", "0.001"),
        {"parameters": {"trainable_params": 400, "trainable_pct": 6.0}, "peak_memory_bytes": 4 * 1024 ** 3,
         "peak_memory_kind": "cuda_max_allocated", "step_time_s": 0.8})
    put(paths.selection(results), select_lr.select(config, results))
    t2 = tables.build(config, results)["table2_efficiency"]
    assert t2.rows[1] == ["MM-M", "LayerNorm", 100, 1.5, 2.0, "cuda_max_allocated", None, 0.5]
    # 100 vs 400 parameters, 2 vs 4 GiB, 0.5 vs 0.8 s: 75 %, 50 %, 37.5 % less.
    assert "trains 75.0 % fewer parameters than LoRA, with 50.0 % less peak memory and 37.5 % shorter steps" \
        in t2.notes[0]


def test_lr_sweep_table(results):
    sweep = tables.build(CONFIG, results)["lr_sweep"]
    assert sweep.columns == ["LLM", "strategy", "0.001", "0.0003", "0.0001", "chosen LR"]
    assert sweep.rows[1] == ["MM-M", "LayerNorm", 20.0, 20.0, None, "0.001"]
    assert "nan" in to_markdown(sweep)  # a diverged run's score is shown as what it is
    # below the scores, per cell how many trainable tensors moved (None: no record); a partial no-op is named
    assert sweep.rows[3] == ["MM-M", "LayerNorm: tensors changed", "9/9", "4/9", None, None]
    assert sweep.rows[2][2:] == [None, None, None, None]
    assert "cells where some trainable tensors did not change: m/layernorm/0.0003." in sweep.notes


def test_render_formats():
    t = Table("T_1 50%", ["a", "b"], rows=[["x&y", 1234], [None, 0.5]])
    assert tex_escape("a_b & 5% #1") == r"a\_b \& 5\% \#1"
    assert to_markdown(t).splitlines()[4] == "| x&y | 1,234 |"
    assert to_markdown(t).splitlines()[5] == "| — | 0.50 |"
    assert r"\caption{T\_1 50\%}" in to_latex(t)


def test_readme_splice():
    start, end = readme.markers("table1_main")
    assert start == "<!-- demo:table1_main:start -->"
    text = f"intro\n{start}\nold\n{end}\nrest\n"
    assert readme.splice(text, "| new |\n", "table1_main") == f"intro\n{start}\n| new |\n{end}\nrest\n"
    with pytest.raises(ValueError):
        readme.splice("no markers", "x", "table1_main")
    with pytest.raises(ValueError):  # another table's block is not this one's
        readme.splice(text, "x", "vqav2_question_types")


def test_readme_main_fills_every_named_block_or_writes_nothing(tmp_path):
    blocks = "".join(f"{a}\nold\n{b}\n" for a, b in map(readme.markers, ("t1", "t2")))
    (tmp_path / "README.md").write_text(blocks)
    (tmp_path / "t1.md").write_text("| one |\n")
    (tmp_path / "t2.md").write_text("| two |\n")
    (tmp_path / "t3.md").write_text("| three |\n")
    with pytest.raises(ValueError, match="demo:t3:start"):
        readme.main([str(tmp_path / "README.md"), str(tmp_path / "t1.md"), str(tmp_path / "t3.md")])
    assert (tmp_path / "README.md").read_text() == blocks
    readme.main([str(tmp_path / "README.md"), str(tmp_path / "t1.md"), str(tmp_path / "t2.md")])
    assert "| one |" in (tmp_path / "README.md").read_text() and "| two |" in (tmp_path / "README.md").read_text()


def _readme_block(name: str) -> list[str]:
    from conftest import REPO

    start, end = readme.markers(name)
    return (REPO / "README.md").read_text().split(start)[1].split(end)[0].strip().splitlines()


def test_readme_example_is_a_generated_table1():
    """README's demo Table 1 has the generator's title, header and one row per control and strategy."""
    from conftest import load_config

    block = _readme_block("table1_main")
    config = load_config("config/demo.yaml")
    selection = {"benchmark": "flickr30k", "metric": "CIDEr", "rule": "",
                 "selected": {"toy-vicuna": {s: {"lr": None} for s in config["strategies"]}}}
    generated = to_markdown(tables.table1(config, "/nonexistent", selection)).splitlines()
    assert block[:4] == generated[:4]  # title, blank line, header, separator
    rows = [line for line in block if line.startswith("| MM-ToyVicuna")]
    # the controls (no-image guess, stage 1, blind, one text-priors row per controls.text_priors) + strategies
    assert len(rows) == 3 + len(config["controls"]["text_priors"]) + len(config["strategies"])
    assert [r.split(" | ")[1] for r in rows] == [line.split(" | ")[1] for line in generated
                                                  if line.startswith("| MM-ToyVicuna")]
    assert all("—" not in r for r in rows)  # every demo cell finished


def test_readme_per_type_table_is_generated_with_table1s_rows():
    """README's VQAv2-per-question-type block is the generator's table, with Table 1's rows, every cell filled."""
    block, table1 = _readme_block("vqav2_question_types"), _readme_block("table1_main")
    assert block[0] == "**VQAv2 accuracy per question type (Table 1's rows)**"
    rows = [line for line in block if line.startswith("| MM-ToyVicuna")]
    assert [r.split(" | ")[1] for r in rows] == [r.split(" | ")[1] for r in table1 if r.startswith("| MM-ToyVicuna")]
    assert all("—" not in r for r in rows)


def test_readme_main_fills_only_the_named_runs_blocks(tmp_path):
    """The demo and its run with another seed print tables of the same names; each fills its own blocks."""
    demo, grounded = readme.markers("t1"), readme.markers("t1", "demo_seed43")
    (tmp_path / "README.md").write_text(f"{demo[0]}\nold demo\n{demo[1]}\n{grounded[0]}\nold\n{grounded[1]}\n")
    (tmp_path / "t1.md").write_text("| grounded |\n")
    readme.main(["--run", "demo_seed43", str(tmp_path / "README.md"), str(tmp_path / "t1.md")])
    assert (tmp_path / "README.md").read_text() == (
        f"{demo[0]}\nold demo\n{demo[1]}\n{grounded[0]}\n| grounded |\n{grounded[1]}\n")
