"""What both stages share around HF Trainer: arguments derived from the config (global batch kept fixed),
the DeepSpeed config, a Trainer that refuses non-finite losses and counts tokens, checkpoints that belong to one
run configuration and are only resumed from once complete, and the efficiency figures of a run.

A checkpoint folder is resumed only after an interruption of the *same* run: it holds the run's identity (its
arguments, training config and the content of its inputs), a different identity discards it, and a run that
finished removes it, so a forced or reconfigured rerun always trains from step 0.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import resource
import shutil
import time
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler

from workflow_scripts import study
from workflow_scripts.io import sha256_file
from workflow_scripts.model.strategies import base_name
from workflow_scripts.timing import clock
from workflow_scripts.train.distributed import barrier, world
from workflow_scripts.train.export import save_safetensors, state_of
from workflow_scripts.train.progress import ProgressLog

COMPLETE = "CHECKPOINT_COMPLETE"
IDENTITY = "RUN_IDENTITY.json"


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the job stops without marking any output complete."""


def deepspeed_config(zero_stage: int) -> dict | None:
    """DeepSpeed ZeRO config with HF's "auto" values (filled from TrainingArguments); None for stage 0."""
    if zero_stage == 0:
        return None
    zero = {"stage": zero_stage, "overlap_comm": True, "contiguous_gradients": True}
    if zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {"zero_optimization": zero, "bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"},
            "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
            "train_batch_size": "auto", "gradient_clipping": "auto"}


def training_arguments(out: str, *, lr: float, global_batch: int, per_device_batch: int, epochs: float,
                       max_steps: int, warmup_ratio: float, weight_decay: float, scheduler: str, precision: str,
                       gradient_checkpointing: bool, save_steps: int, zero_stage: int, seed: int,
                       workers: int = 0, group_by_length: bool = False) -> TrainingArguments:
    """TrainingArguments with per-device batch x grad-accum x GPUs = global batch, whatever the GPU count.
    ``group_by_length``: batches of similar length (see ``SeededLengthGroupedSampler``)."""
    _, world_size = world()
    micro, accum = study.batch_split(global_batch, per_device_batch, world_size)
    on_gpu = torch.cuda.is_available()
    return TrainingArguments(
        output_dir=out, per_device_train_batch_size=micro, gradient_accumulation_steps=accum, learning_rate=lr,
        num_train_epochs=epochs, max_steps=max_steps, warmup_steps=warmup_ratio, weight_decay=weight_decay,
        lr_scheduler_type=scheduler, optim="adamw_torch", bf16=on_gpu and precision == "bf16", tf32=on_gpu or None,
        use_cpu=not on_gpu, activation_checkpointing=gradient_checkpointing,
        deepspeed=deepspeed_config(zero_stage), save_strategy="steps", save_steps=save_steps, save_total_limit=2,
        logging_steps=1, report_to="none", seed=seed, data_seed=seed, dataloader_num_workers=workers,
        remove_unused_columns=False, disable_tqdm=True, ddp_find_unused_parameters=False,
        # Each rank fetches its own micro-batches: accelerate's default for an iterable dataset (the main process
        # fetches and concatenates everyone's) needs equal shapes, which batches padded per rank do not have.
        accelerator_config={"dispatch_batches": False},
        train_sampling_strategy="group_by_length" if group_by_length else "random")


TRAINABLE_STATE = "trainable_state.safetensors"


