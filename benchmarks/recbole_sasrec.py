"""RecBole 1.2.1's SASRec, timed for one training epoch; run by recbole_compare.py inside RecBole's own venv.

    python recbole_sasrec.py DATA_DIR THREADS LAYERS HEADS HIDDEN     (DATA_DIR holds syn/syn.inter)

RecBole 1.2.1 predates NumPy 2: the aliases it uses (np.float_, np.float, ...) are put back before it is imported.
Prints one JSON line: training targets, seconds, targets/s.
"""

import json
import sys
import time

import numpy as np

for name, value in (
    ("float_", np.float64),
    ("complex_", np.complex128),
    ("unicode_", np.str_),
    ("float", float),
    ("int", int),
    ("complex", complex),
    ("object", object),
    ("str", str),
    ("long", int),
    ("unicode", str),
):
    if not hasattr(np, name):
        setattr(np, name, value)

import torch  # noqa: E402
from recbole.config import Config  # noqa: E402
from recbole.data import create_dataset, data_preparation  # noqa: E402
from recbole.model.sequential_recommender import SASRec  # noqa: E402
from recbole.trainer import Trainer  # noqa: E402
from recbole.utils import init_seed  # noqa: E402

data_dir, threads, layers, heads, hidden = sys.argv[1], *map(int, sys.argv[2:6])
torch.set_num_threads(threads)
config = Config(
    model="SASRec",
    config_dict=dict(
        data_path=data_dir,
        dataset="syn",
        n_layers=layers,
        n_heads=heads,
        hidden_size=hidden,
        inner_size=hidden,
        hidden_dropout_prob=0.5,
        attn_dropout_prob=0.5,
        loss_type="CE",
        train_batch_size=128,
        epochs=1,
        MAX_ITEM_LIST_LENGTH=50,
        train_neg_sample_args=None,
        load_best_model=False,
        show_progress=False,
        use_gpu=False,
        gpu_id="",
        worker=0,
        checkpoint_dir=f"{data_dir}/saved",
        USER_ID_FIELD="user_id",
        ITEM_ID_FIELD="item_id",
        TIME_FIELD="timestamp",
        load_col={"inter": ["user_id", "item_id", "timestamp"]},
        eval_args={"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
        log_wandb=False,
        state="ERROR",
    ),
)
init_seed(0, True)
train_data, _, _ = data_preparation(config, create_dataset(config))
trainer = Trainer(config, SASRec(config, train_data.dataset).to(config["device"]))
trainer._train_epoch(train_data, epoch_idx=0)  # warm-up epoch (allocations, thread pools)
started = time.perf_counter()
trainer._train_epoch(train_data, epoch_idx=1)
seconds = time.perf_counter() - started
targets = len(train_data.dataset)  # RecBole's augmentation: every prefix predicts its next item ("last" mode)
print(json.dumps({"targets": targets, "seconds": seconds, "targets_per_s": targets / seconds}))
