"""The training loop: one code path from a 2-core CPU to many GPUs, through Hugging Face Accelerate.

    vary train configs/quickstart.yaml                                   # one process
    accelerate launch --config_file configs/accelerate/ddp.yaml -m vary.cli train CONFIG [--resume]

Accelerate supplies the distribution (one process, DDP, FSDP, DeepSpeed: whatever the launch
config says), mixed precision and `save_state`; this module supplies the rest: the stage's
frozen towers, the paper's optimiser and schedule, a data stream that resumes exactly
(`vary.training.data`), atomic checkpoints (`vary.training.checkpoint`), held-out evaluation
(`vary.training.evaluate`), progress, TensorBoard, `metrics.jsonl` and `summary.json`.

The loss of a step is the mean over every target token of the global batch: each micro-batch
returns its token sum divided by the step's global token count (times the number of
micro-batches, which DDP and gradient accumulation divide out again). Long and short samples
then weigh the same however they fall into micro-batches and processes, and N processes follow
the trajectory of one process with N times the accumulation.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, DistributedType, PartialState
from accelerate.utils import ProjectConfiguration, set_seed
from tqdm.auto import tqdm
from transformers import AutoTokenizer, PreTrainedTokenizerBase, get_scheduler

from vary.cli import UserError
from vary.config import ConfigError, save_config
from vary.data.config import EngineConfig
from vary.data.engine import run_job
from vary.data.lines import lines_job
from vary.model import (
    VaryBase,
    VaryForCausalLM,
    VaryImageProcessor,
    VaryProcessor,
    build_model,
    build_tokenizer,
    deepen,
    load_pretrained,
    ocr_conversation,
    widen,
)
from vary.reporting import LOGGER_NAME, ErrorLog, Stopwatch, get_logger, write_summary
from vary.training.checkpoint import latest_checkpoint, load_checkpoint, remove_partial, save_checkpoint
from vary.training.config import OptimConfig, SourceConfig, TrainConfig
from vary.training.data import (
    Batch,
    Collator,
    Position,
    collate_step,
    iter_steps,
    iter_stream,
    prefetch_map,
    read_heldout,
    read_texts,
)
from vary.training.evaluate import EvalResult, evaluate

log = get_logger("train")
TOKENIZER_DIR = "tokenizer"
MODEL_DIR = "model"
METRICS = "metrics.jsonl"


@dataclass
class TrainerState:
    """Everything besides Accelerate's state that a resumed run needs (trainer_state.json)."""

    step: int = 0
    position: Position = field(default_factory=Position)
    samples: int = 0
    tokens: int = 0
    target_tokens: int = 0
    seconds: float = 0.0  # training time over all runs of this output folder

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "position": self.position.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainerState:
        return cls(**{**data, "position": Position.from_json(data["position"])})


# -- set-up ---------------------------------------------------------------------------------------
def resolve_precision(setting: str) -> str | None:
    """ "auto": the `accelerate launch` config's choice if there is one (None lets Accelerate read
    it), else bf16 on GPUs that have it and fp32 elsewhere (CPU autocast is slower here)."""
    if setting != "auto":
        return setting
    if "ACCELERATE_MIXED_PRECISION" in os.environ:
        return None
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def make_accelerator(cfg: TrainConfig, output_dir: Path) -> Accelerator:
    # Without GPUs, processes started by torchrun must be told to use CPU (gloo) distribution.
    cpu = not torch.cuda.is_available()
    accumulation = cfg.accumulation_steps(PartialState(cpu=cpu).num_processes)
    accelerator = Accelerator(
        cpu=cpu,
        gradient_accumulation_steps=accumulation,
        mixed_precision=resolve_precision(cfg.optim.mixed_precision),
        log_with="tensorboard",
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir)),
        step_scheduler_with_optimizer=False,  # stepped once per optimizer step, whatever the world size
    )
    if accelerator.gradient_accumulation_steps != accumulation:
        raise ConfigError(
            f"the launch config sets gradient_accumulation_steps={accelerator.gradient_accumulation_steps};"
            " remove it: optim.global_batch_size and micro_batch_size decide the accumulation"
        )
    return accelerator


