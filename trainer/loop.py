"""The training loop: set-up, one optimizer step over packed micro-batches, evaluation, saving.

Read top to bottom: :func:`train` builds a :class:`Trainer`, which plans every step up front (so
the data position is just the step number), resumes from the newest checkpoint if one exists,
then runs steps. Loss per micro-batch is ``sum(CE) * world / (target tokens of the whole step)``,
so accumulation and DDP averaging give exactly the step's mean token loss.

A step only queues work: its loss and gradient norm stay on the device (:class:`StepOutput`),
a non-blocking copy to page-locked memory is queued right behind the step, and the host reads
them one step later, once the next step is queued, so it never leaves the GPU idle while it
waits for numbers or tokenises the next batch. Evaluation, checkpoints and the end of the run
read everything first.
"""

from __future__ import annotations

import contextlib
import math
import random
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from taskmill.trainer import attention, checkpoint, dist, resume
from taskmill.fileio import OutputFolder, claim_output
from taskmill.trainer.config import TrainConfig, save_config
from taskmill.trainer.data import (Document, deal_to_ranks, load_documents, make_micro_batch,
                                   pack_micro_batches, plan_epoch, step_target_count)
from taskmill.trainer.engine import PackedLoss, batch_inputs, detect_peak_flops, flop_model
from taskmill.trainer.metrics import RunLog, StepClock, peak_memory_gb
from taskmill.trainer.model import (apply_lora, build_model, causal_lm, compile_layers,
                                    enable_gradient_checkpointing, load_tokenizer)

_DUMMY = Document((0, 0), (0, 0))  # no targets: keeps every rank's backward in step when it has no data


@dataclass
class TrainResult:
    """What a run produced.

    Attributes:
        output_dir: The run folder.
        records: Per-step log records (this process's run only; a resumed run starts at its checkpoint).
        eval_loss: Final held-out mean token loss, when an eval corpus was given.
        saved: Folder of the saved adapter (LoRA) or model (full fine-tuning).
    """

    output_dir: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    eval_loss: float | None = None
    saved: Path | None = None

    @property
    def losses(self) -> list[float]:
        """Training loss of each step run."""
        return [r["loss"] for r in self.records if "loss" in r]


@dataclass
class StepOutput:
    """A queued step's numbers, still on the device.

    Attributes:
        loss: 0-dim float64 sum over ranks of the ranks' scaled losses (``world`` x the step's mean).
        norm: 0-dim gradient norm before clipping, or None without clipping.
        lr: Learning rate the step used.
        stats: Objective-specific 1-dim float64 sums over ranks (DPO), or None.
    """

    loss: Any
    norm: Any | None
    lr: float
    stats: Any | None = None
    _host: Any = None  # staged values: page-locked host tensor (CUDA) or the values themselves
    _has_norm: bool = False

    def stage(self) -> None:
        """Queue the copy of the step's numbers to page-locked host memory, right behind its work.

        Call it before the step's end mark: the copy then completes with the step, and
        :meth:`read` needs no device work. Reading device tensors later instead would queue the copy
        behind the *next* step and wait for that one too.
        """
        import torch

        norm = self.norm
        if norm is not None and hasattr(norm, "full_tensor"):  # FSDP2: a DTensor
            norm = norm.full_tensor()
        parts = [self.loss.reshape(1).double()]
        if norm is not None:
            parts.append(norm.reshape(1).double())
        if self.stats is not None:
            parts.append(self.stats.double())
        values = torch.cat(parts)  # [1 + has norm + n stats]
        if values.is_cuda:
            host = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
            host.copy_(values, non_blocking=True)
            values = host
        self._host = values
        self._has_norm = norm is not None

    def read(self) -> tuple[float, float | None, list[float]]:
        """(loss sum, norm, stats) as floats; on CUDA only once the step's end mark was reached."""
        if self._host is None:
            self.stage()
        values = self._host.tolist()
        has_norm = self._has_norm
        return values[0], (values[1] if has_norm else None), values[1 + has_norm:]


def cpu_threads(requested: int) -> int:
    """Torch intra-op threads for a CPU run: ``requested``, or (0) the count torch has now (its
    default, or what an executor pinned) but never more than the CPUs this process may run on.

    Not derived from the machine's load: the count can change CPU rounding, and the same config
    must give the same bytes.
    """
    import os

    import torch

    if requested > 0:
        return requested
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(torch.get_num_threads(), allowed))


