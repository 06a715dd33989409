"""vary: an open implementation of Vary (Wei et al., 2023, arXiv 2312.06109)."""

__version__ = "0.1.0"
