"""Train one run and record every checkpoint in the run store; resumable after a crash at any instant.

Order of writes at a checkpoint: the row first (checkpoints.parquet), then state.pt. On resume, rows beyond
state.pt's step are dropped and redone, so a kill -9 never leaves a duplicate or a gap.
Randomness is re-seeded from (seed, epoch) at every epoch, so a resumed run repeats the epochs it lost exactly.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import functools
import io
import math
import platform
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import __version__
from ..config import ModelConfig, RunConfig, TrainConfig
from ..data.batches import Batch, PopularitySampler, TrainingWindows
from ..data.datasets import load_tables
from ..data.split import Split, leave_one_out
from ..data.text import TextOptions, item_token_arrays
from ..errors import ScalerecError
from ..model.recommender import SequentialRecommender, TrainingStep, build_recommender
from ..store.provenance import TRAINING_SEMANTICS, code_provenance, config_semantics, stale_message
from ..store.runstore import CONFIG, TOKENIZER, RunStore, atomic_write_bytes
from ..store.schema import FLOPS_CONVENTION, SCHEMA_VERSION
from .evaluate import Evaluator
from .flops import FlopCounter, analytic_forward_macs, executed_forward_macs, train_flops


@dataclass(frozen=True)
class PreparedData:
    name: str
    fingerprint: str
    split: Split
    text: dict[str, Any] | None


def prepare_data(cfg: RunConfig, tokenizer: bytes | None = None) -> PreparedData:
    """Canonical tables -> leave-one-out split (+ SentencePiece token arrays for the text encoder, with the given
    serialized SentencePiece model or one trained on this catalog)."""
    tables = load_tables(cfg.data)
    split = leave_one_out(tables, with_times=cfg.model.hstu_time_bias)
    text = None
    if cfg.model.item_encoder == "text":
        titles, brands = tables.items.title.tolist(), tables.items.brand.tolist()
        if not any(t.strip() for t in titles + brands):
            raise ScalerecError(f"{tables.name}: no item has a title or brand; use model.item_encoder = 'id'")
        title, brand, vocab, model = item_token_arrays(
            titles, brands, text_options(cfg.model), tables.fingerprint, tokenizer
        )
        text = {"title_tokens": title, "brand_tokens": brand, "vocab_size": vocab, "tokenizer": model}
    return PreparedData(tables.name, tables.fingerprint, split, text)


def text_options(model: ModelConfig) -> TextOptions:
    return TextOptions(
        model.vocab_size,
        model.tokenizer,
        model.text_normalise,
        model.title_tokens,
        model.brand_tokens,
        model.empty_brand,
    )


DEVICES = "auto (CUDA when present), cpu, cuda, cuda:N, mps"


def resolve_device(name: str = "auto", *, here: bool = True) -> torch.device:
    """The torch device `name` names, checked before anything is written: a clear error for a name torch does not
    know and (with `here`, i.e. not for a remote Dask worker) for a device this machine does not have."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise ScalerecError(f"device {name!r}: unknown (known: {DEVICES})") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise ScalerecError(f"device {name!r}: scalerec trains on {DEVICES}")
    if here and device.type == "cuda":
        if not torch.cuda.is_available():
            build = "built without CUDA" if torch.version.cuda is None else "with no visible GPU"
            raise ScalerecError(f"device {name!r}: not available (torch {torch.__version__} {build}); use cpu or auto")
        if (device.index or 0) >= torch.cuda.device_count():
            raise ScalerecError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if here and device.type == "mps" and not torch.backends.mps.is_available():
        raise ScalerecError(f"device {name!r}: MPS is not available on this machine; use cpu or auto")
    return device


TRIM_EVERY = 32  # steps between returns of freed memory to the OS


@functools.cache
def _libc_malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError, TypeError):  # not glibc (macOS, musl): nothing to do
        return None


