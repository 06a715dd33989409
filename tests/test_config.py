"""Typed YAML config loading: overrides, nested dataclasses, clear one-line errors."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from vary.config import ConfigError, load_config


@dataclass
class Optim:
    lr: float = 5e-5
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class Run:
    name: str = "run"
    steps: int = 10
    optim: Optim = field(default_factory=Optim)
    resume: str | None = None


def test_overrides_are_parsed_as_yaml(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("name: demo\noptim:\n  lr: 1\n")
    run = load_config(path, Run, ["steps=25", "optim.betas=[0.8, 0.9]", "resume=null", "optim.lr=3e-4"])
    assert run == Run(name="demo", steps=25, optim=Optim(lr=3e-4, betas=[0.8, 0.9]), resume=None)
    assert isinstance(load_config(path, Run).optim.lr, float)  # YAML int 1 -> float field


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("stepz: 3\n", [], r"run\.yaml: unknown key 'stepz' for Run"),
        ("optim:\n  lr: fast\n", [], r"run\.yaml: optim\.lr: expected float, got 'fast'"),
        ("steps: true\n", [], r"steps: expected int, got True"),
        ("", ["optim"], r"override 'optim' is not of the form key=value"),
        ("name: demo\n", ["name.x=1"], r"'name' is not a section"),
        ("- a\n", [], r"top level must be a mapping"),
        ("a: [\n", [], r"not valid YAML"),
    ],
)
def test_errors_name_the_file_and_key(tmp_path, text, overrides, message):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path, Run, overrides)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml", Run)
