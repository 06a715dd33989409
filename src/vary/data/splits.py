"""Which source PDFs may be used for training: the held-out evaluation set is fenced off here.

shared/README.md reserves, for held-out evaluation only, every PDF of the Debian package
`texlive-humanities-doc`, and every PDF of `texlive-lang-chinese` whose folder under
`texlive-doc/latex/` starts with a letter from n to z. One function, `split_of`, applies that
rule, and the PDF engine asks it for every file, so no recipe can leak evaluation pages into
training by accident.

The package a file came from is read from its path: either a folder above `texlive-doc` named
after the package (`dpkg -x texlive-humanities-doc_*.deb texlive-humanities-doc/`, the .deb's own
stem works too), or, for files installed on this system, dpkg's file lists. A file under a
`texlive-doc` tree whose package cannot be told is an error, never silently "train".
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

Split = Literal["train", "heldout"]
SPLITS: tuple[Split, ...] = ("train", "heldout")
HELDOUT_PACKAGE = "texlive-humanities-doc"
CHINESE_PACKAGE = "texlive-lang-chinese"
DOC_TREE = "texlive-doc"
_PACKAGE_FOLDER = re.compile(r"^(texlive-[a-z0-9-]+?)(?:_[^/]*)?$")
DPKG_INFO = Path("/var/lib/dpkg/info")


class UnknownOriginError(ValueError):
    """A texlive documentation PDF whose Debian package cannot be determined."""


def is_reserved(package: str | None, doc_parts: tuple[str, ...]) -> bool:
    """The rule itself. `doc_parts` is the path below `texlive-doc/` (e.g. ("latex", "zhnumber", ...))."""
    if package == HELDOUT_PACKAGE:
        return True
    if package == CHINESE_PACKAGE and len(doc_parts) >= 2 and doc_parts[0] == "latex":
        return "n" <= doc_parts[1][:1].lower() <= "z"
    return False


def split_of(path: str | Path, dpkg_info: Path = DPKG_INFO) -> Split:
    """ "heldout" for a reserved PDF, else "train"; raises UnknownOriginError when it can't tell."""
    path = Path(path).absolute()
    parts = path.parts
    if DOC_TREE not in parts:
        return "train"  # not texlive documentation: none of it is reserved
    at = len(parts) - 1 - parts[::-1].index(DOC_TREE)
    doc_parts = parts[at + 1 :]
    package = _package_from_folders(parts[:at]) or _installed_package(path, dpkg_info)
    if package is None:
        raise UnknownOriginError(
            f"{path}: cannot tell which Debian package this texlive PDF came from; extract each "
            "package into a folder named after it (dpkg -x PKG.deb PKG/)"
        )
    return "heldout" if is_reserved(package, doc_parts) else "train"


def select(paths: Iterable[Path], split: Split, dpkg_info: Path = DPKG_INFO) -> tuple[list[Path], int]:
    """Keep the paths that belong to `split`; also return how many belonged to the other one."""
    kept, other = [], 0
    for path in paths:
        if split_of(path, dpkg_info) == split:
            kept.append(path)
        else:
            other += 1
    return kept, other


def _package_from_folders(parts: tuple[str, ...]) -> str | None:
    """The nearest folder above the doc tree named like a texlive package (with optional _version)."""
    for part in reversed(parts):
        match = _PACKAGE_FOLDER.match(part)
        if match:
            return match.group(1)
    return None


def _installed_package(path: Path, dpkg_info: Path) -> str | None:
    return _installed_files(dpkg_info).get(str(path))


@functools.lru_cache(maxsize=4)
def _installed_files(dpkg_info: Path) -> dict[str, str]:
    """File -> package for the texlive packages installed on this system (read once)."""
    owners: dict[str, str] = {}
    for listing in sorted(dpkg_info.glob("texlive*.list")):
        package = listing.stem.split(":")[0]
        for line in listing.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.endswith(".pdf"):
                owners[line] = package
    return owners
