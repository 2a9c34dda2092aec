"""Warmup-stable-decay with cooldown branches (train.schedule = "wsd", train.cooldowns): the schedule, the branch as
the run of its length, the run's own trajectory untouched by its branches, resumption inside a branch, the store's
readers, and bad input."""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_config
from helpers import scalerec_in_process

from scalerec.analysis.fit_options import cooldowns_as_runs
from scalerec.config import TrainConfig
from scalerec.errors import ScalerecError
from scalerec.store import RunStore
from scalerec.store.verify import verify_store
from scalerec.train import trainer as trainer_module
from scalerec.train.trainer import train_run, warmup_stable_decay, wsd_steps

SAME = ["step", "seen_interactions", "train_flops", "valid_ndcg_at_5", "valid_loss", "test_ndcg_at_5"]


def wsd(epochs, cooldowns=(), **train):
    """A tiny run under WSD; warm-up of one step, so that runs of different lengths share their schedule."""
    cfg = tiny_config(epochs=epochs)
    options = {"schedule": "wsd", "warmup_fraction": 0.0, "cooldowns": cooldowns, "test_every_checkpoint": True}
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **(options | train)))


def test_schedule_warms_up_holds_and_decays_to_zero():
    values = [warmup_stable_decay(s, 100, 10, 20, "linear") for s in range(101)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert values[10:81] == [1.0] * 71  # stable until the decay begins at step 80
    assert values[90] == pytest.approx(0.5) and values[100] == 0.0
    sqrt = [warmup_stable_decay(s, 100, 10, 20, "1-sqrt") for s in (80, 85, 100)]
    assert sqrt == pytest.approx([1.0, 1 - math.sqrt(0.25), 0.0])
    assert np.all(np.diff(values[10:]) <= 0)


def test_cooldown_steps_are_where_the_fractions_say():
    train = TrainConfig(schedule="wsd", warmup_fraction=0.05, cooldown_share=0.2, cooldowns=(0.25, 0.5, 1.0))
    warmup, decay, branches = wsd_steps(train, 400)
    assert (warmup, decay) == (20, 80)
    # 1.0 is the run's own end; each branch decays over the last fifth of its own length
    assert [(b.fraction, b.start, b.end) for b in branches] == [(0.25, 80, 100), (0.5, 160, 200)]


@pytest.fixture(scope="module")
def branched(tmp_path_factory):
    """One WSD run of 4 epochs with branches ending at 1/2 and 3/4 of it (the first mid-epoch), and the runs of 2,
    3 and 4 epochs without branches, in one store."""
    store = RunStore(tmp_path_factory.mktemp("wsd"))
    runs = {"branched": wsd(4, (0.5, 0.75)), 2: wsd(2), 3: wsd(3), 4: wsd(4)}
    for cfg in runs.values():
        train_run(cfg, store, progress=False)
    return store, {name: store.read_rows(cfg.run_id) for name, cfg in runs.items()}


def test_a_branch_is_the_run_of_its_length(branched):
    _, rows = branched
    branches = rows["branched"][rows["branched"].cooldown.notna()].set_index("cooldown")
    assert list(branches.index) == [0.5, 0.75]
    for fraction, epochs in ((0.5, 2), (0.75, 3)):
        alone = rows[epochs][rows[epochs].is_final].iloc[0]
        branch = branches.loc[fraction]
        assert branch.step > branch.branch_step  # it left the stable phase before the end it stands for
        assert branch.schedule_fraction == 1.0 and not branch.is_final and branch.lr == 0.0
        # the same steps, data, negatives and dropout as a WSD run of that length: the same numbers exactly
        assert branch[SAME].tolist() == alone[SAME].tolist()


def test_branches_leave_the_run_itself_untouched(branched):
    _, rows = branched
    own = rows["branched"][rows["branched"].cooldown.isna()]
    assert (own.branch_step == -1).all() and own.is_final.tolist() == [False, False, False, True]
    pd.testing.assert_frame_equal(own[SAME].reset_index(drop=True), rows[4][SAME].reset_index(drop=True))
    # the run's times include the branches it ran; a branch counts the run's time up to where it left
    assert own.wall_time_s.iloc[-1] > rows[4].wall_time_s.iloc[-1] * 0.5


def test_a_crash_inside_a_branch_resumes_it(branched, tmp_path, monkeypatch):
    reference, rows = branched
    cfg = wsd(4, (0.5, 0.75))
    store = RunStore(tmp_path)
    real_step, calls = trainer_module.Trainer.step, {"branch": 0}

    def crash_in_second_branch(self, batch, generator, scheduled=True):
        if not scheduled and self.counters.step > 12:  # the 3/4 branch: steps 14 to 18 of 24
            calls["branch"] += 1
            if calls["branch"] == 2:
                raise KeyboardInterrupt  # as a kill would: nothing of the branch is written
        return real_step(self, batch, generator, scheduled)

    monkeypatch.setattr(trainer_module.Trainer, "step", crash_in_second_branch)
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, store, progress=False)
    before = store.read_rows(cfg.run_id)
    assert before.cooldown.dropna().tolist() == [0.5] and store.status(cfg.run_id) != "done"
    monkeypatch.setattr(trainer_module.Trainer, "step", real_step)
    assert train_run(cfg, store, progress=False) == "done"
    after = store.read_rows(cfg.run_id)
    columns = [*SAME, "cooldown", "branch_step", "is_final"]
    pd.testing.assert_frame_equal(after[columns], rows["branched"][columns])
    assert [v["verdict"] for v in verify_store(tmp_path)] == ["whole"]