def cpu_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), as oneDNN reports it.

    Only then is bf16 autocast the CPU default: on a CPU without it (AVX2 only, like the 2-core
    development machine) bf16 matmuls are emulated, and measured slower than fp32 there.
    """
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def lr_factor(step: int, total: int, warmup: int, schedule: str, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based): linear warm-up, then cosine."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class Trainer:
    """One training run; see :func:`train`."""

    def __init__(self, cfg: TrainConfig, documents: Sequence[Document] | None,
                 eval_documents: Sequence[Document] | None) -> None:
        import torch

        self.cfg = cfg
        self.out = Path(cfg.run.output_dir)
        # claimed by train() before any work; created (with its marker) when the run starts writing
        self.target = OutputFolder(self.out.resolve(), "train", "update")
        self.info = dist.setup(cfg.run.distributed, cfg.run.device)
        cuda = self.info.device.type == "cuda"
        use_bf16 = cfg.run.precision == "bf16" or (cfg.run.precision == "auto" and (cuda or cpu_bf16()))
        self.amp_dtype = torch.bfloat16 if use_bf16 else None
        if not cuda:
            torch.set_num_threads(cpu_threads(cfg.run.threads))
        if cfg.model.attention == "varlen" and not cuda:
            from taskmill.errors import ConfigError

            raise ConfigError([f"model.attention: varlen needs CUDA, this run is on {self.info.device.type}; "
                               "use auto or sdpa_per_doc"])
        random.seed(cfg.run.seed)
        torch.manual_seed(cfg.run.seed)
        self._load_data(documents, eval_documents)
        self._build_model()
        self._build_optimizer()
        self.plan = self._plan()
        self.total = len(self.plan) if cfg.run.max_steps is None else min(cfg.run.max_steps, len(self.plan))
        self.peak_flops = detect_peak_flops(self.info.device, cfg.run.peak_tflops)

    def _load_data(self, documents: Sequence[Document] | None, eval_documents: Sequence[Document] | None) -> None:
        cfg = self.cfg
        self.tokenizer = None
        if documents is None or (eval_documents is None and cfg.data.eval_corpus):
            self.tokenizer = load_tokenizer(cfg.model)
        if documents is None:
            from taskmill.errors import ConfigError

            if not cfg.data.corpus:
                raise ConfigError([f"data.corpus: no {self.documents_name} given"])
            documents = self._read_documents(cfg.data.corpus)
        if eval_documents is None and cfg.data.eval_corpus:
            eval_documents = self._read_documents(cfg.data.eval_corpus)
        self.docs = list(documents)
        self.eval_docs = list(eval_documents or [])
        self.lengths = [len(d) for d in self.docs]

    # What the run's documents are called in errors; subclasses with other documents override both.
    documents_name = "corpus"

    def _read_documents(self, path: str) -> list[Any]:
        """Tokenised documents of a corpus file or folder (its counts reported before training)."""
        d = self.cfg.data
        docs, report = load_documents(self.tokenizer, path, d.max_length, d.no_target)
        self.say(report.line(path, d.max_length))
        return docs

    def say(self, text: str) -> None:
        """One status line on stderr (rank 0 only)."""
        _say(text)

    def _build_model(self) -> None:
        cfg, info = self.cfg, self.info
        attn_name = attention.register(cfg.model.attention)
        lm = build_model(cfg.model, attn_name, cfg.run.seed)
        self.peft = apply_lora(lm, cfg.lora) if cfg.lora.enabled else None
        self.lm = causal_lm(self.peft) if self.peft is not None else lm
        if cfg.model.gradient_checkpointing:
            enable_gradient_checkpointing(self.peft or self.lm)
        self.lm.to(info.device)
        self.compiled = cfg.model.compile and info.device.type == "cuda"
        if self.compiled:
            compile_layers(self.lm, cfg.model.compile_attention)
        self.flops = flop_model(self.lm, lora=cfg.lora.enabled)
        self.module = self._loss_module()
        self.model = dist.wrap(self.module, info, self.lm.model.layers)

    def _loss_module(self) -> Any:
        """The module DDP/FSDP2 wrap (objectives other than SFT/CPT bring their own)."""
        return PackedLoss(self.lm, self.cfg.run.loss_chunk_tokens, self.amp_dtype,
                          compile_loss=self.compiled and self.cfg.model.compile_loss)

    def _build_optimizer(self) -> None:
        import torch

        o = self.cfg.optim
        params = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        self.params = params
        # fused: one kernel per step for all parameters. On CPU it also keeps Adam's step counters
        # as tensors beside the parameters (unfused CPU AdamW reads them with .item()), which the
        # host-read tests rely on. A checkpoint written with fused=None resumes unfused.
        self.optimizer = torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps, fused=o.fused or None)

    def _plan(self) -> list[list[int]]:
        d = self.cfg.data
        steps: list[list[int]] = []
        self.step_epoch: list[int] = []
        for epoch in range(d.epochs):
            epoch_steps = plan_epoch(self.lengths, d.tokens_per_step, self.cfg.run.seed, epoch, d.shuffle)
            steps.extend(epoch_steps)
            self.step_epoch.extend([epoch] * len(epoch_steps))
        return steps

    def _scheduler(self) -> Any:
        import torch

        o = self.cfg.optim
        fn = lambda s: lr_factor(s, self.total, o.warmup_steps, o.schedule, o.min_lr_ratio)  # noqa: E731
        return torch.optim.lr_scheduler.LambdaLR(self.optimizer, fn)

    # --- one step ---------------------------------------------------------------------------------

    def _rank_batches(self, items: Sequence[Any], lengths: Sequence[int], ids: Sequence[int], dummy: Any,
                      pad: bool) -> list[list[Any]]:
        """This rank's micro-batches of ``items[ids]``: packed, dealt out, a ``dummy`` one when it got
        none, and with ``pad`` filled up with dummies to the largest rank's count."""
        bins = pack_micro_batches(ids, lengths, self.cfg.data.micro_batch_tokens)
        ranks = deal_to_ranks(bins, lengths, self.info.world)
        mine = [[items[i] for i in b] for b in ranks[self.info.rank]] or [[dummy]]
        if pad:
            mine += [[dummy]] * (max(len(r) for r in ranks) - len(mine))
        return mine

    def _micro_batches(self, step_docs: list[int]) -> list[list[Document]]:
        """This rank's micro-batches of a step (a dummy one when it got no documents)."""
        # FSDP2 gathers weights in every pass: equal pass counts on all ranks
        return self._rank_batches(self.docs, self.lengths, step_docs, _DUMMY, self.info.mode == "fsdp2")

    def run_step(self, step_docs: list[int]) -> StepOutput:
        """Queue forward/backward over this rank's micro-batches, clipping and the optimizer step.

        Returns:
            The step's loss and gradient norm as device tensors (see :meth:`StepOutput.read`).
        """
        import torch

        count = step_target_count(step_docs, self.docs)
        scale = self.info.world / max(count, 1)
        micro = self._micro_batches(step_docs)
        total = torch.zeros((), dtype=torch.float64, device=self.info.device)
        self.model.train()
        for i, docs in enumerate(micro):
            inputs = batch_inputs(make_micro_batch(docs), self.info.device)
            with dist.no_grad_sync(self.model, self.info, sync=i == len(micro) - 1):
                loss = self.model(**inputs, scale=scale)
                loss.backward()
            total += loss.detach()
        norm, lr = self._optimizer_step()
        return StepOutput(dist.all_reduce_(total, self.info), norm, lr)

    def _optimizer_step(self) -> tuple[Any | None, float]:
        """Clip, step, advance the schedule; returns (norm tensor or None, the lr used). No host wait."""
        import torch

        norm = None
        if self.cfg.optim.max_grad_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.optim.max_grad_norm)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm, lr

    def evaluate(self) -> float | None:
        """Mean token loss over the eval documents (dropout off), or None without any."""
        import torch

        if not self.eval_docs:
            return None
        lengths = [len(d) for d in self.eval_docs]
        # equal forward count on every rank (FSDP2 all-gathers)
        mine = self._rank_batches(self.eval_docs, lengths, range(len(self.eval_docs)), _DUMMY, True)
        count = sum(d.n_targets for d in self.eval_docs)
        runner = self.model if self.info.mode == "fsdp2" else self.module
        self.model.eval()
        total = torch.zeros((), dtype=torch.float64, device=self.info.device)
        with torch.no_grad():
            for docs in mine:
                total += runner(**batch_inputs(make_micro_batch(docs), self.info.device), scale=1.0).double()
        (loss_sum,) = dist.all_reduce_sum([float(total)], self.info)
        return loss_sum / max(count, 1)

    # --- the run ----------------------------------------------------------------------------------

    def _record(self, step: int, out: StepOutput, seconds: float) -> dict[str, Any]:
        loss_sum, norm, stats = out.read()
        docs = self.plan[step]
        lengths = [self.lengths[i] for i in docs]
        targets = step_target_count(docs, self.docs)
        tokens = sum(lengths)
        rec: dict[str, Any] = {
            "step": step + 1, "epoch": self.step_epoch[step], "loss": loss_sum / self.info.world, "lr": out.lr,
            "grad_norm": norm, "tokens": tokens, "target_tokens": targets, "docs": len(docs),
            "step_s": seconds, "tokens_per_s": tokens / seconds if seconds else None,
            "peak_mem_gb": peak_memory_gb(self.info.device), "mfu": None, "mfu_6n": None,
        }
        rec.update(self._stats_fields(stats))
        if self.peak_flops and seconds:
            budget = self.peak_flops * seconds * self.info.world
            rec["mfu"] = self.flops.step_flops(lengths, targets) / budget
            rec["mfu_6n"] = self.flops.step_flops_6n(lengths) / budget
        return rec

    def _stats_fields(self, stats: list[float]) -> dict[str, Any]:
        """Extra record fields from :attr:`StepOutput.stats` (objectives that return some override)."""
        return {}

    def _resume(self) -> int:
        path = checkpoint.latest(self.out)
        if path is None:
            self.say(f"starting: {self.total} steps into {self.out}")
            return 0
        state = checkpoint.load(path, self.lm, self.model, self.optimizer, self.scheduler, self.info)
        step = int(state["step"])
        dropped = resume.truncate_log(self.out, step) if self.info.main else 0
        self.say(f"resuming from step {step} of {self.total} ({path})"
                 + (f"; dropped {dropped} log lines written after that checkpoint" if dropped else ""))
        return step

    def _checkpoint(self, step: int) -> None:
        extra = {"total_steps": self.total, "config": resume.comparable(self.cfg)}
        checkpoint.save(self.out, step, self.lm, self.model, self.optimizer, self.scheduler,
                        self.info, extra, self.cfg.run.keep_checkpoints)

    def run(self, stop_after: int | None = None) -> TrainResult:
        """Run (or resume) to ``total`` steps; ``stop_after`` ends early without saving (tests)."""
        existed = self.out.exists()
        before = set(self.out.iterdir()) if existed else set()
        try:
            if self.info.main:
                self.target.ensure()
                (self.out / resume.FINISHED).unlink(missing_ok=True)  # --force-config on a finished run
                save_config(self.cfg, self.out / "config.yaml")
            self.scheduler = self._scheduler()
            start = self._resume()
            if start == 0 and self.info.main:
                resume.truncate_log(self.out, 0)  # no checkpoint: a killed run's lines go
            return self._run(start, stop_after)
        except BaseException:
            if self.info.main and not before:
                self._leave_nothing(existed)
            raise

    def _leave_nothing(self, existed: bool) -> None:
        """After a failure: a fresh run that logged no step and saved no checkpoint leaves nothing."""
        if (self.out / resume.LOG).is_file() or checkpoint.latest(self.out) is not None:
            return
        if not existed:
            shutil.rmtree(self.out, ignore_errors=True)
            return
        for child in self.out.iterdir():  # the user's empty folder stays
            shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)

    def _run(self, start: int, stop_after: int | None) -> TrainResult:
        r = self.cfg.run
        end = self.total if stop_after is None else max(start, min(self.total, stop_after))
        result = TrainResult(self.out)
        log = RunLog(self.out / resume.LOG if self.info.main else None, self.total, start, r.progress,
                     r.progress_every_s)
        clock = StepClock(self.info.device)
        pending: tuple[int, StepOutput, Any, Any] | None = None

        def finish() -> None:
            # reads the previous step's numbers: by now the next step is queued behind it
            nonlocal pending
            if pending is None:
                return
            step, out, began, ended = pending
            pending = None
            rec = self._record(step, out, clock.seconds(began, ended))
            result.records.append(rec)
            if (step + 1) % r.log_every == 0 or step + 1 == self.total:
                log.write(rec)

        try:
            last = clock.mark()
            for step in range(start, end):
                try:
                    out = self.run_step(self.plan[step])
                except BaseException:
                    with contextlib.suppress(Exception):
                        finish()  # the step before ran to the end: keep its record
                    raise
                out.stage()
                mark = clock.mark()
                finish()
                pending, last = (step, out, last, mark), mark
                n = step + 1
                eval_now = bool(r.eval_every) and n % r.eval_every == 0 and n < self.total
                save_now = bool(r.save_every) and n % r.save_every == 0 and n < self.total
                if eval_now or save_now:
                    finish()
                    if eval_now:
                        log.write({"step": n, "eval_loss": self.evaluate()})
                    if save_now:
                        self._checkpoint(n)
                    last = clock.mark()  # the pause is not the next step's time
            finish()
            if end < self.total:
                return result
            result.eval_loss = self.evaluate()
            if result.eval_loss is not None:
                log.write({"step": self.total, "eval_loss": result.eval_loss})
            if r.save_final:
                result.saved = self.save_final()
            if self.info.main:
                resume.write_finished(self.out, self.cfg, self.total, result.saved, result.eval_loss)
        finally:
            log.close()
        return result

    def save_final(self) -> Path:
        """Save the adapter (PEFT format) or the full model, with the tokenizer when known."""
        from taskmill.trainer.export import save_trained

        return save_trained(self, self.out)


