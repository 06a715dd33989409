from __future__ import annotations

from vary.evaluation.text import join_cjk, normalize_text, tokenize


def test_normalize_text_nfkc_invisibles_and_whitespace() -> None:
    assert normalize_text("  ﬁnd ＡＢＣ\u200bdef\u00ad \n\t ghi\r\n") == "find ABCdef ghi"


def test_normalize_text_removes_only_spaces_between_cjk() -> None:
    assert normalize_text("视 觉\n词表 abc 中文，好") == "视觉词表 abc 中文,好"


def test_join_cjk_keeps_line_breaks_and_latin_spaces() -> None:
    assert join_cjk("视 觉  词\n表 Vary 模 型") == "视觉词\n表 Vary 模型"


def test_tokenize_english_on_whitespace() -> None:
    assert tokenize("a  b\nc.", "en") == ["a", "b", "c."]


def test_tokenize_chinese_with_jieba_without_space_tokens() -> None:
    tokens = tokenize("我们提出 Vary 方法", "zh")
    assert "Vary" in tokens
    assert all(not token.isspace() for token in tokens)
    assert "".join(tokens) == "我们提出Vary方法"
    assert len(tokens) > 3  # words, not one token per line
