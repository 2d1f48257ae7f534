"""Training progress a person can follow in a job's log: one line every ~2 % of the run (and the first and
last step) with step i/N, elapsed time, ETA, loss, learning rate and throughput.

Replaces Trainer's own printer, which writes one bare dict per step with no step count, time or ETA.
"""

from __future__ import annotations

import time

from transformers import TrainerCallback

from workflow_scripts.timing import clock


def progress_line(step: int, total: int, elapsed: float, steps_done: int, loss: float | None, lr: float | None,
                  tokens_per_s: float | None) -> str:
    """One log line; the ETA extrapolates this run's mean step time (``steps_done`` steps in ``elapsed``)."""
    eta = elapsed / steps_done * (total - step) if steps_done else float("nan")
    parts = [f"step {step}/{total} ({100 * step / total:.0f} %)", f"elapsed {clock(elapsed)}",
             f"ETA {clock(eta) if eta == eta else '?'}"]
    if loss is not None:
        parts.append(f"loss {loss:.4f}")
    if lr is not None:
        parts.append(f"lr {lr:.3g}")
    if tokens_per_s:
        parts.append(f"{tokens_per_s:,.0f} tok/s")
    return " | ".join(parts)


class ProgressLog(TrainerCallback):
    """Prints ``progress_line`` on the main process; ``tokens`` reads the trainer's token count."""

    def __init__(self, tokens=lambda: 0, lines: int = 50, out=print):
        self.tokens, self.lines, self.out = tokens, lines, out
        self.start = self.first_step = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.start, self.first_step = time.time(), state.global_step  # a resumed run starts past 0
        if state.is_world_process_zero:
            self.out(f"training {state.max_steps} steps" + (f", resuming at step {state.global_step}"
                                                             if state.global_step else ""), flush=True)

    def on_log(self, args, state, control, logs=None, **kwargs):
        # The Trainer logs a step's loss after that step's on_step_end: printing here puts each step's own loss
        # on its line (printing at on_step_end showed the previous step's, and none at step 1).
        logs = logs or {}
        step = state.global_step
        every = max(1, state.max_steps // self.lines)
        if "loss" not in logs or not state.is_world_process_zero or \
                not (step % every == 0 or step in (1, state.max_steps)):
            return  # (the end-of-training summary logs train_loss, not loss)
        elapsed = time.time() - self.start
        self.out(progress_line(step, state.max_steps, elapsed, step - self.first_step, logs["loss"],
                               logs.get("learning_rate"), self.tokens() / elapsed if elapsed else None),
                 flush=True)