def release_freed_memory() -> None:
    """Return freed heap memory to the OS (glibc's malloc_trim). Batches trimmed to their longest window change
    shape every step, and glibc keeps the freed blocks of those tensors: on 5-core Beauty a run's resident memory
    grew from 0.5 GB to 15 GB in 7 epochs without this (measured), with it it stays at about 0.6 GB."""
    trim = _libc_malloc_trim()
    if trim is not None:
        trim(0)


def one_cycle(step: int, total: int, warmup_fraction: float) -> float:
    """LR multiplier: linear warm-up over the first `warmup_fraction` of the steps, then cosine decay to 0."""
    warmup = max(1, round(total * warmup_fraction))
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def warmup_stable_decay(step: int, end: int, warmup: int, decay: int, shape: str) -> float:
    """LR multiplier of a warmup-stable-decay run that ends at step `end`: linear warm-up over `warmup` steps, 1, then
    down to 0 over the last `decay` steps, as 1 - sqrt(k) or 1 - k of the decay's progress k (Hägele et al. 2024)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, max(0.0, (step - (end - decay)) / decay))
    return 1.0 - (math.sqrt(progress) if shape == "1-sqrt" else progress)


@dataclass(frozen=True)
class Cooldown:
    """A branch of a WSD run: it leaves the stable phase at step `start` and decays until step `end`, the annealed
    end of a run `fraction` as long as the one planned."""

    fraction: float
    start: int
    end: int


def wsd_steps(train: TrainConfig, total_steps: int) -> tuple[int, int, list[Cooldown]]:
    """(warm-up steps, the run's own decay steps, its branches) for `total_steps` planned steps; a cooldown at 1 is
    the run's own end, not a branch."""
    warmup = max(1, round(total_steps * train.warmup_fraction))
    branches = []
    for fraction in train.branches:
        end = round(fraction * total_steps)
        if end >= total_steps:  # a fraction so near 1 that this run's steps cannot tell it from its end
            continue
        decay = max(1, round(end * train.cooldown_share))
        if branches and end <= branches[-1].end or end - decay < 1:
            raise ScalerecError(
                f"train.cooldowns: {fraction:g} of {total_steps} steps falls on a step of another cooldown or before "
                "the first: too many cooldowns for so short a run"
            )
        branches.append(Cooldown(fraction, end - decay, end))
    return warmup, max(1, round(total_steps * train.cooldown_share)), branches


def sampler_for(cfg: RunConfig, split: Split) -> PopularitySampler:
    """Training negatives: by popularity (sampled softmax, whose logQ corrects for it), uniform for bce (SASRec)."""
    counts = split.train_counts()
    if cfg.train.loss == "bce":
        return PopularitySampler(np.ones_like(counts))
    return PopularitySampler(counts, cfg.train.popularity_smoothing)


def _random_states() -> tuple[torch.Tensor, list[torch.Tensor]]:
    """torch's global random states (dropout): CPU, and every CUDA device's when CUDA is initialised."""
    return torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []


def _set_random_states(states: tuple[torch.Tensor, list[torch.Tensor]]) -> None:
    torch.set_rng_state(states[0])
    if states[1]:
        torch.cuda.set_rng_state_all(states[1])


def _clocks() -> tuple[float, float]:
    """(wall, CPU) seconds now: the CPU time is the process's, all threads, so not counted while it waits for a busy
    core or is stopped."""
    return time.perf_counter(), time.process_time()


def make_optimizer(model: torch.nn.Module, cfg: RunConfig) -> torch.optim.Adam:
    """Adam (weight decay as L2 on the gradient); on matrices and embeddings only (not biases and LayerNorm gains),
    or on every parameter (train.weight_decay_on = 'all', the reference's)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decayed = (lambda p: True) if cfg.train.weight_decay_on == "all" else (lambda p: p.dim() >= 2)
    groups = [
        {"params": [p for p in params if decayed(p)], "weight_decay": cfg.train.weight_decay},
        {"params": [p for p in params if not decayed(p)], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    try:  # the fused kernel: one pass per tensor instead of ~10 (measured: the step's Adam 3-7x faster on CPU, where a
        # 30,000-piece token table makes Adam a third of the step); the same update up to float rounding
        return torch.optim.Adam(groups, lr=cfg.train.lr, fused=True)
    except (RuntimeError, ValueError):  # torch < 2.4 has no fused Adam on CPU
        return torch.optim.Adam(groups, lr=cfg.train.lr)


def make_scheduler(optimizer: torch.optim.Optimizer, train: TrainConfig, total_steps: int, offset: int = 0):
    """The learning-rate schedule over `total_steps` optimizer steps (from step `offset`, for a switch of
    optimizer mid-run): ours (linear warm-up, cosine to 0), PyTorch's OneCycleLR as the reference uses it, a
    constant rate (plain Adam, as ICLRec's SASRec trains) or warmup-stable-decay (its branches: Trainer)."""
    if train.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    if train.schedule == "wsd":
        warmup, decay, _ = wsd_steps(train, total_steps)
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: warmup_stable_decay(s, total_steps, warmup, decay, train.decay_shape)
        )
    if train.schedule == "torch-one-cycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=[g["lr"] for g in optimizer.param_groups],
            total_steps=max(total_steps, 2),
            pct_start=train.warmup_fraction,
            anneal_strategy="cos",
            div_factor=25.0,
            final_div_factor=0.1,
            cycle_momentum=isinstance(optimizer, torch.optim.Adam),
            base_momentum=0.85,
            max_momentum=0.95,
        )
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: one_cycle(offset + s, total_steps, train.warmup_fraction)
    )


