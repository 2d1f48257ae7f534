"""Progress lines of training and evaluation logs, hand-checked."""

from workflow_scripts.evaluate.run import progress_printer
from workflow_scripts.timing import clock
from workflow_scripts.train.progress import progress_line


def test_clock():
    assert [clock(42), clock(187), clock(3725)] == ["42s", "3m07s", "1h02m"]


def test_training_line_extrapolates_this_runs_step_time():
    # 10 steps done in 20 s since a resume at step 20: 30 steps left at 2 s each
    assert progress_line(30, 60, 20.0, 10, 0.41234, 3e-4, 6400.4) == (
        "step 30/60 (50 %) | elapsed 20s | ETA 1m00s | loss 0.4123 | lr 0.0003 | 6,400 tok/s")
    assert progress_line(1, 60, 0.0, 0, None, None, None) == "step 1/60 (2 %) | elapsed 0s | ETA ?"


def test_evaluation_line_has_rate_and_eta():
    lines = []
    progress_printer(out=lambda text, flush: lines.append(text))(16, 300)
    assert lines[0].startswith("16/300 prompts | ") and "prompts/s | elapsed " in lines[0] and "| ETA " in lines[0]


def test_each_step_line_carries_that_steps_loss():
    """The Trainer calls on_step_end, then on_log with the step's loss: the line for step i shows loss i."""
    from types import SimpleNamespace

    from workflow_scripts.train.progress import ProgressLog

    lines = []
    log = ProgressLog(out=lambda text, flush: lines.append(text), lines=2)
    state = SimpleNamespace(global_step=0, max_steps=4, is_world_process_zero=True)
    log.on_train_begin(None, state, None)
    for step, loss in enumerate([2.5, 2.0, 1.5, 1.0], 1):
        state.global_step = step
        log.on_step_end(None, state, None)
        log.on_log(None, state, None, logs={"loss": loss, "learning_rate": 1e-3})
    log.on_log(None, state, None, logs={"train_loss": 1.75, "train_runtime": 1.0})  # the run's summary: no line
    assert [line.split(" | ")[0] for line in lines[1:]] == ["step 1/4 (25 %)", "step 2/4 (50 %)", "step 4/4 (100 %)"]
    assert [line.split("loss ")[1].split(" ")[0] for line in lines[1:]] == ["2.5000", "2.0000", "1.0000"]


def test_a_training_log_ends_in_one_summary_line():
    from workflow_scripts.train.loop import summary_line

    summary = {"steps": 60, "workers": 4, "loss_first": 2.5105, "loss_last": 0.4123, "wall_s": 62.0,
               "tokens_per_s": 6400.4}
    assert summary_line(summary, "results/pretrain/x/metrics.json") == (
        "done: 60 steps on 4 worker(s) | loss 2.5105 -> 0.4123 | 1m02s | 6,400 tok/s | summary: "
        "results/pretrain/x/metrics.json")
    assert "tok/s" not in summary_line({**summary, "tokens_per_s": float("nan")}, "m.json")


def test_an_evaluation_log_ends_with_its_headline_then_the_baseline_labelled():
    from workflow_scripts.evaluate.run import summary_line

    metrics = {"f1_mean": 81.234, "accuracy_mean": 80.0, "size": {"items": 8910, "expected": 8910, "partial": False},
               "no_image_guess": {"f1_mean": 66.667}}
    assert summary_line("pope", metrics, "r/eval/pope/metrics.json") == (
        "done: pope f1_mean 81.23 (8910/8910 items) | best no-image guess 66.67 (a baseline, not this model) | "
        "metrics: r/eval/pope/metrics.json")
    assert summary_line("coco", {"CIDEr": 44.0}, "m.json") == "done: coco CIDEr 44.00 | metrics: m.json"