def test_resuming_keeps_a_branch_that_ends_past_the_state(tmp_path):
    """A branch row counts where the branch left the run: resuming from a state saved after the branch left but
    before the step its row records keeps the row, and does not run the branch again."""
    cfg = wsd(4, (0.58,))  # 24 steps, 6 an epoch: the branch leaves at step 11 and ends at 14
    (branch,) = wsd_steps(cfg.train, 24)[2]
    assert (branch.start, branch.end) == (11, 14)
    paused, whole = RunStore(tmp_path / "paused"), RunStore(tmp_path / "whole")
    assert train_run(cfg, paused, progress=False, max_epochs=2) == "paused"  # its state: step 12
    assert paused.read_rows(cfg.run_id).cooldown.dropna().tolist() == [0.58]
    train_run(cfg, paused, progress=False)
    train_run(cfg, whole, progress=False)
    columns = [*SAME, "cooldown", "branch_step"]
    pd.testing.assert_frame_equal(paused.read_rows(cfg.run_id)[columns], whole.read_rows(cfg.run_id)[columns])


def test_store_readers_see_branches_as_runs(branched):
    store, rows = branched
    assert {v["verdict"] for v in verify_store(store.root)} == {"whole"}
    from scalerec.store.summary import run_summary

    summary = run_summary(store, wsd(4, (0.5, 0.75)).run_id)
    assert summary["epoch"] == 4.0 and summary["checkpoints"] == 6  # the run's own last row; all its rows
    as_runs = cooldowns_as_runs(rows["branched"])
    run_id = wsd(4, (0.5, 0.75)).run_id
    finals = as_runs[as_runs.is_final].set_index("run_id")
    assert sorted(finals.index) == sorted([run_id, f"{run_id}@0.5", f"{run_id}@0.75"])
    assert finals.loc[f"{run_id}@0.5", "seen_interactions"] == rows[2].seen_interactions.iloc[-1]
    assert cooldowns_as_runs(as_runs).equals(as_runs)  # idempotent


def test_a_duplicated_branch_row_is_damage(branched, tmp_path):
    import shutil

    store, rows = branched
    run_id = wsd(4, (0.5, 0.75)).run_id
    shutil.copytree(store.run_dir(run_id), tmp_path / run_id)
    copy = RunStore(tmp_path)
    table = copy.read_rows(run_id)
    copy.write_rows(run_id, pd.concat([table, table[table.cooldown == 0.5]], ignore_index=True))
    (verdict,) = verify_store(tmp_path)
    assert verdict["verdict"] == "damaged" and "recorded twice" in verdict["why"]


@pytest.mark.parametrize(
    "train, message",
    [
        ({"cooldowns": [0.5]}, "set train.schedule = 'wsd'"),
        ({"schedule": "wsd", "cooldowns": [0.5, 1.2]}, "fractions in (0, 1]"),
        ({"schedule": "wsd", "cooldowns": [0.0]}, "fractions in (0, 1]"),
        ({"schedule": "wsd", "cooldowns": [0.5, 0.25]}, "increasing without repeats"),
        ({"schedule": "wsd", "cooldowns": [0.5, 0.5]}, "increasing without repeats"),
        ({"schedule": "wsd", "cooldowns": [0.2], "warmup_fraction": 0.3}, "before the warm-up ends"),
        ({"schedule": "wsd", "cooldown_share": 1.0}, "cooldown_share must be in (0, 1)"),
        ({"schedule": "wsd", "decay_shape": "cosine"}, "decay_shape"),
    ],
)
def test_bad_cooldowns_give_one_line_error_and_write_nothing(tmp_path, train, message):
    import tomli_w

    (tmp_path / "run.toml").write_text(tomli_w.dumps({"train": train}))
    result = scalerec_in_process("train", "run.toml", "--runs", "store", cwd=tmp_path, ok=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and lines[0].startswith("scalerec: error:"), result.stderr
    assert message in lines[0] and not (tmp_path / "store").exists()


def test_too_many_cooldowns_for_a_short_run_is_an_error(tmp_path):
    cfg = wsd(1, tuple(np.round(np.linspace(0.1, 0.9, 9), 2)))  # 6 steps cannot hold 9 branches
    with pytest.raises(ScalerecError, match="too many cooldowns"):
        train_run(cfg, RunStore(tmp_path), progress=False)


def test_the_cost_of_a_run_counts_its_branches():
    from scalerec.grid.cost import nominal_flops

    branched, plain = wsd(4, (0.25, 0.5, 1.0)), wsd(4)
    assert branched.train.trained_epochs == pytest.approx(4 * (1 + 0.2 * 0.75))
    assert nominal_flops(branched) == pytest.approx(nominal_flops(plain) * 1.15)
