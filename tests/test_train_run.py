"""`vary train` end to end on tiny models: learning, exact resume, SIGKILL, 2 processes, frozen towers.

Runs in this process where possible (imports are the slow part); the multi-process and SIGKILL
runs are real subprocesses. Loss trajectories are compared step by step from metrics.jsonl.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from accelerate.utils import set_seed
from torch._dynamo.backends.registry import lookup_backend, register_backend
from transformers import AutoTokenizer

import test_infer_pipeline as infer_support
from conftest import tiny_model_config
from test_train_data import write_lines
from vary.cli import UserError, main
from vary.config import ConfigError, save_config
from vary.inference import GenerationOptions, VaryPipeline
from vary.inference.pipeline import conversation
from vary.model import build_model, load_pretrained
from vary.training import TrainConfig, train
from vary.training import trainer as trainer_module
from vary.training.checkpoint import latest_checkpoint, list_checkpoints
from vary.training.config import (
    CheckpointConfig,
    DataConfig,
    EvalConfig,
    GenerationConfig,
    OptimConfig,
    SourceConfig,
)
from vary.training.evaluate import greedy_decode

# Different process layouts add float32 partial sums in different orders.
CROSS_PROCESS_RTOL = 1e-5


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from a second thread, and each process of the 2-process runs has
    one: the same thread count keeps float sums in the same order across the runs compared."""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train-data")
    write_lines(root / "train", 96)
    write_lines(root / "heldout", 8, split="heldout")
    return root


def config(data: Path, out: Path, stage: str = "tiny", **changes) -> TrainConfig:
    """A few-step run of a tiny model; no dropout, so trajectories are comparable across layouts."""
    model = tiny_model_config("tiny" if stage == "tiny" else "base")
    model.language_model |= {"dropout": 0.0} if stage == "tiny" else {"attention_dropout": 0.0}
    cfg = TrainConfig(
        stage=stage,
        output_dir=str(out),
        model=model,
        data=DataConfig(
            sources=[SourceConfig(path=str(data / "train"))],
            heldout=SourceConfig(path=str(data / "heldout")),
            max_length=128,
        ),
        optim=optim(6, batch=8),
        eval=EvalConfig(every=0, samples=8, decode_samples=2, max_new_tokens=6, batch_size=8),
        checkpoint=CheckpointConfig(every=3, keep_last=2),
        log_every=1,
    )
    return dataclasses.replace(cfg, **changes)


def optim(steps: int, batch: int = 4, lr: float = 3e-3) -> OptimConfig:
    return OptimConfig(max_steps=steps, global_batch_size=batch, micro_batch_size=4, lr=lr)


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def losses(out: Path) -> dict[int, float]:
    return {m["step"]: m["train/loss"] for m in metrics(out) if "train/loss" in m}


def run_cli(log: Path, *args: str) -> subprocess.Popen:
    """`python ARGS` with one thread per process, its terminal output in `log`."""
    env = os.environ | {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, *args], env=env, stdout=out, stderr=subprocess.STDOUT)


def test_a_short_run_learns_and_saves_a_loadable_model(data, tmp_path):
    reads = GenerationConfig(num_beams=3, line_height=[15, 22])
    cfg = config(data, tmp_path, optim=optim(30, batch=8), generation=reads)
    summary = train(dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, every=15)))
    curve = losses(tmp_path)
    evals = [m["heldout/loss"] for m in metrics(tmp_path) if "heldout/loss" in m]
    assert sum(list(curve.values())[-5:]) / 5 < curve[1] - 1.0
    assert len(evals) == 3 and evals[-1] < evals[0] - 1.0  # at steps 0, 15 and 30
    assert summary["steps"] == 30 and summary["samples"] == 240 and summary["samples_per_s"] > 0
    assert all(0 <= m["train/data_wait"] <= 1 for m in metrics(tmp_path) if "train/loss" in m)
    assert summary["heldout"]["heldout/loss"] == evals[-1] and len(summary["examples"]) == 2
    assert (tmp_path / "summary.json").is_file() and any((tmp_path / "tensorboard").iterdir())
    model, tokenizer, _ = load_pretrained(tmp_path / "model")
    assert (
        model.config.frozen_towers == []
        and tokenizer.get_vocab() == load_pretrained(tmp_path / "model")[1].get_vocab()
    )
    assert model.generation_config.num_beams == 3  # the folder's decoding default, for vary ocr / eval
    assert model.config.line_height == [15, 22]  # it reads pages line by line


