"""Stand-ins for two packages `vary train` imports but never calls, absent on the GPU machine
(jieba: Chinese word metrics; nltk: METEOR). Written into the folder named by argv[1]."""

from __future__ import annotations

import sys
from pathlib import Path

STUBS = {
    "jieba/__init__.py": "def setLogLevel(level):\n    pass\n",
    "nltk/__init__.py": "",
    "nltk/translate/__init__.py": "",
    "nltk/translate/meteor_score.py": "def meteor_score(*args, **kwargs):\n    raise NotImplementedError\n",
}

if __name__ == "__main__":
    for name, text in STUBS.items():
        path = Path(sys.argv[1]) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