class SeededLengthGroupedSampler(LengthGroupedSampler):
    """LLaVA's length grouping (``group_by_modality_length``; every record here has an image): random
    mega-batches of 50 batches, each sorted by length, so a batch pads little. Its order is drawn from
    (seed, epoch), not from the global RNG, so a resumed run replays exactly the batches of an uninterrupted one."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        self.generator = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        return super().__iter__()


def padding_share(lengths: list[int], micro_batch: int, accumulation: int, grouped: bool, seed: int,
                  world_size: int = 1) -> float:
    """Share of the token positions of an epoch's micro-batches that are padding, for the batching a run uses
    (its first epoch's order; grouping works on the global batch, as GuardedTrainer's sampler)."""
    if grouped:
        order = list(SeededLengthGroupedSampler(micro_batch * accumulation * world_size, lengths, seed))
    else:
        order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(seed)).tolist()
    real = padded = 0
    for start in range(0, len(order), micro_batch):
        batch = [lengths[i] for i in order[start: start + micro_batch]]
        real, padded = real + sum(batch), padded + max(batch) * len(batch)
    return 1 - real / padded if padded else 0.0


class GuardedTrainer(Trainer):
    """Trainer that stops on a non-finite loss (naming the step), counts the tokens it trains on, and keeps
    only the trainable parameters in its checkpoints, under their in-memory names.

    Why the latter: transformers 5 saves a Llava model under legacy key names, and Trainer's resume loads
    them with strict=False — nothing matches, nothing is loaded, and a resumed run silently restarts from the
    base weights. Saving the trainable parameters ourselves is exact (and small: a LayerNorm checkpoint holds
    only the norms, connector, embeddings and head). Under DeepSpeed, resume goes through DeepSpeed's own
    checkpoint instead.
    """

    def __init__(self, *args, inject_nan_at_step: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.tokens_seen = 0
        self.inject_nan_at_step = inject_nan_at_step  # fault injection, for the tests of this guard

    def compute_loss(self, model, inputs, *args, **kwargs):
        self.tokens_seen += int(inputs["attention_mask"].sum())
        loss = super().compute_loss(model, inputs, *args, **kwargs)
        value = loss[0] if isinstance(loss, tuple) else loss
        if self.inject_nan_at_step is not None and self.state.global_step + 1 >= self.inject_nan_at_step:
            value = value * float("nan")
            loss = (value, *loss[1:]) if isinstance(loss, tuple) else value
        if not torch.isfinite(value.detach()).all():
            raise NonFiniteLossError(f"loss is {value.item()} at step {self.state.global_step + 1}: stopping; "
                                     "lower the learning rate or check the data (no output was written). A sweep "
                                     "cell that diverges is a result: list it under skip_cells in the config "
                                     "(llm/strategy/lr) and the study goes on without it")
        return loss


    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy == "group_by_length" and hasattr(dataset, "lengths"):
            # Grouped by the global batch: N workers then share out exactly one worker's batches.
            batch = self.args.train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
            return SeededLengthGroupedSampler(batch, dataset.lengths(), self.args.data_seed or self.args.seed)
        return super()._get_train_sampler(train_dataset)

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        # Under DeepSpeed every rank comes here with the state dict accelerate gathered (full on rank 0 only);
        # otherwise only the writing rank reads the parameters. Either way no rank starts a gather of its own.
        if not self.args.should_save:
            return
        folder = output_dir or self.args.output_dir
        os.makedirs(folder, exist_ok=True)
        names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        if state_dict is None:
            tensors = state_of(self.model, names)
        elif state_dict:
            tensors = {base_name(n): state_dict[n].detach().to("cpu").contiguous() for n in names}
        else:
            return  # DeepSpeed keeps the weights in its own checkpoint (no 16-bit gather on save)
        save_safetensors(tensors, os.path.join(folder, TRAINABLE_STATE))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        weights = load_file(os.path.join(resume_from_checkpoint, TRAINABLE_STATE))
        params = {base_name(n): p for n, p in (model or self.model).named_parameters() if p.requires_grad}
        if set(weights) != set(params):
            raise ValueError(f"{resume_from_checkpoint}: checkpoint holds {len(weights)} tensors, the run trains "
                             f"{len(params)} (was it written by another strategy?)")
        with torch.no_grad():
            for name, value in weights.items():
                params[name].copy_(value.to(params[name].dtype))


class MarkCompleteCheckpoints(TrainerCallback):
    """Trainer writes a checkpoint file by file, each rank its part; a marker written last (atomically, once
    every rank has written) says it is whole."""

    def on_save(self, args, state, control, **kwargs):
        barrier()
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            tmp = folder / f".{COMPLETE}.tmp"
            tmp.write_text(str(state.global_step))
            tmp.replace(folder / COMPLETE)


class StopAtFraction(TrainerCallback):
    """Stop a run after ``fraction`` of its steps (at least one), saving a complete checkpoint there: the rung of
    successive-halving LR selection. The schedule stays that of the whole run, so resuming from the checkpoint
    continues exactly the run an uninterrupted job would have trained."""

    def __init__(self, fraction: float):
        self.fraction, self.stop_step = fraction, None

    def on_train_begin(self, args, state, control, **kwargs):
        self.stop_step = max(1, math.ceil(self.fraction * state.max_steps))

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.stop_step:
            control.should_save = True
            control.should_training_stop = True


class StepTimer(TrainerCallback):
    def __init__(self):
        self.times: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._start)


def file_identity(path: str) -> str:
    """What a training input is, for the run identity: sha256 of a file (a shard folder: of its file names and
    sizes). Base-model folders are identified by path and by their config/weights' names and sizes."""
    if os.path.isdir(path):
        listing = sorted((f, os.path.getsize(os.path.join(path, f))) for f in os.listdir(path)
                         if os.path.isfile(os.path.join(path, f)))
        return "dir:" + hashlib.sha256(json.dumps(listing).encode()).hexdigest()
    if not os.path.exists(path):
        return f"id:{path}"  # a hub id
    return "sha256:" + sha256_file(path)


