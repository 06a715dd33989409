"""`vary train CONFIG [KEY=VALUE ...]` without importing the other commands (no PyMuPDF there)."""

from __future__ import annotations

import sys

from vary.cli import setup_logging
from vary.training.config import load_train_config
from vary.training.trainer import train

if __name__ == "__main__":  # collate workers are spawned: they import this file again
    setup_logging(verbose=False)
    train(load_train_config(sys.argv[1], sys.argv[2:]))
