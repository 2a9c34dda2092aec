"""The planner (`scalerec plan`, analysis/planner.py): runs chosen for the prediction at a target, per hour."""

import json

import numpy as np
import pytest
from helpers import scalerec_in_process

from scalerec.analysis.estimators import RiskLaw
from scalerec.analysis.planner import Candidate, plan_for_target, residual_scale
from scalerec.analysis.synthetic_runs import ndcg_table
from scalerec.errors import ScalerecError


def fitted_on_small_runs(seed=0):
    """The Eq. 4 law of generated runs at the smaller half of N and T; the larger runs are the candidates."""
    table = ndcg_table(seed=seed)
    small = table[(table.params <= 1e5) & (table.tokens <= 1e6)]
    law = RiskLaw().fit((small.params.to_numpy(), small.tokens.to_numpy()), small.ndcg.to_numpy())
    sigma = residual_scale(law, small.params.to_numpy(), small.tokens.to_numpy(), small.ndcg.to_numpy())
    rest = table.drop(small.index)
    candidates = [
        Candidate(r.run, ((r.params, r.tokens),), hours=r.params * r.tokens / 1e11) for r in rest.itertuples()
    ]
    return law, small[["params", "tokens"]].to_numpy(float), sigma, candidates


def test_the_plan_narrows_the_interval_within_the_budget():
    law, observed, sigma, candidates = fitted_on_small_runs()
    plan = plan_for_target(law, observed, sigma, (3e6, 1e7), candidates, budget_hours=2.0)
    assert plan.chosen and plan.hours <= 2.0
    assert plan.half_width_after < plan.half_width_now
    widths = [s["half_width_90"] for s in plan.steps]
    assert widths == sorted(widths, reverse=True)  # every run chosen narrowed it further
    # a larger budget buys at least as narrow an interval
    more = plan_for_target(law, observed, sigma, (3e6, 1e7), candidates, budget_hours=8.0)
    assert more.half_width_after <= plan.half_width_after and more.hours <= 8.0


def test_a_wsd_run_is_worth_its_branches():
    law, observed, sigma, _ = fitted_on_small_runs()
    one_end = Candidate("plain", ((1e6, 1e7),), hours=1.0)
    branched = Candidate("wsd", ((1e6, 2.5e6), (1e6, 5e6), (1e6, 1e7)), hours=1.0)
    alone = {
        c.run_id: plan_for_target(law, observed, sigma, (3e6, 1e7), [c], 1.0).half_width_after
        for c in (one_end, branched)
    }
    assert alone["wsd"] < alone["plain"]  # the same cost, more annealed points


def test_what_the_planner_cannot_plan_for_is_an_error():
    law, observed, sigma, candidates = fitted_on_small_runs()
    with pytest.raises(ScalerecError, match="no scatter"):
        plan_for_target(law, observed, 0.0, (3e6, 1e7), candidates, 1.0)
    with pytest.raises(ScalerecError, match="not a run that can be"):
        plan_for_target(law, observed, sigma, (0.5, 1e7), candidates, 1.0)


@pytest.fixture(scope="module")
def store_and_grid(tmp_path_factory):
    """A store of generated runs whose law is known (imported), and a tiny grid of synthetic-data candidates."""
    from scalerec.store.imported import TableMapping, import_table

    root = tmp_path_factory.mktemp("plan")
    ndcg_table(seed=1).to_csv(root / "runs.csv", index=False)
    import_table([str(root / "runs.csv")], TableMapping("params", "tokens", "ndcg", run="run"), root / "store")
    (root / "grid.toml").write_text(
        "[data]\nn_users = 120\nn_items = 60\nmean_length = 8\n[model]\nmax_len = 10\n"
        '[train]\nbatch_size = 32\nn_negatives = 20\ntargets = "all"\neval_negatives = 30\n'
        '[grid]\nshapes = [[1, 1, 8], [1, 2, 16], [2, 2, 32]]\n[grid.vary]\n"train.epochs" = [1, 2, 4]\n'
    )
    return root


@pytest.mark.slow  # probes the grid's cost twice
def test_plan_writes_a_plan_that_grid_trains(store_and_grid):
    root = store_and_grid
    args = ["plan", "grid.toml", "--runs", "store", "--metric", "ndcg", "--budget-hours", "1"]
    text = scalerec_in_process(*args, "--target", "3M,10M", "--out", "plan.json", cwd=root).stdout
    plan = json.loads((root / "plan.json").read_text())
    assert plan["run_ids"] and plan["hours"] <= 1 and plan["half_width_90_after"] < plan["half_width_90_now"]
    assert "expected 90% half-width" in text and all(run_id in text for run_id in plan["run_ids"])
    assert "--plan plan.json" in text  # the command that trains it
    listed = scalerec_in_process(
        "grid", "grid.toml", "--runs", "store", "--plan", "plan.json", "--dry-run", "--no-cost", "--json", cwd=root
    )
    assert [r["run_id"] for r in json.loads(listed.stdout)] == plan["run_ids"]
    by_flops = json.loads(scalerec_in_process(*args, "--target-flops", "1e14", "--json", cwd=root).stdout)
    assert "compute-optimal" in by_flops["target_how"] and np.isfinite(by_flops["target"]["N"])


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "give --target-flops C or --target N,T"),
        (["--target", "3e6", "--target-flops", "1e14"], "give --target-flops C or --target N,T"),
        (["--target", "lots"], "expected N,T"),
        (["--target", "3e6,many"], "is not a number"),
        (["--target", "2M,5M", "--target-flops", "-1"], "positive"),
        (["--target", "3e6,1e7", "--runs", "nowhere"], "holds no runs"),
        pytest.param(["--target", "3e6,1e7", "--budget-hours", "1e-9"], "no run fits", marks=pytest.mark.slow),
    ],
)
def test_bad_plans_give_one_line_errors(store_and_grid, extra, message):
    args = ["plan", "grid.toml", "--runs", "store", "--metric", "ndcg", "--budget-hours", "1", *extra]
    result = scalerec_in_process(*args, cwd=store_and_grid, ok=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and lines[0].startswith("scalerec: error:"), result.stderr
    assert message in lines[0]
    assert not (store_and_grid / "nowhere").exists()


def test_a_plan_for_another_grid_is_refused(store_and_grid, tmp_path):
    (tmp_path / "grid.toml").write_text((store_and_grid / "grid.toml").read_text())
    (tmp_path / "plan.json").write_text(json.dumps({"run_ids": ["0123456789ab"]}))
    result = scalerec_in_process("grid", "grid.toml", "--plan", "plan.json", "--dry-run", cwd=tmp_path, ok=False)
    assert "does not have" in result.stderr and result.returncode == 1