def generate_synthetic(sources: list[SourceConfig]) -> None:
    """Write (or finish writing) the synthetic sources, on every core (nothing else runs yet); the
    data engine resumes an interrupted run and refuses a folder holding another configuration."""
    workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    for source in sources:
        if source.lines is not None:
            # PNG: JPEG's ringing around strokes is noise at the few pixels a small letter has.
            engine = EngineConfig(out=source.path, workers=workers, image_format="png")
            run_job(lines_job(source.lines, engine), engine)


def new_tokenizer(cfg: TrainConfig) -> PreTrainedTokenizerBase:
    if cfg.init_from is not None:
        return AutoTokenizer.from_pretrained(cfg.init_from)
    spec = cfg.model.tokenizer
    texts = None if spec.path else read_texts(cfg.data.sources, cfg.data.tokenizer_texts)
    return build_tokenizer(spec, texts)


def prepare_tokenizer(cfg: TrainConfig, output_dir: Path, fresh: bool, accelerator: Accelerator):
    """Built once by the main process and saved with the run; every process loads that copy."""
    folder = output_dir / TOKENIZER_DIR
    if fresh and accelerator.is_main_process:
        new_tokenizer(cfg).save_pretrained(folder)
    accelerator.wait_for_everyone()
    return AutoTokenizer.from_pretrained(folder)


def prepare_model(cfg: TrainConfig, tokenizer: PreTrainedTokenizerBase) -> VaryForCausalLM:
    model = load_pretrained(cfg.init_from)[0] if cfg.init_from else build_model(cfg.model, tokenizer)
    is_base = isinstance(model, VaryBase)
    if is_base != (cfg.stage != "tiny"):
        raise ConfigError(f"stage {cfg.stage!r} needs a {'Vary-base' if not is_base else 'Vary-tiny'} model")
    # Vary-base trains its language model only: its frozen towers stay as they are
    parts = ("language_model",) if is_base else ("vocabulary", "language_model")
    if cfg.deepen > 1:
        model = deepen(model, cfg.deepen, parts)
    if cfg.widen > 1:
        model = widen(model, cfg.widen, parts)
    model.freeze_towers(list(model.towers()) if is_base else [])
    if cfg.optim.gradient_checkpointing:
        model.activation_checkpointing_enable({"use_reentrant": False})
    if cfg.optim.compile:
        for tower in model.towers().values():  # in place: parameter names stay as saved
            tower.compile(backend=cfg.optim.compile)
    return model


def check_max_length(processor: VaryProcessor, max_length: int) -> None:
    """Truncation must leave room for an answer after the prompt (system text, image tokens)."""
    prompt = processor.encode(ocr_conversation()).input_ids
    if len(prompt) + 8 > max_length:
        raise ConfigError(
            f"data.max_length {max_length} leaves no room for answers after the {len(prompt)}-token prompt"
        )


def parameter_groups(model: VaryForCausalLM, lr: float, optim: OptimConfig) -> list[dict[str, Any]]:
    """Trainable parameters: the rest of the model first (its lr is the one logged), then the
    vision towers at `vision_lr_scale` x lr; no weight decay on biases and norms (as the official
    trainer)."""
    towers = {id(p) for tower in model.towers().values() for p in tower.parameters()}
    groups = []
    for vision, group_lr in ((False, lr), (True, lr * optim.vision_lr_scale)):
        params = [p for p in model.parameters() if p.requires_grad and (id(p) in towers) == vision]
        for decay in (True, False):
            chosen = [p for p in params if (p.ndim >= 2) == decay]
            if chosen:
                groups.append({"params": chosen, "lr": group_lr, "weight_decay": optim.weight_decay * decay})
    return groups


def make_optimizer(model: VaryForCausalLM, cfg: TrainConfig) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW and the warm-up + decay schedule of the paper (stepped once per optimizer step)."""
    optimizer = torch.optim.AdamW(
        parameter_groups(model, cfg.lr, cfg.optim),
        betas=tuple(cfg.optim.betas),
        eps=cfg.optim.eps,
        fused=True,  # one kernel for all parameters: 7x faster steps on CPU than a per-tensor loop
    )
    scheduler = get_scheduler(
        cfg.optim.schedule,
        optimizer,
        num_warmup_steps=round(cfg.optim.warmup_ratio * cfg.optim.max_steps),
        num_training_steps=cfg.optim.max_steps,
    )
    return optimizer, scheduler


def check_output_dir(output_dir: Path, resume: bool) -> Path | None:
    """The checkpoint to resume from; refuses to overwrite a run's checkpoints without --resume."""
    checkpoint = latest_checkpoint(output_dir)
    if checkpoint is not None and not resume:
        raise UserError(
            f"{output_dir} holds checkpoints of a run: pass --resume, or choose another output_dir"
        )
    if resume and checkpoint is None:
        log.warning("%s: no checkpoint to resume from, starting from scratch", output_dir)
    return checkpoint