def test_a_slow_input_pipeline_shows_as_time_waiting_for_data(data, tmp_path, monkeypatch):
    """Each log line says what share of its time the loop waited for batches: here collating a
    step takes 0.2 s, longer than a tiny model's step."""
    collate = trainer_module.collate_step

    def slow_collate(*args):
        time.sleep(0.2)
        return collate(*args)

    monkeypatch.setattr(trainer_module, "collate_step", slow_collate)
    train(config(data, tmp_path, checkpoint=CheckpointConfig(every=100, keep_last=1)))
    waits = [m["train/data_wait"] for m in metrics(tmp_path) if "train/loss" in m]
    assert len(waits) == 6 and min(waits) > 0.5, waits


def test_resume_reproduces_the_uninterrupted_run(data, tmp_path):
    train(config(data, tmp_path))
    reference = losses(tmp_path)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000003", "step-00000006"]
    for lost in (tmp_path / "checkpoints" / "step-00000006", tmp_path / "model"):  # as if stopped after 3
        shutil.rmtree(lost)
    with pytest.raises(UserError, match="--resume"):
        train(config(data, tmp_path))
    train(config(data, tmp_path), resume=True)
    assert losses(tmp_path) == reference  # bit for bit: weights, optimizer, schedule, RNG, data order
    summary = train(config(data, tmp_path), resume=True)  # a finished run: nothing left to do
    assert summary["steps"] == 6 and losses(tmp_path) == reference


def test_two_processes_follow_one_process(data, tmp_path):
    """Global batch 8: 1 process x 4 x 2 accumulation == 2 processes x 4 x 1 (torchrun, gloo)."""
    save_config(config(data, tmp_path / "two"), tmp_path / "run.yaml")
    log = tmp_path / "two.log"
    torchrun = ("-m", "torch.distributed.run", "--nproc_per_node", "2")
    two = run_cli(log, *torchrun, "-m", "vary.cli", "train", str(tmp_path / "run.yaml"))
    train(config(data, tmp_path / "one"))
    assert two.wait(timeout=120) == 0, log.read_text()[-3000:]
    assert "2 process(es) x 4 micro-batch x 1 accumulation" in log.read_text()
    one, two_losses = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert one.keys() == two_losses.keys() == set(range(1, 7))
    for step, loss in one.items():
        assert two_losses[step] == pytest.approx(loss, rel=CROSS_PROCESS_RTOL), step


