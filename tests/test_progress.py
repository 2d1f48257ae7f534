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