# -- the loop -------------------------------------------------------------------------------------
def train_step(
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    batches: list[Batch],
    max_grad_norm: float,
    image_processor: VaryImageProcessor,
) -> tuple[torch.Tensor, torch.Tensor, float | None]:
    """One optimizer step over this process's micro-batches (their pixels uint8, normalised here,
    on the device: a quarter of the bytes through the collate workers' pipes).

    Returns the global token-mean loss, the global (target tokens, tokens) counts and the
    gradient norm before clipping (None where DeepSpeed clips by itself).
    """
    device = accelerator.device
    local = torch.tensor(
        [sum(b.target_tokens for b in batches), sum(b.tokens for b in batches)], device=device
    )
    counts = accelerator.reduce(local, "sum")
    shares = accelerator.num_processes * len(batches)
    per_micro = counts[0].clamp(min=1).float() / shares  # each micro-batch's loss: token sum / this
    loss_sum, grad_norm = torch.zeros((), device=device), None
    for batch in batches:
        inputs = image_processor.normalize({k: v.to(device) for k, v in batch.inputs.items()})
        with accelerator.accumulate(model):
            loss = model(**inputs, use_cache=False, num_items_in_batch=per_micro).loss
            accelerator.backward(loss)
            if accelerator.sync_gradients and max_grad_norm > 0:
                norm = accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
                grad_norm = float(norm) if norm is not None else None
            optimizer.step()
            optimizer.zero_grad()
        loss_sum += loss.detach()
    scheduler.step()
    return accelerator.reduce(loss_sum, "sum") / shares, counts, grad_norm


@dataclass
class Window:
    """Training statistics since the last log line."""

    steps: int = 0
    loss: float = 0.0
    samples: int = 0
    tokens: int = 0
    waited: float = 0.0  # seconds spent waiting for the next step's batches
    clock: Stopwatch = field(default_factory=Stopwatch)

    def add(self, loss: torch.Tensor, samples: int, tokens: int) -> None:
        self.steps += 1
        self.loss += float(loss)
        self.samples += samples
        self.tokens += tokens

    def scalars(self, lr: float, grad_norm: float | None) -> dict[str, float]:
        seconds = max(self.clock.seconds, 1e-9)
        values = {
            "train/loss": self.loss / max(self.steps, 1),
            "train/lr": lr,
            "train/samples_per_s": self.samples / seconds,
            "train/tokens_per_s": self.tokens / seconds,
            # near 1: the input pipeline, not the model, sets the pace (the step's loss is read
            # back every step, so the accelerator's queue is empty while the loop waits)
            "train/data_wait": min(self.waited / seconds, 1.0),
        }
        return values | ({"train/grad_norm": grad_norm} if grad_norm is not None else {})


class MetricsLog:
    """metrics.jsonl: one JSON line per log step and per evaluation (main process only)."""

    def __init__(self, path: Path, enabled: bool, resume_step: int | None):
        self.path, self.enabled = path, enabled
        if enabled and resume_step is not None and path.exists():  # drop what the checkpoint did not keep
            lines = path.read_text(encoding="utf-8").splitlines()
            kept = [line for line in lines if json.loads(line)["step"] <= resume_step]
            path.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
        elif enabled:
            path.unlink(missing_ok=True)

    def write(self, step: int, values: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"step": step, **values}, ensure_ascii=False) + "\n")