def train_run(
    cfg: RunConfig,
    store: RunStore,
    *,
    device: str = "auto",
    threads: int | None = None,
    progress: bool = True,
    max_epochs: int | None = None,
    accept_stale: bool = False,
) -> str:
    """Train (or resume, or skip if DONE) the run `cfg` in `store`; returns 'done', 'skipped' or 'paused'.

    A run started by code of other training semantics (store/provenance.py) is an error unless `accept_stale`,
    which skips it when done and resumes it otherwise (its rows then record both semantics).
    `max_epochs` stops after that many epochs in this call (the run stays resumable): for tests and time slicing.
    """
    run_id = cfg.run_id
    store.require_intact(run_id)
    check_semantics(store, run_id, accept_stale)
    if store.status(run_id) == "done":
        return "skipped"
    torch_device = resolve_device(device)
    with store.claim(run_id):
        if threads:
            torch.set_num_threads(threads)
        return Trainer(cfg, store, torch_device, progress).run(max_epochs)


def check_semantics(store: RunStore, run_id: str, accept_stale: bool) -> None:
    """Refuse to skip or resume a run that code of other training semantics started, unless accepted."""
    semantics = store.semantics(run_id)
    if semantics is not None and semantics != TRAINING_SEMANTICS and not accept_stale:
        raise ScalerecError(stale_message(run_id, semantics))


@dataclass
class Counters:
    """What a run has done so far: saved in state.pt (as a dict) at every checkpoint and read back on resume."""

    step: int = 0  # optimizer steps
    epoch: int = 0
    seen: int = 0  # T: training targets that entered the loss
    macs: float = 0.0  # forward MACs, fvcore's count (C = 6 x this)
    analytic: float = 0.0  # forward MACs by formula (the cross-check)
    executed: float = 0.0  # FLOPs actually run (trimmed windows, distinct items)
    wall: float = 0.0  # seconds
    cpu: float = 0.0  # the training process's CPU seconds
    eval_wall: float = 0.0  # seconds of `wall` spent evaluating
    best_valid_loss: float = math.inf  # for the Adam -> SGD switch
    sgd_from_step: int = -1  # the step SGD took over (-1: Adam still)
    best_valid: float = -math.inf  # for early stopping
    since_best: int = 0  # checkpoints without a better validation metric

    @classmethod
    def from_state(cls, saved: dict[str, Any]) -> Counters:
        """A state.pt written before a counter existed resumes that counter as unknown (NaN), not as zero."""
        return cls(**{"executed": math.nan, "cpu": math.nan, "eval_wall": math.nan, **saved})