def run_identity(config: dict, args: dict, inputs: dict[str, str]) -> dict:
    """The identity of a training run: its config (exactly what the rule passes), its arguments, the identity of
    each input file and its number of workers. Two runs with the same identity train the same model; anything
    else must start over (N workers train one worker's model, but their checkpoints hold per-rank partitions and
    RNG states that another worker count cannot resume)."""
    return {"config": config, "args": args, "inputs": {role: file_identity(p) for role, p in sorted(inputs.items())},
            "workers": world()[1]}


def claim_checkpoints(folder: str, identity: dict) -> None:
    """Make ``folder`` this run's checkpoint folder: checkpoints written by a run with another identity (another
    config, other inputs, or an older version of the inputs) are discarded, with a line saying so."""
    marker = os.path.join(folder, IDENTITY)
    if os.path.isdir(folder):
        try:
            with open(marker) as f:
                previous = json.load(f)
        except (OSError, ValueError):
            previous = None
        if previous != identity:
            changed = sorted(k for k in identity if previous is None or previous.get(k) != identity[k])
            print(f"discarding checkpoints in {folder}: written by a different run (changed: {changed})", flush=True)
            shutil.rmtree(folder)
    if not os.path.exists(marker):
        os.makedirs(folder, exist_ok=True)
        tmp = f"{marker}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(identity, f, indent=1, sort_keys=True)
        os.replace(tmp, marker)


def release_checkpoints(folder: str) -> None:
    """A finished run's outputs are written: its checkpoints must never be resumed by a later run. Collective:
    rank 0 deletes them once every rank is done with them."""
    barrier()
    if world()[0] == 0:
        shutil.rmtree(folder, ignore_errors=True)


def last_complete_checkpoint(folder: str, prune: bool = True) -> str | None:
    """The newest checkpoint with its completion marker; with ``prune``, incomplete ones (a killed save) are
    removed (by one rank only: the others must not race it)."""
    if not os.path.isdir(folder):
        return None
    found = []
    for name in os.listdir(folder):
        m = re.fullmatch(r"checkpoint-(\d+)", name)
        if m:
            path = os.path.join(folder, name)
            if os.path.exists(os.path.join(path, COMPLETE)):
                found.append((int(m.group(1)), path))
            elif prune:
                shutil.rmtree(path, ignore_errors=True)
    return max(found)[1] if found else None


def peak_rss_bytes() -> int:
    """This process's peak RSS. VmHWM where Linux has it: ru_maxrss keeps what the parent had when it forked
    (Snakemake, a shell), VmHWM starts afresh at exec."""
    status = "/proc/self/status"
    if os.path.exists(status):
        with open(status) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # no /proc (macOS): the best there is


def peak_memory_bytes() -> tuple[int, str]:
    """Peak memory of this process: GPU max_memory_allocated, else peak RSS."""
    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated()), "gpu_max_memory_allocated"
    return peak_rss_bytes(), "cpu_peak_rss"


def activation_checkpointing_on(model) -> bool:
    """Whether the model as trained recomputes activations: HF sets ``gradient_checkpointing`` on each block
    stack it enables it for (also inside a PEFT or DeepSpeed wrapper)."""
    return any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())


