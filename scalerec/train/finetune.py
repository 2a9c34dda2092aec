"""Pre-train -> fine-tune on a new domain (SRT paper, Table 4): progressive unfreezing, Elastic Weight Consolidation.

Stages: the top transformer layer (with the final norm) for `layer_epochs`, then the next layer down as well, and so
on to the bottom; then everything, token embeddings included, for `embedding_epochs`. Each stage has its own Adam and
one-cycle schedule at `lr`. EWC adds λ/2 · Σ F_i (θ_i − θ*_i)² with θ* the pre-trained weights and F the diagonal
Fisher information (mean squared gradients of the training loss) estimated on the pre-training data.

This works because the text encoder has no per-item table: the new catalog's titles and brands are tokenized with
the pre-trained run's own SentencePiece model (runs/<id>/tokenizer.model), so no new parameter is needed.
A fine-tuning run is a run like any other in the store (resumable, DONE, rows), with three more columns:
parent_run_id, stage, parent_train_flops; its train_flops count the fine-tuning only.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any

import torch

from ..config import DataConfig, RunConfig, canonical_json
from ..data.batches import TrainingWindows
from ..errors import ScalerecError
from ..model.recommender import TrainingStep, build_recommender
from ..store.runstore import STATE, TOKENIZER, RunStore
from .trainer import Trainer, check_semantics, make_optimizer, make_scheduler, prepare_data, resolve_device, sampler_for


@dataclass(frozen=True)
class FinetuneConfig:
    """What a fine-tuning run is; its hash (with the parent's id) is the run id."""

    parent_run_id: str
    data: DataConfig = field(default_factory=DataConfig)
    layer_epochs: int = 10  # per transformer layer, unfrozen one at a time from the top
    embedding_epochs: int = 50  # then everything, token embeddings included
    lr: float = 1e-4
    n_negatives: int = 0  # training negatives; 0 = the pre-trained run's (must be below the new catalog)
    ewc_lambda: float = 100.0
    fisher_batches: int = 20  # pre-training batches for the diagonal Fisher
    eval_every: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.layer_epochs < 0 or self.embedding_epochs < 0 or self.layer_epochs + self.embedding_epochs == 0:
            raise ScalerecError("finetune: layer_epochs and embedding_epochs must be >= 0, and not both 0")
        if (
            self.lr <= 0
            or self.ewc_lambda < 0
            or self.fisher_batches < 1
            or self.eval_every < 1
            or self.n_negatives < 0
        ):
            raise ScalerecError(
                "finetune: lr must be > 0, ewc_lambda and n_negatives >= 0, fisher_batches and eval_every >= 1"
            )

    @property
    def run_id(self) -> str:
        return hashlib.sha256(canonical_json({"finetune": dataclasses.asdict(self)}).encode()).hexdigest()[:12]


def stages(n_layers: int, layer_epochs: int, embedding_epochs: int) -> list[tuple[str, int, int]]:
    """(name, epochs, layers unfrozen from the top; -1 = everything) per stage, in order; empty stages dropped."""
    plan = [(f"layer {n_layers - k} of {n_layers}", layer_epochs, k + 1) for k in range(n_layers)]
    plan.append(("embeddings", embedding_epochs, -1))
    return [stage for stage in plan if stage[1] > 0]


def finetune_run(
    ft: FinetuneConfig,
    parent_store: RunStore,
    store: RunStore,
    *,
    device: str = "auto",
    threads: int | None = None,
    progress: bool = True,
    accept_stale: bool = False,
) -> str:
    """Fine-tune (or resume, or skip if DONE) `ft` into `store`; returns 'done' or 'skipped'."""
    store.require_intact(ft.run_id)
    check_semantics(store, ft.run_id, accept_stale)
    if store.status(ft.run_id) == "done":
        return "skipped"
    if threads:
        torch.set_num_threads(threads)
    torch_device = resolve_device(device)
    with store.claim(ft.run_id):
        return _FineTuner(ft, parent_store, store, torch_device, progress).run(None)


class _FineTuner(Trainer):
    def __init__(
        self, ft: FinetuneConfig, parent_store: RunStore, store: RunStore, device: torch.device, progress: bool
    ) -> None:
        parent_id = ft.parent_run_id
        if parent_store.status(parent_id) == "new":
            raise ScalerecError(f"no pre-trained run {parent_id} in {parent_store.root}")
        parent_store.require_intact(parent_id)  # its weights must be those of the run its id names
        parent_config = parent_store.read_config(parent_id)
        if "config" not in parent_config:
            raise ScalerecError(f"run {parent_id} was not trained by scalerec (imported?): it has no weights")
        self.parent_cfg = RunConfig.from_stored(parent_config["config"], f"run {parent_id}")
        if self.parent_cfg.model.item_encoder != "text":
            raise ScalerecError(
                f"run {parent_id} uses the id encoder: it has no vectors for a new catalog's items; "
                "fine-tuning to a new domain needs model.item_encoder = 'text'"
            )
        state_path = parent_store.run_dir(parent_id) / STATE
        if not state_path.exists():
            raise ScalerecError(f"run {parent_id} has no {STATE} (no checkpoint yet) to fine-tune from")
        self.parent_weights = torch.load(state_path, map_location="cpu", weights_only=True)["model"]
        parent_rows = parent_store.read_rows(parent_id)
        self.parent_flops = float(parent_rows.train_flops.iloc[-1]) if len(parent_rows) else 0.0
        tokenizer_path = parent_store.run_dir(parent_id) / TOKENIZER
        # Runs from before tokenizer.model was kept: rebuild it from the pre-training data (deterministic).
        tokenizer = (
            tokenizer_path.read_bytes() if tokenizer_path.exists() else prepare_data(self.parent_cfg).text["tokenizer"]
        )
        self.ft = ft
        self.plan = stages(self.parent_cfg.model.n_layers, ft.layer_epochs, ft.embedding_epochs)
        total = sum(epochs for _, epochs, _ in self.plan)
        cfg = dataclasses.replace(
            self.parent_cfg,
            data=ft.data,
            seed=ft.seed,
            train=dataclasses.replace(
                self.parent_cfg.train,
                epochs=total,
                lr=ft.lr,
                eval_every=ft.eval_every,
                sgd_switch=False,
                early_stop_patience=0,
                cooldowns=(),  # a stage is no WSD run to branch
                n_negatives=ft.n_negatives or self.parent_cfg.train.n_negatives,
            ),
        )
        super().__init__(cfg, store, device, progress, run_id=ft.run_id, tokenizer=tokenizer)
        try:
            self.model.load_state_dict(self.parent_weights)
        except RuntimeError as exc:  # torch lists every mismatch on its own line: the first one says enough
            first = next(
                (line.strip() for line in str(exc).splitlines() if "size mismatch" in line), str(exc).splitlines()[0]
            )
            raise ScalerecError(
                f"run {parent_id}'s weights do not fit the model for this data ({first}); "
                "the tokenizer or the shape differs from the pre-training"
            ) from None
        self.anchor = {name: p.detach().clone() for name, p in self.model.named_parameters()}
        self.fisher = self._fisher() if ft.ewc_lambda > 0 else {}
        self.stage_index = -1

    # -- stages --------------------------------------------------------------------------------------------------
    def _stage_at(self, epoch: int) -> int:
        end = 0
        for index, (_, epochs, _) in enumerate(self.plan):
            end += epochs
            if epoch < end:
                return index
        return len(self.plan) - 1

    def _enter_stage(self, index: int) -> None:
        """Unfreeze the stage's parameters and give it a fresh Adam and one-cycle schedule."""
        _, epochs, top_layers = self.plan[index]
        transformer = self.model.transformer
        for p in self.model.parameters():
            p.requires_grad_(top_layers == -1)
        if top_layers != -1:
            for block in list(transformer.blocks)[-top_layers:]:
                block.requires_grad_(True)
            if not transformer.post_norm:  # pre-LN: the final norm sits on top (post-LN normalises the input)
                transformer.norm.requires_grad_(True)
        self.optimizer = make_optimizer(self.model, self.cfg)
        steps = epochs * self.windows.batches_per_epoch(self.cfg.train.batch_size, self.cfg.train.batch_targets)
        self.scheduler = make_scheduler(self.optimizer, self.cfg.train, steps)
        self.stage_index = index

    def _resume(self) -> None:
        # The optimizer saved in state.pt belongs to the stage its last epoch was in: build that stage first.
        path = self.store.state_path(self.run_id)
        epoch = torch.load(path, map_location="cpu", weights_only=True)["counters"]["epoch"] if path.exists() else 0
        self._enter_stage(self._stage_at(max(epoch - 1, 0)))
        super()._resume()

    def _begin_epoch(self) -> None:
        index = self._stage_at(self.counters.epoch)
        if index != self.stage_index:
            self._enter_stage(index)

    # -- EWC -----------------------------------------------------------------------------------------------------
    def _fisher(self) -> dict[str, torch.Tensor]:
        """Diagonal Fisher information on the pre-training data: mean squared gradient over `fisher_batches`."""
        parent = prepare_data(self.parent_cfg, self.data.text["tokenizer"])
        model = build_recommender(self.parent_cfg.model, parent.split.n_items, parent.text).to(self.device)
        model.load_state_dict(self.parent_weights)
        sampler = sampler_for(self.parent_cfg, parent.split)
        step = TrainingStep(model, self.parent_cfg.train, sampler.log_q, parent.split.n_items).to(self.device)
        train = self.parent_cfg.train
        windows = TrainingWindows(parent.split, self.parent_cfg.model.max_len, train.targets, train.prefix_batches)
        generator = torch.Generator().manual_seed(self.ft.seed)
        fisher = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
        model.eval()  # no dropout: the Fisher of the model as it predicts
        batches = 0
        for batch in windows.epoch(train.batch_size, generator, train.batch_targets):
            negatives = sampler.for_batch(batch, train.negatives, train.negatives_per_target, generator)
            model.zero_grad(set_to_none=True)
            step(*(t.to(self.device) for t in batch.step_inputs(negatives))).backward()
            for name, p in model.named_parameters():
                if p.grad is not None:
                    fisher[name] += p.grad.detach() ** 2
            batches += 1
            if batches == self.ft.fisher_batches:
                break
        return {name: f / batches for name, f in fisher.items()}

    def _penalty(self) -> torch.Tensor | float:
        if not self.fisher:
            return 0.0
        total = sum(
            (self.fisher[name] * (p - self.anchor[name]) ** 2).sum()
            for name, p in self.model.named_parameters()
            if p.requires_grad
        )
        return 0.5 * self.ft.ewc_lambda * total

    # -- what the store records ----------------------------------------------------------------------------------
    def _row_extras(self) -> dict[str, Any]:
        stage = self.plan[self._stage_at(self.counters.epoch - 1)][0]  # the epoch just finished
        return {"parent_run_id": self.ft.parent_run_id, "stage": stage, "parent_train_flops": self.parent_flops}

    def _config_extras(self) -> dict[str, Any]:
        return {
            "finetune": dataclasses.asdict(self.ft),
            "stages": [{"name": name, "epochs": epochs} for name, epochs, _ in self.plan],
        }
