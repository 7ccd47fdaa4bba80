"""Raw text for continued pre-training: every token is a target.

Inputs (``data.corpus`` / ``data.eval_corpus`` of a ``cpt`` run):

* a ``.txt`` file: the whole file is one text;
* a ``.jsonl`` file: one text per row, from the ``cpt.text_column`` field (default ``text``);
  rows without it but with prompt/completion (a taskmill corpus) become ``prompt + "\\n" + completion``;
* a corpus folder: its ``corpus.jsonl`` as above.

Each text is tokenised with the tokenizer's own special tokens (BOS when it adds one) plus EOS
(``cpt.add_eos``), then cut into consecutive windows of at most ``data.max_length`` tokens; each
window is a :class:`~taskmill.trainer.data.Document` whose loss mask is all ones, so it packs,
plans and resumes exactly like SFT data. A window's first token has no predictor (documents do not
attend to each other), the price of per-document attention.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from taskmill.errors import DataError
from taskmill.fileio import corpus_file, read_jsonl
from taskmill.trainer.data import Document

_NO_TEXT = "no text to train on"


def _row_text(row: Any, column: str) -> str | None:
    if not isinstance(row, dict):
        return None
    if isinstance(row.get(column), str):
        return row[column]
    if isinstance(row.get("prompt"), str) and isinstance(row.get("completion"), str):
        return row["prompt"] + "\n" + row["completion"]
    return None


def read_texts(path: str | Path, column: str = "text") -> list[str]:
    """The raw texts of a ``.txt`` file, a JSONL file or a corpus folder.

    Raises:
        DataError: missing file, bad JSON, a row without text, or no text at all.
    """
    file = corpus_file(path)
    if file.suffix.lower() == ".txt" and file.is_file():
        texts = [file.read_text(encoding="utf-8")]
    else:
        rows = read_jsonl(file, lambda row: _row_text(row, column) is not None,
                          f"expected a string '{column}' field (or prompt and completion)",
                          missing="text file not found (expected .txt, .jsonl, or a folder holding corpus.jsonl)",
                          empty=_NO_TEXT)
        texts = [_row_text(row, column) for row in rows]
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise DataError(_NO_TEXT, file=str(file))
    return texts


def tokenize_texts(tokenizer: Any, texts: Sequence[str], max_length: int, add_eos: bool = True) -> list[Document]:
    """Texts -> windows of at most ``max_length`` tokens, every token a target."""
    eos = [tokenizer.eos_token_id] if add_eos and tokenizer.eos_token_id is not None else []
    docs = []
    for ids in tokenizer(list(texts), add_special_tokens=True)["input_ids"]:
        ids = list(ids) + eos
        for start in range(0, len(ids), max_length):
            window = tuple(ids[start:start + max_length])
            if len(window) >= 2:  # a one-token window predicts nothing
                docs.append(Document(window, (1,) * len(window)))
    return docs


def load_text_documents(tokenizer: Any, path: str | Path, max_length: int, column: str = "text",
                        add_eos: bool = True) -> list[Document]:
    """Read and tokenise raw text for continued pre-training."""
    return tokenize_texts(tokenizer, read_texts(path, column), max_length, add_eos)