def children(pid: int) -> set[int]:
    """Child processes of `pid` (Linux /proc)."""
    return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def running(pid: int) -> bool:
    """Whether `pid` is alive (a zombie waiting for a reaper has exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pids: set[int], timeout: float) -> bool:
    """Whether all `pids` exit within `timeout` seconds (a worker still importing notices late)."""
    deadline = time.monotonic() + timeout
    while any(running(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def logged_step(out: Path) -> int:
    return max(losses(out), default=0) if (out / "metrics.jsonl").exists() else 0


def test_sigkilled_run_resumes_losing_at_most_one_checkpoint_interval(data, tmp_path):
    """The killed run collates in a worker process, which must go with it; the resumed run does not."""
    every, killed = 4, tmp_path / "killed"
    cfg = config(data, killed, optim=optim(40), checkpoint=CheckpointConfig(every, keep_last=2))
    save_config(
        dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, num_workers=1)), tmp_path / "run.yaml"
    )
    job = run_cli(tmp_path / "killed.log", "-m", "vary.cli", "train", str(tmp_path / "run.yaml"))
    deadline = time.monotonic() + 120
    while logged_step(killed) <= 2 * every and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = children(job.pid)
    job.send_signal(signal.SIGKILL)
    assert job.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    done = logged_step(killed)
    resumed_from = int(latest_checkpoint(killed).name.removeprefix("step-"))
    assert done - every <= resumed_from <= done
    assert workers and wait_gone(workers, timeout=60), "workers outlived the killed run"
    save_config(cfg, tmp_path / "run.yaml")
    assert main(["train", str(tmp_path / "run.yaml"), "--resume"]) == 0
    train(dataclasses.replace(cfg, output_dir=str(tmp_path / "reference")))
    reference, resumed = losses(tmp_path / "reference"), losses(killed)
    assert resumed.keys() == reference.keys()
    for step, loss in reference.items():
        assert resumed[step] == pytest.approx(loss, rel=CROSS_PROCESS_RTOL), step


def test_base_stage_trains_projectors_and_lm_only_on_the_merged_vocabulary(data, tmp_path):
    train(config(data, tmp_path / "tiny", optim=optim(2)))
    tiny = load_pretrained(tmp_path / "tiny" / "model")[0].state_dict()
    cfg = config(data, tmp_path / "base", stage="base-pretrain")
    cfg.model.vocabulary.pretrained = str(tmp_path / "tiny" / "model")  # the paper's merge
    train(dataclasses.replace(cfg, optim=optim(3, lr=1e-2)))
    set_seed(cfg.seed)  # the run's initial weights, rebuilt
    before = build_model(
        cfg.model, AutoTokenizer.from_pretrained(tmp_path / "base" / "tokenizer")
    ).state_dict()
    after = load_pretrained(tmp_path / "base" / "model")[0].state_dict()
    for name, value in after.items():
        if name.startswith("vocabulary."):
            assert torch.equal(value, tiny[name]), name  # Vary-tiny's, frozen
        elif name.startswith("clip."):
            assert torch.equal(value, before[name]), name  # frozen
    for name in ("clip_projector.weight", "vocabulary_projector.weight", "language_model.lm_head.weight"):
        assert not torch.equal(after[name], before[name]), name


def test_a_grown_run_starts_where_its_init_stopped(data, tmp_path):
    every_step = EvalConfig(every=2, samples=8, decode_samples=2, max_new_tokens=6, batch_size=8)
    train(config(data, tmp_path / "small", optim=optim(4, batch=8), eval=every_step))
    small_end = [m["heldout/loss"] for m in metrics(tmp_path / "small") if "heldout/loss" in m][-1]
    big = config(data, tmp_path / "big", optim=optim(4, batch=8), eval=every_step)
    init = str(tmp_path / "small" / "model")
    train(dataclasses.replace(big, model=None, init_from=init, deepen=2, widen=2))
    evals = [m["heldout/loss"] for m in metrics(tmp_path / "big") if "heldout/loss" in m]
    assert evals[0] == pytest.approx(small_end, rel=1e-5) and evals[-1] < evals[0]
    small, grown = (load_pretrained(tmp_path / run / "model")[0].config for run in ("small", "big"))
    assert grown.vision_config.num_hidden_layers == 4 and grown.text_config.num_hidden_layers == 4
    assert grown.vision_config.mlp_dim == 2 * small.vision_config.mlp_dim
    assert grown.text_config.ffn_dim == 2 * small.text_config.ffn_dim


def test_config_mistakes_are_one_line_errors(data, tmp_path, capsys):
    path = tmp_path / "run.yaml"
    save_config(config(data, tmp_path / "out"), path)
    assert main(["train", str(path), "optim.learning_rate=1e-4"]) == 2
    assert "unknown key optim.'learning_rate' for OptimConfig" in capsys.readouterr().err
    assert main(["train", str(path), "optim.global_batch_size=6"]) == 2
    assert "global_batch_size 6 is not a multiple of micro_batch_size 4" in capsys.readouterr().err
    assert main(["train", str(path), "deepen=2"]) == 2
    assert "deepen 2: give a factor >= 1, and above 1 only with init_from" in capsys.readouterr().err
    assert main(["train", str(path), "widen=0"]) == 2
    assert "widen 0: give a factor >= 1, and above 1 only with init_from" in capsys.readouterr().err
    assert main(["train", str(path), "optim.compile=inductr"]) == 2
    assert "optim: compile: no torch.compile backend 'inductr' (known: " in capsys.readouterr().err
    assert main(["train", str(path), "generation.line_height=[22,15]"]) == 2
    assert "generation: line_height must be [smallest, largest] px, not [22, 15]" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="stage 'base-sft' needs a Vary-base model"):
        train(config(data, tmp_path / "out", stage="base-sft", model=tiny_model_config("tiny")))


def test_gradient_checkpointing_changes_memory_not_losses(data, tmp_path):
    plain, checkpointed = (
        optim(3, batch=8),
        dataclasses.replace(optim(3, batch=8), gradient_checkpointing=True),
    )
    train(config(data, tmp_path / "plain", optim=plain))
    train(config(data, tmp_path / "checkpointed", optim=checkpointed))
    assert losses(tmp_path / "checkpointed") == pytest.approx(losses(tmp_path / "plain"), rel=1e-6)


CAPTURED: list[torch.fx.GraphModule] = []  # what `optim.compile: vary-test-aot-eager` compiled


@register_backend(name="vary-test-aot-eager")
def _aot_eager_counted(graph: torch.fx.GraphModule, inputs: list[torch.Tensor]):
    """`aot_eager` (inductor's graph capture and autograd split without its code generation:
    quick on a CPU), each captured graph kept so a test can see that compiling happened."""
    CAPTURED.append(graph)
    return lookup_backend("aot_eager")(graph, inputs)


def test_compiled_vision_towers_train_as_eager_ones_and_save_the_same_names(data, tmp_path):
    """`optim.compile` changes how the towers run, not what they compute or save."""
    compiled = dataclasses.replace(optim(3, batch=8), compile="vary-test-aot-eager")
    CAPTURED.clear()
    train(config(data, tmp_path / "plain", optim=optim(3, batch=8)))
    assert not CAPTURED
    train(config(data, tmp_path / "compiled", optim=compiled))
    assert CAPTURED and all("encoder" in str(g.graph) for g in CAPTURED)  # the vision tower's
    assert losses(tmp_path / "compiled") == pytest.approx(losses(tmp_path / "plain"), rel=1e-5)
    saved = [load_pretrained(tmp_path / run / "model")[0].state_dict() for run in ("plain", "compiled")]
    assert list(saved[1]) == list(saved[0])
    assert all(torch.allclose(saved[1][k], v, atol=1e-5) for k, v in saved[0].items())


def test_heldout_transcriptions_are_greedy_whatever_the_model_folder_asks():
    """The curves stay comparable across stages when a model folder asks for beam search."""
    torch.set_num_threads(1)
    pipeline = VaryPipeline.from_pretrained(infer_support.saved_model("tiny"))
    images = [infer_support.noise(seed) for seed in range(4)]
    greedy = [r.text for r in pipeline(images, options=GenerationOptions(8, num_beams=1))]
    pipeline.model.generation_config.num_beams = 3
    assert [r.text for r in pipeline(images, options=GenerationOptions(8))] != greedy  # beams differ here
    prompts = [conversation()] * len(images)
    assert greedy_decode(pipeline.model, pipeline.processor, images, prompts, 4, 8) == greedy
