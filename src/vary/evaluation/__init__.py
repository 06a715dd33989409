"""Evaluation: any engine (our model, Tesseract, RapidOCR) on the same data, scored the same way.

`text` (the one normalisation, tokens), `metrics` (pure metric functions), `engines` (the engine
protocol and adapters), `datasets` (file formats), `ocr` / `qa` (the runs), `cli` (`vary eval`).
See docs/evaluation.md.
"""