class Trainer:
    """One run's training loop: `step()` is one optimizer step on one batch (the cost probe and the benchmarks time
    it), `run()` the epochs with their checkpoints. Fine-tuning (finetune.py) subclasses it through the hooks at
    the end. Nothing is written before run()."""

    def __init__(
        self,
        cfg: RunConfig,
        store: RunStore,
        device: torch.device,
        progress: bool,
        run_id: str | None = None,
        tokenizer: bytes | None = None,
    ) -> None:
        self.cfg, self.store, self.device, self.progress = cfg, store, device, progress
        self.run_id = run_id or cfg.run_id
        self.data = prepare_data(cfg, tokenizer)
        split = self.data.split
        if cfg.train.negatives >= split.n_items:  # prepared data
            raise ScalerecError(
                f"train.n_negatives ({cfg.train.n_negatives}) must be below the catalog size ({split.n_items} items)"
            )
        if cfg.train.precision == "bf16" and device.type != "cuda":
            raise ScalerecError(
                f"train.precision = 'bf16' needs a CUDA device (this run is on {device}); use 'fp32' on CPU"
            )
        self.windows = TrainingWindows(split, cfg.model.max_len, cfg.train.targets, cfg.train.prefix_batches)
        self.sampler = sampler_for(cfg, split)
        torch.manual_seed(cfg.seed)
        self.model: SequentialRecommender = build_recommender(cfg.model, split.n_items, self.data.text).to(device)
        self.step_module = TrainingStep(self.model, cfg.train, self.sampler.log_q, split.n_items).to(device)
        self.optimizer = make_optimizer(self.model, cfg)
        self.steps_per_epoch = self.windows.batches_per_epoch(cfg.train.batch_size, cfg.train.batch_targets)
        self.total_steps = cfg.train.epochs * self.steps_per_epoch
        self.scheduler = make_scheduler(self.optimizer, cfg.train, self.total_steps)
        wsd = cfg.train.schedule == "wsd"
        self.warmup_steps, _, self.cooldowns = wsd_steps(cfg.train, self.total_steps) if wsd else (0, 0, [])
        self.cooldowns_done: set[float] = set()  # branches whose rows are recorded
        self.checkpoint_epochs = set(cfg.train.checkpoint_epochs)
        self.evaluator = Evaluator(split, cfg.model.max_len, cfg.train)
        self.flops = FlopCounter(self.step_module, cfg)
        self.counters = Counters()

    # -- persistence -------------------------------------------------------------------------------------------
    def _write_config(self) -> None:
        self._recorded_ops = set(self.flops.unsupported_ops)
        split, env = (
            self.data.split,
            {
                "scalerec": __version__,
                "torch": torch.__version__,
                "python": platform.python_version(),
                "device": str(self.device),
                "threads": torch.get_num_threads(),
                "host": platform.node(),
            },
        )
        if self.data.text is not None:  # the run carries its tokenizer: fine-tuning reads a new catalog with it
            path = self.store.run_dir(self.run_id) / TOKENIZER
            if not path.exists():
                atomic_write_bytes(path, self.data.text["tokenizer"])
        provenance = code_provenance()
        path = self.store.run_dir(self.run_id) / CONFIG
        previous = self.store.read_config(self.run_id) if path.exists() else {}
        history = previous.get("provenance_history", [])  # every code that wrote rows of this run, in order
        if not history or history[-1] != provenance:
            history = [*history, provenance]
        self.store.write_config(
            self.run_id,
            {
                **self._config_extras(),
                "provenance": provenance,
                "provenance_history": history,
                # the semantics the run started under, kept on resume: a run resumed by other code stays marked
                "training_semantics": config_semantics(previous) if previous else TRAINING_SEMANTICS,
                "schema_version": SCHEMA_VERSION,
                "run_id": self.run_id,
                "config": self.cfg.to_dict(),
                "environment": env,
                "planned_steps": self.total_steps,
                "flops_convention": FLOPS_CONVENTION,
                "sgd_from_step": self.counters.sgd_from_step if self.counters.sgd_from_step >= 0 else None,
                "fvcore_unsupported_ops": sorted(self._recorded_ops),
                "dataset": {
                    "name": self.data.name,
                    "fingerprint": self.data.fingerprint,
                    "n_users": split.n_users,
                    "n_items": split.n_items,
                    "dataset_interactions": split.n_train_interactions,
                    "users_dropped_short": split.dropped_users,
                },
            },
        )

    def _save_state(self) -> None:
        buffer = io.BytesIO()
        torch.save(
            {
                "counters": asdict(self.counters),
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
            },
            buffer,
        )
        atomic_write_bytes(self.store.state_path(self.run_id), buffer.getvalue())

    def _resume(self) -> None:
        path = self.store.state_path(self.run_id)
        if not path.exists():
            self.store.drop_rows_after(self.run_id, -1)  # rows without a state to continue from are redone
            return
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state["counters"].get("sgd_from_step", -1) >= 0:  # the saved optimizer state is SGD's
            self._switch_to_sgd(state["counters"]["sgd_from_step"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        # states from before a counter existed: defaults, except the executed work and the CPU time, which are
        # unknown (NaN), not 0
        self.counters = Counters.from_state(state["counters"])
        self.store.drop_rows_after(self.run_id, self.counters.step)
        rows = self.store.read_rows(self.run_id)
        if "cooldown" in rows.columns:
            self.cooldowns_done = set(rows.cooldown.dropna().tolist())

    # -- the loop ----------------------------------------------------------------------------------------------
    def run(self, max_epochs: int | None) -> str:
        self._resume()  # replaces self.counters: read it only after this
        self.store.clear_failure(self.run_id)  # a rerun tries again from the last good state
        self._write_config()
        cfg, c = self.cfg, self.counters
        end_epoch = cfg.train.epochs if max_epochs is None else min(cfg.train.epochs, c.epoch + max_epochs)
        self.model.train()
        with tqdm(
            total=self.total_steps,
            initial=c.step,
            desc=f"run {self.run_id}",
            unit="step",
            disable=not self.progress,
            leave=False,
            dynamic_ncols=True,
        ) as bar:  # closed before any error
            while c.epoch < end_epoch and not self._stopped_early():
                started = self._epoch_started = _clocks()
                loss_sum, loss_n = self._train_epoch(bar)
                c.epoch += 1
                if c.epoch in self.checkpoint_epochs:
                    self._checkpoint(loss_sum / max(loss_n, 1), started)
                    release_freed_memory()  # evaluation's buffers too
                else:
                    self._count_time(started)
        if c.epoch < cfg.train.epochs and not self._stopped_early():
            return "paused"
        self.store.mark_done(self.run_id)
        return "done"

    def _epoch_seed(self, epoch: int) -> int:
        """Every random number of an epoch comes from (seed, epoch): a resumed run repeats the epochs it lost."""
        return self.cfg.seed * 1_000_003 + epoch

    def _train_epoch(self, bar: tqdm) -> tuple[float, int]:
        base = self._epoch_seed(self.counters.epoch)
        torch.manual_seed(base)  # dropout
        generator = torch.Generator().manual_seed(base + 7919)  # order and negatives
        loss_sum, loss_n = 0.0, 0
        self._begin_epoch()
        for batch in self.epoch_batches(generator):
            if branch := self._cooldown_due():
                self._run_cooldown(branch, loss_n, generator, bar)
            loss_sum, loss_n = loss_sum + self.step(batch, generator), loss_n + 1
            bar.update(1)
            if loss_n % TRIM_EVERY == 0:
                release_freed_memory()
        return loss_sum, loss_n

    def epoch_batches(self, generator: torch.Generator) -> Iterator[Batch]:
        train = self.cfg.train
        return self.windows.epoch(train.batch_size, generator, train.batch_targets, train.length_pool)

    def step(self, batch: Batch, generator: torch.Generator, scheduled: bool = True) -> float:
        """One optimizer step on `batch` (negatives drawn from `generator`); counts its FLOPs and targets and
        returns the loss. A non-finite loss marks the run FAILED before any weight changes. `scheduled`: the
        run's schedule sets the next step's learning rate (a cooldown branch sets its own)."""
        cfg, c = self.cfg, self.counters
        negatives = self.sampler.for_batch(batch, cfg.train.negatives, cfg.train.negatives_per_target, generator)
        tensors = batch.step_inputs(negatives)
        if self.device.type == "cuda":  # pinned pages let the copy overlap the previous step's kernels
            tensors = tuple(t.pin_memory() for t in tensors)
        tensors = tuple(t.to(self.device, non_blocking=True) for t in tensors)
        c.macs += self.flops(batch)
        c.analytic += analytic_forward_macs(cfg, batch, self.data.split.n_items)
        loss = self.step_module(*tensors) + self._penalty()
        c.executed += executed_forward_macs(cfg, batch, self.step_module.work)
        if not torch.isfinite(loss):  # stop before the step: no NaN weights, no garbage rows
            message = (
                f"run {self.run_id}: training loss is {loss.item()} at step {c.step} (epoch "
                f"{c.epoch + 1}); lower train.lr or check the data"
            )
            self.store.mark_failed(self.run_id, message)
            raise ScalerecError(message)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.train.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.train.clip_norm)
        self.optimizer.step()
        if scheduled and c.step < self.total_steps:  # OneCycleLR refuses a step past its plan (a resumed run's last)
            self.scheduler.step()
        c.step += 1
        c.seen += batch.n_targets
        return loss.item()

    def _count_time(self, started: tuple[float, float]) -> None:
        wall, cpu = _clocks()
        self.counters.wall += wall - started[0]
        self.counters.cpu += cpu - started[1]

    def _checkpoint(self, train_loss: float, started: tuple[float, float]) -> None:
        cfg, c = self.cfg, self.counters
        every_pass = cfg.train.slice_passes == "every"
        metrics = self._evaluate("valid", every_pass)
        self._track_best(metrics)
        final = c.epoch == cfg.train.epochs or self._stopped_early()
        if final and not every_pass:  # the slices with passes of their own, at the point laws are fitted on
            metrics |= self._evaluate("valid", True, main=False)
        selectable = c.since_best == 0 or not cfg.train.test_when_best  # best-on-validation could pick this one
        if final or (cfg.train.test_every_checkpoint and selectable):
            metrics |= self._test_metrics(final or every_pass)
        self._count_time(started)
        row = self._row(metrics, train_loss, final, c.step / self.total_steps, self.scheduler.get_last_lr()[0])
        if self.cooldowns:  # the run's own trajectory, not a branch
            row |= {"cooldown": math.nan, "branch_step": -1}
        self.store.append_row(self.run_id, row)
        self._maybe_switch_to_sgd(row["valid_loss"])
        self._save_state()
        if self.flops.unsupported_ops != self._recorded_ops:  # first counts happen after the config was written
            self._write_config()

    def _evaluate(self, which: str, slice_passes: bool, main: bool = True) -> dict[str, float]:
        """The evaluator's metrics of the model as it is now; its time counted in eval_wall."""
        started = time.perf_counter()
        metrics = self.evaluator.evaluate(self.model, which, self.device, slice_passes, main)
        self.counters.eval_wall += time.perf_counter() - started
        return metrics

    def _test_metrics(self, slice_passes: bool = True) -> dict[str, float]:
        return {k: v for k, v in self._evaluate("test", slice_passes).items() if k != "test_loss"}

    def _row(
        self, metrics: dict[str, float], train_loss: float, final: bool, schedule_fraction: float, lr: float
    ) -> dict[str, Any]:
        """A checkpoint row (store/schema.py) of the model as it is now, with its evaluation `metrics`."""
        cfg, c, split = self.cfg, self.counters, self.data.split
        params = self.model.param_counts()
        return {
            "run_id": self.run_id,
            "step": c.step,
            "epoch": c.step / self.steps_per_epoch,
            "schedule_fraction": schedule_fraction,
            "is_final": final,
            "seen_interactions": c.seen,
            "dataset_interactions": split.n_train_interactions,
            "train_flops": train_flops(c.macs),
            "forward_macs": c.macs,
            "analytic_flops": train_flops(c.analytic),
            "executed_flops": train_flops(c.executed),
            **params,
            "n_layers": cfg.model.n_layers,
            "n_heads": cfg.model.n_heads,
            "hidden": cfg.model.hidden,
            "inner_size": cfg.model.ffn_size,
            "block": cfg.model.block,
            "attention_dim": cfg.model.attention_dim,
            "linear_dim": cfg.model.linear_dim,
            "item_encoder": cfg.model.item_encoder,
            "loss": cfg.train.loss,
            "n_negatives": cfg.train.negatives,
            "dataset": self.data.name,
            "n_users": split.n_users,
            "n_items": split.n_items,
            "valid_loss": metrics["valid_loss"],
            "train_loss": train_loss,
            "lr": lr,
            "wall_time_s": c.wall,
            "cpu_time_s": c.cpu,
            "eval_time_s": c.eval_wall,
            "training_semantics": TRAINING_SEMANTICS,
            "eval_protocol": cfg.train.protocol,
            **{k: v for k, v in metrics.items() if k != "valid_loss"},
            **self._row_extras(),
        }

    # -- warmup-stable-decay: annealed branches off the stable phase -------------------------------------------------
    def _cooldown_due(self) -> Cooldown | None:
        step = self.counters.step
        return next((b for b in self.cooldowns if b.start == step and b.fraction not in self.cooldowns_done), None)

    def _run_cooldown(self, branch: Cooldown, position: int, generator: torch.Generator, bar: tqdm) -> None:
        """Decay a copy of the run from here to branch.end as a WSD run of that length would, record its annealed
        row, then put the run back exactly where it left the stable phase (weights, optimizer, counters, random
        streams). The branch trains on the batches the run takes next. Nothing is saved for the branch itself: a
        crash inside it redoes it from the last state.pt, with the same result."""
        c, train = self.counters, self.cfg.train
        # the weights and optimizer to come back to, in host memory (a GPU holds only the branch's copy)
        stable = io.BytesIO()
        torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}, stable)
        saved = (stable, dataclasses.replace(c), _random_states())
        base_lrs = list(self.scheduler.base_lrs)
        batches = self._batches_from(c.epoch, position, generator.get_state())
        bar.set_postfix_str(f"cooldown {branch.fraction:g}")
        loss_sum, steps = 0.0, branch.end - branch.start
        for done in range(steps):
            multiplier = warmup_stable_decay(c.step, branch.end, self.warmup_steps, steps, train.decay_shape)
            for group, base in zip(self.optimizer.param_groups, base_lrs):
                group["lr"] = base * multiplier
            batch, batch_generator = next(batches)
            loss_sum += self.step(batch, batch_generator, scheduled=False)
            if (done + 1) % TRIM_EVERY == 0:
                release_freed_memory()
        metrics = self._evaluate("valid", True) | self._test_metrics()
        branch_eval = c.eval_wall - saved[1].eval_wall
        wall, cpu = _clocks()  # the branch's cost: the run's up to where it left, then its own steps
        c.wall = saved[1].wall + wall - self._epoch_started[0]
        c.cpu = saved[1].cpu + cpu - self._epoch_started[1]
        row = self._row(metrics, loss_sum / steps, False, 1.0, 0.0)  # decayed to 0
        self.store.append_row(self.run_id, row | {"cooldown": branch.fraction, "branch_step": branch.start})
        self.cooldowns_done.add(branch.fraction)
        saved[0].seek(0)
        stable = torch.load(saved[0], map_location=self.device, weights_only=True)
        self.model.load_state_dict(stable["model"])
        self.optimizer.load_state_dict(stable["optimizer"])
        vars(c).update(vars(saved[1]))  # in place: the loop holds this object
        c.eval_wall += branch_eval  # the run's wall time will include the branch, evaluation and all
        _set_random_states(saved[2])
        bar.set_postfix_str("")
        release_freed_memory()

    def _batches_from(
        self, epoch: int, position: int, generator_state: torch.Tensor
    ) -> Iterator[tuple[Batch, torch.Generator]]:
        """The batches the run itself takes from batch `position` of `epoch` on, each with the generator its
        negatives come from: the epoch's order is drawn again from its seed, then the generator is set to where
        the run's stands; later epochs are seeded as the run seeds them."""
        generator = torch.Generator().manual_seed(self._epoch_seed(epoch) + 7919)
        batches = iter(self.epoch_batches(generator))
        for _ in range(position):  # the first draws the epoch's order
            next(batches)
        first = next(batches)
        generator.set_state(generator_state)
        yield first, generator
        for batch in batches:
            yield batch, generator
        while True:
            epoch += 1
            torch.manual_seed(self._epoch_seed(epoch))
            generator = torch.Generator().manual_seed(self._epoch_seed(epoch) + 7919)
            for batch in self.epoch_batches(generator):
                yield batch, generator

    def _track_best(self, metrics: dict[str, float]) -> None:
        c, value = self.counters, metrics[self.selection_metric]
        if value > c.best_valid:
            c.best_valid, c.since_best = value, 0
        else:
            c.since_best += 1

    def _stopped_early(self) -> bool:
        """Early stopping (train.early_stop_patience): the reference's `stopping_step`, on the selection metric."""
        patience = self.cfg.train.early_stop_patience
        return bool(patience) and self.counters.since_best >= patience

    @property
    def selection_metric(self) -> str:
        """The validation metric that early stopping (and best-on-validation reporting) follows."""
        return f"valid_ndcg_at_{self.cfg.train.eval_ks[0]}"

    # -- LSRM: Adam -> SGD at the switchover point ------------------------------------------------------------------
    def _maybe_switch_to_sgd(self, valid_loss: float) -> None:
        """Switch at the first checkpoint whose validation loss does not improve on the best so far."""
        c = self.counters
        if not self.cfg.train.sgd_switch or c.sgd_from_step >= 0:
            return
        if valid_loss >= c.best_valid_loss and c.epoch < self.cfg.train.epochs:
            self._switch_to_sgd(c.step)
            self._write_config()
        c.best_valid_loss = min(c.best_valid_loss, valid_loss)

    def _switch_to_sgd(self, step: int) -> None:
        groups = [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in self.optimizer.param_groups]
        train = self.cfg.train
        self.optimizer = torch.optim.SGD(groups, lr=train.sgd_lr, momentum=train.sgd_momentum)
        self.scheduler = make_scheduler(self.optimizer, train, self.total_steps, offset=step)  # goes on from `step`
        self.counters.sgd_from_step = step

    # -- hooks for fine-tuning -----------------------------------------------------------------------------------
    def _begin_epoch(self) -> None:
        """Called before each epoch's first step (fine-tuning changes what is trainable here)."""

    def _penalty(self) -> torch.Tensor | float:
        """Added to the loss (fine-tuning: the EWC term)."""
        return 0.0

    def _row_extras(self) -> dict[str, Any]:
        return {}

    def _config_extras(self) -> dict[str, Any]:
        return {}