class Trainer:
    """One run in one output folder: set up (or restored from its last checkpoint), then `fit()`."""

    def __init__(self, cfg: TrainConfig, resume: bool = False):
        self.cfg = cfg
        self.output_dir = Path(cfg.output_dir)
        self.accelerator = accelerator = make_accelerator(cfg, self.output_dir)
        self.main = accelerator.is_main_process
        if not self.main:  # one voice on the terminal: other processes only report problems
            logging.getLogger(LOGGER_NAME).setLevel(logging.WARNING)
        checkpoint = check_output_dir(self.output_dir, resume)
        if self.main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            remove_partial(self.output_dir)
            save_config(cfg, self.output_dir / "config.yaml")
            generate_synthetic([*cfg.data.sources, *filter(None, [cfg.data.heldout])])
        accelerator.wait_for_everyone()
        set_seed(cfg.seed)
        self.tokenizer = prepare_tokenizer(cfg, self.output_dir, checkpoint is None, accelerator)
        model = prepare_model(cfg, self.tokenizer)
        self.processor = VaryProcessor.from_config(model.config, self.tokenizer, cfg.data.max_length)
        check_max_length(self.processor, cfg.data.max_length)
        self.parameters = {
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "total": sum(p.numel() for p in model.parameters()),
        }
        optimizer, scheduler = make_optimizer(model, cfg)
        self.model, self.optimizer, self.scheduler = accelerator.prepare(model, optimizer, scheduler)
        self.state = TrainerState()
        if checkpoint is not None:
            self.state = TrainerState.from_json(load_checkpoint(accelerator, checkpoint))
            log.info("resumed from %s (step %d)", checkpoint, self.state.step)
        self.resumed = checkpoint is not None
        self.heldout = read_heldout(cfg.data.heldout, cfg.eval.samples) if cfg.data.heldout else []
        self.metrics = MetricsLog(
            self.output_dir / METRICS, self.main, self.state.step if self.resumed else None
        )
        rank = accelerator.process_index
        self.errors = ErrorLog(
            self.output_dir / ("errors.jsonl" if self.main else f"errors-rank{rank}.jsonl")
        )
        self.last_loss: float | None = None
        self.last_eval: EvalResult | None = None
        accelerator.init_trackers("tensorboard")

    def describe(self) -> str:
        a, cfg = self.accelerator, self.cfg
        return (
            f"stage {cfg.stage}: {self.parameters['trainable'] / 1e6:.2f}M of"
            f" {self.parameters['total'] / 1e6:.2f}M parameters trained; {a.num_processes} process(es) x"
            f" {cfg.optim.micro_batch_size} micro-batch x {a.gradient_accumulation_steps} accumulation ="
            f" global batch {cfg.global_batch_size}; lr {cfg.lr:.2g}; precision {a.mixed_precision}"
        )

    def batches(self) -> Iterator[tuple[list[Batch], Position]]:
        """This process's collated micro-batches of each step, from where the state says."""
        a, cfg = self.accelerator, self.cfg
        stream = iter_stream(cfg.data.sources, cfg.seed, self.state.position, self.errors)
        steps = iter_steps(
            stream,
            cfg.optim.micro_batch_size,
            a.gradient_accumulation_steps,
            a.process_index,
            a.num_processes,
        )
        collate = functools.partial(collate_step, Collator(self.processor, cfg.stage))
        return prefetch_map(collate, steps, cfg.data.num_workers)

    def fit(self) -> dict[str, Any]:
        cfg, state = self.cfg, self.state
        log.info("%s", self.describe())
        if self.heldout and not self.resumed and cfg.eval.every > 0:
            self.evaluate()
        bar = tqdm(total=cfg.optim.max_steps, initial=state.step, desc=f"train {cfg.stage}", unit="step",
                   disable=not self.main, dynamic_ncols=True, mininterval=1.0)  # fmt: skip
        steps, window, clock = self.batches(), Window(), Stopwatch()
        self.model.train()
        try:
            while state.step < cfg.optim.max_steps:
                wait = Stopwatch()
                batches, position = next(steps)
                window.waited += wait.seconds
                for where, problem in (p for batch in batches for p in batch.problems):
                    self.errors.record(where, problem, kind="bad_sample")
                lr = self.scheduler.get_last_lr()[0]
                loss, counts, grad_norm = train_step(
                    self.accelerator,
                    self.model,
                    self.optimizer,
                    self.scheduler,
                    batches,
                    cfg.optim.max_grad_norm,
                    self.processor.image_processor,
                )
                state.step += 1
                state.position = position
                state.samples += cfg.global_batch_size
                state.target_tokens += int(counts[0])
                state.tokens += int(counts[1])
                window.add(loss, cfg.global_batch_size, int(counts[1]))
                bar.update(1)
                done = state.step == cfg.optim.max_steps
                if state.step % cfg.log_every == 0 or done:
                    bar.set_postfix_str(self.log_window(window, lr, grad_norm), refresh=False)
                    window = Window()
                if self.heldout and (done or (cfg.eval.every and state.step % cfg.eval.every == 0)):
                    self.evaluate()
                if state.step % cfg.checkpoint.every == 0 or done:  # done: --resume then has nothing to redo
                    state.seconds += clock.seconds
                    clock = Stopwatch()
                    save_checkpoint(self.accelerator, self.output_dir, state.step, state.to_json(),
                                    cfg.checkpoint.keep_last)  # fmt: skip
        finally:
            steps.close()
            bar.close()
        state.seconds += clock.seconds
        return self.finish()

    def log_window(self, window: Window, lr: float, grad_norm: float | None) -> str:
        scalars = window.scalars(lr, grad_norm)
        self.last_loss = scalars["train/loss"]
        self.metrics.write(self.state.step, scalars | {"samples": self.state.samples})
        self.accelerator.log(scalars, step=self.state.step)
        return (
            f"loss {scalars['train/loss']:.3f} lr {lr:.1e} {scalars['train/samples_per_s']:.1f} samples/s"
            f" {scalars['train/tokens_per_s']:.0f} tok/s, {scalars['train/data_wait']:.0%} waiting for data"
        )

    def evaluate(self) -> None:
        a, cfg = self.accelerator, self.cfg
        sharded = (
            a.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED) and a.num_processes > 1
        )
        self.model.eval()
        result = evaluate(
            self.model,
            a.unwrap_model(self.model),
            self.processor,
            self.heldout,
            cfg.stage,
            cfg.eval.batch_size,
            cfg.eval.decode_samples,
            cfg.eval.max_new_tokens,
            synced_gpus=sharded,  # every process takes part in each sharded forward pass
        )
        self.model.train()
        self.metrics.write(self.state.step, result.scalars())
        a.log(result.scalars(), step=self.state.step)
        scalars = ", ".join(f"{k.split('/')[1]} {v:.4f}" for k, v in result.scalars().items())
        log.info("step %d held-out: %s", self.state.step, scalars)
        for example in result.examples[: cfg.eval.show]:
            log.info("  %r -> %r", example["reference"], example["prediction"])
        self.last_eval = result

    def finish(self) -> dict[str, Any]:
        """The final model folder (gathered from every process if sharded) and summary.json."""
        a = self.accelerator
        state_dict = a.get_state_dict(self.model)
        if self.main:
            model = a.unwrap_model(self.model)
            model.generation_config.num_beams = self.cfg.generation.num_beams
            if self.cfg.generation.line_height is not None:
                model.config.line_height = self.cfg.generation.line_height
            model.save_pretrained(self.output_dir / MODEL_DIR, state_dict=state_dict)
            self.tokenizer.save_pretrained(self.output_dir / MODEL_DIR)
        a.wait_for_everyone()
        a.end_training()
        summary = self.summary()
        if self.main:
            write_summary(self.output_dir / "summary.json", summary)
        return summary

    def summary(self) -> dict[str, Any]:
        cfg, state = self.cfg, self.state
        seconds = max(state.seconds, 1e-9)
        return {
            "stage": cfg.stage,
            "steps": state.step,
            "samples": state.samples,
            "tokens": state.tokens,
            "target_tokens": state.target_tokens,
            "seconds": round(state.seconds, 1),
            "samples_per_s": round(state.samples / seconds, 2),
            "tokens_per_s": round(state.tokens / seconds, 1),
            "final_train_loss": self.last_loss,
            "heldout": self.last_eval.scalars() if self.last_eval else None,
            "examples": self.last_eval.examples if self.last_eval else [],
            "parameters": self.parameters,
            "processes": self.accelerator.num_processes,
            "mixed_precision": self.accelerator.mixed_precision,
            "global_batch_size": cfg.global_batch_size,
            "lr": cfg.lr,
            "model_dir": str(self.output_dir / MODEL_DIR),
        }


def train(cfg: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Run (or resume) the configured training; returns the summary also written to summary.json."""
    return Trainer(cfg, resume).fit()