def train(cfg: TrainConfig, documents: Sequence[Document] | None = None,
          eval_documents: Sequence[Document] | None = None, stop_after: int | None = None,
          *, overwrite: bool = False, force_config: bool = False) -> TrainResult:
    """Train per ``cfg`` on its corpus (or on pre-tokenised ``documents``).

    Args:
        cfg: The validated config.
        documents: Pre-tokenised training documents (skips reading ``data.corpus``).
        eval_documents: Pre-tokenised held-out documents.
        stop_after: Stop after this many steps without saving (for tests of resume).
        overwrite: Write into ``run.output_dir`` even when it is not an earlier training run.
        force_config: Continue a run (from its checkpoint, or a finished one) although its
            recorded config differs from ``cfg`` in settings that shape the result.

    Returns:
        The :class:`TrainResult` (of the earlier run, with no records, when ``run.output_dir``
        holds a finished run of the same config).

    Raises:
        ConfigError: the folder's checkpoint or finished run has another config (without
            ``force_config``), or the config cannot run (bad model path, ...).
    """
    from taskmill.trainer.objectives import trainer_class

    inputs = [p for p in (cfg.data.corpus, cfg.data.eval_corpus, cfg.model.path, cfg.model.tokenizer,
                          cfg.model.init_adapter) if p]
    claim_output(cfg.run.output_dir, "train", inputs=inputs, overwrite=overwrite, mode="update")
    done = _finished_run(cfg, force_config)
    if done is not None:
        return done
    ck = checkpoint.latest(Path(cfg.run.output_dir))
    if ck is not None:
        state = checkpoint.read_state(ck)
        diffs = resume.refuse_changed(f"checkpoint {ck}", state.get("config"), cfg, force_config)
        if diffs:
            _say(f"--force-config: resuming {ck} with changed settings: {'; '.join(diffs)}")
    trainer = trainer_class(cfg)(cfg, documents, eval_documents)
    try:
        return trainer.run(stop_after)
    finally:
        dist.teardown(trainer.info)


def _say(text: str) -> None:
    import os

    if os.environ.get("RANK", "0") == "0":
        print(f"taskmill train: {text}", file=sys.stderr, flush=True)


def _finished_run(cfg: TrainConfig, force_config: bool) -> TrainResult | None:
    """The earlier result when ``run.output_dir`` holds a finished run of this config, else None."""
    out = Path(cfg.run.output_dir)
    done = resume.finished(out)
    if done is None:
        return None
    diffs = resume.refuse_changed(f"finished run {out}", done.get("config"), cfg, force_config)
    if diffs:
        _say(f"--force-config: continuing the finished run {out} with changed settings: {'; '.join(diffs)}")
        return None
    saved = out / done["saved"] if done.get("saved") else None
    _say(f"{out} already holds this finished run ({done.get('steps')} steps"
         + (f", {saved}" if saved else "") + "); nothing to do")
    return TrainResult(out, eval_loss=done.get("eval_loss"), saved=saved)
