"""Pretrained weights: released Vary / GOT-OCR2 checkpoints and pretrained parts, into our models.

- `official.convert_checkpoint(source, out, format_name="auto")`: a release folder -> a Vary model
  folder (`vary convert`); `official.FORMATS`, `official.detect_format`.
- `parts`: SAM / CLIP / causal-LM weights into a freshly built model (the `pretrained:` entries
  of a model config, loaded by `vary.model.build_model`).
- `layouts`: each release's key names as rule tables; `keys`: `Rule`, `remap`, the key check and
  `CheckpointError`; `infer`: sizes from weights and config.json; `checkpoint`: file reading;
  `qwen_tokenizer`: Qwen's `qwen.tiktoken` as a fast tokenizer.

Nothing is imported here: `vary.model` imports `parts`, and `official` imports `vary.model`.
"""
