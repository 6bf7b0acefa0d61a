"""Text tokenizer wrapper and the tiny trained SentencePiece model."""

from __future__ import annotations

from pathlib import Path

import pytest
import sentencepiece

from ppx_desktop.assets.tokenizer import (
    SYSTEM_TAG,
    TextTokenizer,
    TokenizerError,
    train_tiny_tokenizer,
    wrap_system_prompt,
)

DEFAULT_PROMPT = (
    "You are a wise and friendly teacher. Answer questions or provide advice in a clear and engaging way."
)


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tiny.model")


@pytest.fixture(scope="module")
def tok(tiny_model_path: Path) -> TextTokenizer:
    return TextTokenizer.load(tiny_model_path)


def test_train_is_deterministic_and_sized(tmp_path: Path) -> None:
    a = train_tiny_tokenizer(tmp_path / "a.model")
    b = train_tiny_tokenizer(tmp_path / "sub" / "b.model")
    assert a.read_bytes() == b.read_bytes()
    assert TextTokenizer.load(a).vocab_size == 256
    c = train_tiny_tokenizer(tmp_path / "c.model", vocab_size=128, seed=3)
    assert TextTokenizer.load(c).vocab_size == 128
    assert not list(tmp_path.glob(".*.tmp")), "temporary files left behind"


def test_train_rejects_impossible_vocab(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match="vocab_size=10"):
        train_tiny_tokenizer(tmp_path / "x.model", vocab_size=10)
    with pytest.raises(TokenizerError, match="vocab_size=100000"):
        train_tiny_tokenizer(tmp_path / "y.model", vocab_size=100000)
    assert not (tmp_path / "x.model").exists()


def test_special_ids_like_the_real_tokenizer(tok: TextTokenizer, tiny_model_path: Path) -> None:
    sp = sentencepiece.SentencePieceProcessor(model_file=str(tiny_model_path))
    assert (sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.pad_id()) == (0, 1, 2, 3)
    assert [tok.id_to_piece(i) for i in range(4)] == ["<unk>", "<s>", "</s>", "<pad>"]
    assert all(sp.is_control(i) or sp.is_unknown(i) for i in range(4))
    # <system> is a user-defined symbol: a single piece wherever it appears (SentencePiece may put a
    # lone word-boundary piece before it).
    assert sp.piece_to_id(SYSTEM_TAG) == 4
    pieces = [tok.id_to_piece(i) for i in tok.encode("a <system> b<system>c")]
    assert pieces.count(SYSTEM_TAG) == 2
    assert "<" not in "".join(p for p in pieces if p != SYSTEM_TAG)


def test_encode_plain_ids_and_round_trip(tok: TextTokenizer) -> None:
    for text in ["Hello, how are you doing today?", DEFAULT_PROMPT, "Let's talk about gardening and space travel."]:
        ids = tok.encode(text)
        assert ids and all(isinstance(i, int) and 0 <= i < tok.vocab_size for i in ids)
        assert 1 not in ids and 2 not in ids  # no BOS/EOS added
        assert tok.decode(ids) == text
    assert tok.encode("") == []


def test_wrap_system_prompt() -> None:
    assert wrap_system_prompt("  Hi there.  ") == "<system> Hi there. <system>"
    assert wrap_system_prompt("<system> Already wrapped. <system>") == "<system> Already wrapped. <system>"
    assert wrap_system_prompt("  <system> x <system>\n") == "<system> x <system>"
    # Only one side tagged: wrapped again, exactly like the reference.
    assert wrap_system_prompt("<system> half") == "<system> <system> half <system>"
    assert wrap_system_prompt("") == ""
    assert wrap_system_prompt(" \n\t ") == ""


def test_encode_system_prompt(tok: TextTokenizer) -> None:
    ids = tok.encode_system_prompt(DEFAULT_PROMPT)
    assert ids == tok.encode(f"<system> {DEFAULT_PROMPT} <system>")
    assert ids.count(4) == 2  # the <system> piece
    assert tok.decode(ids) == f"<system> {DEFAULT_PROMPT} <system>"
    assert tok.encode_system_prompt(f"  <system> {DEFAULT_PROMPT} <system>  ") == ids
    assert tok.encode_system_prompt("") == []
    assert tok.encode_system_prompt("   \n") == []


def test_piece_text(tok: TextTokenizer) -> None:
    assert tok.piece_text(0) == "EPAD"
    assert tok.piece_text(3) == "PAD"
    # The reference's map names 1/2 BOS/EOS, but it actually writes id_to_piece for them.
    assert tok.piece_text(1) == "<s>"
    assert tok.piece_text(2) == "</s>"
    ids = tok.encode("You are a teacher")
    texts = [tok.piece_text(i) for i in ids]
    assert all("\u2581" not in t for t in texts)
    assert "".join(texts) == " You are a teacher"
    for i in ids:
        assert tok.piece_text(i) == tok.id_to_piece(i).replace("\u2581", " ")
    with pytest.raises(TokenizerError, match="outside the vocabulary"):
        tok.piece_text(tok.vocab_size)
    with pytest.raises(TokenizerError):
        tok.piece_text(-1)


def test_load_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "tokenizer_spm_32k_3.model"
    with pytest.raises(TokenizerError, match="not found") as ei:
        TextTokenizer.load(missing)
    assert str(missing) in str(ei.value)
    assert "ppx-desktop download" in str(ei.value) and "--model-dir" in str(ei.value)
    with pytest.raises(TokenizerError, match="directory"):
        TextTokenizer.load(tmp_path)


@pytest.mark.parametrize("content", [b"", b"this is not a sentencepiece model\n", bytes(range(256)) * 4])
def test_load_not_a_model(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.model"
    bad.write_bytes(content)
    with pytest.raises(TokenizerError, match="not a SentencePiece model") as ei:
        TextTokenizer.load(bad)
    assert str(bad) in str(ei.value)
    assert isinstance(ei.value, ValueError)


def test_load_accepts_str_path(tiny_model_path: Path) -> None:
    t = TextTokenizer.load(str(tiny_model_path))
    assert t.path == tiny_model_path
    assert "vocab_size=256" in repr(t)
