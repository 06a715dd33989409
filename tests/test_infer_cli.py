"""`vary ocr` and `vary chat`: files, folders, PDFs, formats, per-file errors, streaming."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from transformers import TextStreamer

import test_infer_pipeline as support
import vary
import vary.inference.cli as cli
from vary.cli import main
from vary.inference import GenerationOptions, PageSelection, VaryPipeline
from vary.inference.pipeline import conversation
from vary.inference.sources import iter_pages

one_thread = support.one_thread
FAST = ["--max-new-tokens", "6", "--device", "cpu"]


@pytest.fixture
def inputs(tmp_path):
    """A folder of two good images and one corrupt one, and a 3-page PDF."""
    folder = tmp_path / "scans"
    folder.mkdir()
    support.noise(1).save(folder / "a.png")
    support.noise(2).save(folder / "b.jpg")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "notes.txt").write_text("ignored: not an image")
    return folder, support.make_pdf(tmp_path / "report.pdf", [11, 12, 13])


def test_ocr_json_outputs_and_errors(inputs, tmp_path, caplog, capsys):
    folder, pdf = inputs
    model = support.saved_model("base")
    out = tmp_path / "out"
    missing = tmp_path / "missing.png"
    args = [str(folder), str(missing), str(pdf), "--model", str(model), "--out", str(out)]
    code = main(["ocr", *args, "--format", "json", "--pages", "2-3", "--batch-size", "3", *FAST])
    assert code == 1  # some inputs failed, the rest were read
    assert sorted(p.name for p in out.iterdir()) == [
        "a.json", "b.json", "errors.jsonl", "report.json", "summary.json"
    ]  # fmt: skip
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert {e["item"] for e in errors} == {str(folder / "broken.png"), str(missing)}
    assert all("\n" not in e["error"] for e in errors)

    pipeline = VaryPipeline.from_pretrained(model)
    options = GenerationOptions(max_new_tokens=6)
    report = json.loads((out / "report.json").read_text())
    assert report["source"] == str(pdf) and report["model"] == model.name and report["error"] is None
    assert [p["page"] for p in report["pages"]] == [2, 3]
    expected = pipeline(pdf, pages=PageSelection.parse("2-3"), options=options)
    assert [p["token_ids"] for p in report["pages"]] == [r.token_ids for r in expected]
    image = json.loads((out / "a.json").read_text())["pages"][0]
    assert image["token_ids"] == pipeline(folder / "a.png", options=options).token_ids
    assert set(image) >= {"text", "num_tokens", "seconds", "repetition_stopped", "truncated", "page"}

    summary = json.loads((out / "summary.json").read_text())
    assert (summary["files"], summary["failed"], summary["pages"]) == (5, 2, 4)
    # the bar counts pages read against those planned: 2 of the PDF, 1 per image file (3 + missing)
    assert re.search(r"ocr: .*\| 4/6 \[.*page/s\]", capsys.readouterr().err)


def test_ocr_text_to_stdout_streams_one_input(inputs, capsys):
    folder, _ = inputs
    model = support.saved_model("tiny")
    assert main(["ocr", str(folder / "a.png"), "--model", str(model), *FAST]) == 0
    expected = VaryPipeline.from_pretrained(model)(folder / "a.png", options=GenerationOptions(6)).text
    assert capsys.readouterr().out == expected + "\n"


def test_ocr_beam_search_from_the_model_folder(inputs, tmp_path, capsys):
    """A model folder whose generation_config.json asks for beams is read with them (no stream,
    which shows one sequence); --num-beams 1 brings back the streamed greedy text."""
    folder, _ = inputs
    model = tmp_path / "beams"
    shutil.copytree(support.saved_model("tiny"), model)
    settings = json.loads((model / "generation_config.json").read_text())
    (model / "generation_config.json").write_text(json.dumps({**settings, "num_beams": 3}))
    image = folder / "a.png"
    pipeline = VaryPipeline.from_pretrained(model)
    assert main(["ocr", str(image), "--model", str(model), *FAST]) == 0
    assert capsys.readouterr().out == pipeline(image, options=GenerationOptions(6, num_beams=3)).text + "\n"
    assert main(["ocr", str(image), "--model", str(model), "--num-beams", "1", *FAST]) == 0
    assert capsys.readouterr().out == pipeline(image, options=GenerationOptions(6, num_beams=1)).text + "\n"
    (page,) = iter_pages(image, pipeline.rendering)
    with pytest.raises(ValueError, match="stream one page with num_beams=1"):
        pipeline.run([page], [conversation()], GenerationOptions(6), TextStreamer(pipeline.tokenizer))
    assert main(["ocr", str(image), "--model", str(model), "--num-beams", "0", *FAST]) == 2


def test_ocr_markdown_pages_to_stdout(inputs, capsys):
    folder, pdf = inputs
    args = [str(pdf), str(folder / "a.png"), "--model", str(support.saved_model("tiny"))]
    assert main(["ocr", *args, "--format", "markdown", "--pages", "1,3", *FAST]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"==> {pdf} <==\n<!-- page 1 -->\n\n")
    assert "<!-- page 3 -->" in out and "<!-- page 2 -->" not in out
    assert f"==> {folder / 'a.png'} <==\n" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pages", "3-1"], "range 3-1 is backwards"),
        (["--model", "nowhere"], "not a Vary model folder"),
        (["--device", "cuda:7", "--model", "MODEL"], "no CUDA GPU"),
        (["--zooms", "1,big", "--model", "MODEL"], "--zooms '1,big': numbers separated by commas"),
        (["--zooms", "1,0", "--model", "MODEL"], "zooms must be positive factors"),
    ],
)
def test_ocr_user_errors_are_one_line(inputs, capsys, args, message):
    folder, _ = inputs
    args = [a.replace("MODEL", str(support.saved_model("tiny"))) for a in args]
    capsys.readouterr()  # saving the tiny model the first time shows a progress bar
    if "cuda:7" in args and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a GPU 7")
    assert main(["ocr", str(folder / "a.png"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_missing_default_model_is_a_clear_error(inputs, capsys, monkeypatch, tmp_path):
    assert cli.default_model_dir() == Path(vary.__file__).parent / "assets" / "default-model"
    monkeypatch.setattr(cli, "default_model_dir", lambda: tmp_path / "assets" / "default-model")
    assert main(["ocr", str(inputs[0] / "a.png")]) == 2
    assert "no built-in model" in capsys.readouterr().err


def test_chat(inputs, capsys):
    image = str(inputs[0] / "a.png")
    assert main(["chat", image, "What is this?", "--model", str(support.saved_model("tiny")), *FAST]) == 2
    assert "chat needs a Vary-base model" in capsys.readouterr().err
    base = support.saved_model("base")
    assert main(["chat", image, "What is this?", "--model", str(base), *FAST]) == 0
    answer = VaryPipeline.from_pretrained(base).chat(image, "What is this?", GenerationOptions(6)).text
    assert capsys.readouterr().out == answer + "\n"