def run_summary(trainer: GuardedTrainer, timer: StepTimer, wall: float, resumed_from: str | None) -> dict:
    """Loss curve summary and efficiency figures of a finished run."""
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    k = max(1, len(losses) // 10)
    peak, kind = peak_memory_bytes()
    steps = timer.times[1:] or timer.times  # the first step warms up
    return {
        "steps": trainer.state.global_step, "steps_this_run": len(timer.times), "resumed_from": resumed_from,
        "workers": world()[1],
        # the split that ran (the configured per-device batch shrinks to a divisor of the global batch per worker)
        "batch": {"per_device": trainer.args.per_device_train_batch_size,
                  "accumulation": trainer.args.gradient_accumulation_steps,
                  "global": trainer.args.per_device_train_batch_size * trainer.args.gradient_accumulation_steps
                  * world()[1],
                  "zero_stage": (trainer.args.deepspeed or {}).get("zero_optimization", {}).get("stage", 0)},
        "loss_first": losses[0] if losses else math.nan, "loss_last": losses[-1] if losses else math.nan,
        "loss_first_10pct_mean": sum(losses[:k]) / k if losses else math.nan,
        "loss_last_10pct_mean": sum(losses[-k:]) / k if losses else math.nan,
        "step_time_s": sum(steps) / len(steps) if steps else math.nan,
        "tokens_per_s": trainer.tokens_seen / sum(timer.times) if timer.times else math.nan,
        "peak_memory_bytes": peak, "peak_memory_kind": kind, "wall_s": round(wall, 1),
        "gradient_checkpointing": activation_checkpointing_on(trainer.model),
        # [step, loss] at every logged step (the loss-curve figures read it)
        "loss_curve": [[h["step"], h["loss"]] for h in trainer.state.log_history if "loss" in h],
    }


def summary_line(summary: dict, written: str) -> str:
    """The last line of a training job's log: what ran and where its result is (the JSON is in ``written``)."""
    rate = summary.get("tokens_per_s")
    return (f"done: {summary['steps']} steps on {summary['workers']} worker(s) | loss {summary['loss_first']:.4f} -> "
            f"{summary['loss_last']:.4f} | {clock(summary['wall_s'])}"
            + (f" | {rate:,.0f} tok/s" if rate == rate and rate else "") + f" | summary: {written}")


def run_training(model, targs: TrainingArguments, dataset, collator, identity: dict,
                 inject_nan_at_step: int | None = None, tensorboard_dir: str | None = None,
                 stop: StopAtFraction | None = None):
    """Train with the guards above, resuming from the newest complete checkpoint in ``targs.output_dir`` when it
    was written by a run of the same ``identity`` (see ``claim_checkpoints``). With ``tensorboard_dir``, loss,
    LR and grad norm go to a TensorBoard log there (a run that does not resume starts it afresh). ``stop``: end
    the run early at a saved checkpoint (see ``StopAtFraction``).
    Returns (trainer, step timer, checkpoint resumed from or None)."""
    rank, _ = world()
    if rank == 0:
        claim_checkpoints(targs.output_dir, identity)
        last_complete_checkpoint(targs.output_dir)  # prunes a killed save before any rank looks
    barrier()
    timer = StepTimer()
    trainer = GuardedTrainer(model=model, args=targs, train_dataset=dataset, data_collator=collator,
                             callbacks=[MarkCompleteCheckpoints(), timer], inject_nan_at_step=inject_nan_at_step)
    trainer.remove_callback(PrinterCallback)  # one bare dict per step; ProgressLog says where the run stands
    trainer.add_callback(ProgressLog(tokens=lambda: trainer.tokens_seen))
    if stop is not None:
        trainer.add_callback(stop)
    resume = last_complete_checkpoint(targs.output_dir, prune=False)
    if resume:
        print(f"resuming from {resume}", flush=True)
    if tensorboard_dir and rank == 0:
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback

        if not resume:
            shutil.rmtree(tensorboard_dir, ignore_errors=True)  # events of another run must not mix in
        trainer.add_callback(TensorBoardCallback(tb_writer=SummaryWriter(log_dir=tensorboard_dir)))
    trainer.train(resume_from_checkpoint=resume)
    return trainer, timer, resume
