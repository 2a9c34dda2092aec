"""Backtest and calibrated intervals (analysis/backtest.py): the conformal machinery, and coverage of held-out
largest runs on generated stores whose truth is, and is not, in the family of the N,T law."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from helpers import map_replicates
from hypothesis import given, settings
from hypothesis import strategies as st

from scalerec.analysis import laws
from scalerec.analysis.backtest import calibrated_band, conformal_quantile, extrapolation_distance, hold_out_sets, score
from scalerec.analysis.fit_laws import FitOptions, fit_laws
from scalerec.analysis.predict import predict_nt

TRUTH = dict(e=0.5, a=2.0, alpha=0.35, b=5.0, beta=0.3)  # NDCG from about 0.1 to 0.42 on the grid below


def in_family(n, t, d, layers, **_):
    return laws.risk(n, t, **TRUTH)


def depth_penalty(n, t, d, layers, **_):
    """Deeper models do worse than the law in N alone says (the published grid's deepest models)."""
    return laws.risk(n, t, **TRUTH) - 0.03 * np.log(layers)


def repetition_decay(n, t, d, layers, **_):
    """Repeated epochs are worth less than fresh data (Muennighoff et al. 2023, R* = 2 repetitions)."""
    repeats = np.maximum(t / d - 1.0, 0.0)
    effective = np.minimum(t, d) + d * 2.0 * (1.0 - np.exp(-repeats / 2.0))
    return laws.risk(n, effective, **TRUTH)


def unannealed(n, t, d, layers, fraction, **_):
    """Checkpoints before the end of the one-cycle schedule sit below the law (the published grid's many)."""
    return laws.risk(n, t, **TRUTH) - 0.04 * (1.0 - fraction)


def more_negatives(n, t, d, layers, negatives, **_):
    """SRT-X: more sampled negatives rank better at the same N and T."""
    return laws.risk(n, t, **TRUTH) + 0.01 * np.log(negatives)


def generated_store(truth, seed: int, noise: float = 0.004) -> pd.DataFrame:
    """5 sizes x 4 data sizes, 4 checkpoints per run, noise around `truth`. As in data-constrained grids, smaller
    datasets are repeated for more epochs (32, 16, 6, 2), so the final checkpoints differ in repetition; depths
    1-8 and the sampled negatives (10 to 1000, as SRT-X) vary at each N."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, n in enumerate((2e3, 6e3, 2e4, 6e4, 2e5)):
        for j, (d, final_epochs) in enumerate(((1e4, 32), (3e4, 16), (1e5, 6), (3e5, 2))):
            layers = (1, 2, 4, 8)[(i + j) % 4]  # shapes vary at each N, as in a grid of shapes
            negatives = (10, 100, 300, 1000)[(i + 2 * j) % 4]
            for k, epochs in enumerate(final_epochs * np.array([0.25, 0.5, 0.75, 1.0])):
                t = epochs * d
                rows.append(
                    {
                        "run_id": f"n{n:g}d{d:g}",
                        "step": k + 1,
                        "epoch": float(epochs),
                        "is_final": k == 3,
                        "schedule_fraction": (k + 1) / 4,
                        "seen_interactions": int(t),
                        "dataset_interactions": int(d),
                        "train_flops": 12.0 * n * t,
                        "non_embedding_params": int(n),
                        "total_params": int(2 * n),
                        "n_layers": layers,
                        "n_heads": 2,
                        "hidden": 64,
                        "n_negatives": negatives,
                        "n_items": 5000,
                        "valid_ndcg_at_5": float(
                            truth(n, t, d, layers, fraction=(k + 1) / 4, negatives=negatives) + rng.normal(0, noise)
                        ),
                    }
                )
    return pd.DataFrame(rows)


# -- the machinery ------------------------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=60), st.sampled_from([0.5, 0.8, 0.9]))
def test_conformal_quantile_is_the_finite_sample_rank(scores, level):
    q = conformal_quantile(np.array(scores), level)
    k = math.ceil((len(scores) + 1) * level - 1e-9)
    if k > len(scores):
        assert q == math.inf  # too few scores for this level: no finite interval
    else:
        assert q == sorted(scores)[k - 1]
        assert np.mean(np.array(scores) <= q) >= level  # k/n >= level (n+1)/n


def test_scores_distances_and_bands():
    assert extrapolation_distance((math.log(20.0),), [[0.0, math.log(10.0)]]) == pytest.approx(math.log(2))
    assert extrapolation_distance((1.0, 1.0), [[0.0, 2.0], [0.0, 2.0]]) == 0.0
    s = score(np.array([0.2, 0.2, 0.2]), np.array([0.1, -0.1, 0.2]), np.array([0.0, 0.0, 1.0]))
    assert s[0] == pytest.approx(math.log(2)) and s[1] == math.inf and s[2] == 0.0
    low, high = calibrated_band(np.array([0.1]), np.array([1.0]), 0.5)
    assert low[0] == pytest.approx(0.1 / math.e) and high[0] == pytest.approx(0.1 * math.e)


def test_hold_out_sets_walk_back_from_the_largest_and_keep_enough_to_fit():
    runs = pd.DataFrame(
        {"N": [1, 1, 2, 2, 3, 3], "C": [1, 2, 3, 4, 5, 6], "D": [1, 2, 1, 2, 1, 2]}, index=list("abcdef")
    )
    assert hold_out_sets(runs, "N", 3) == [["e", "f"]]  # holding out N = 2 too would leave 2 runs
    assert hold_out_sets(runs, "C", 2) == [["f"], ["f", "e"]]
    assert hold_out_sets(runs, "D", 3) == []  # the rest would have one data size


def test_a_store_too_small_to_calibrate_says_so():
    store = generated_store(in_family, 0)
    small = store[store.run_id.isin(store.run_id.unique()[::3])]  # 7 runs: few held-out points
    data = fit_laws(small, FitOptions(points="final", bootstrap=0))
    calibration = data["backtest"]["laws"]["risk"]["calibration"]
    assert not calibration["calibrated"] and "needs at least 9" in calibration["why"]
    prediction = predict_nt(data, 1e6, 1e7)["prediction"]
    assert prediction["calibration"]["method"] == "bootstrap only"


# -- coverage of the largest runs over replicates ----------------------------------------------------------------


def depth_and_repetition(n, t, d, layers, **_):
    """Both effects at once: no candidate law has this form."""
    return repetition_decay(n, t, d, layers) - 0.03 * np.log(layers)


def _held_out_largest(replicate):
    """One replicate: (inside the calibrated 90% interval, relative error) for each held-out largest-N run."""
    truth, seed = replicate
    store = generated_store(truth, seed)
    largest = store.non_embedding_params == store.non_embedding_params.max()
    data = fit_laws(store[~largest], FitOptions(points="final", bootstrap=0))
    assert data["backtest"]["laws"]["risk"]["calibration"]["calibrated"]
    points = []
    for row in store[largest & store.is_final].itertuples():
        prediction = predict_nt(
            data,
            row.non_embedding_params,
            row.seen_interactions,
            inputs={"layers": row.n_layers, "D": row.dataset_interactions},
        )["prediction"]
        low, high = prediction["interval_90"]
        points.append(
            (low <= row.valid_ndcg_at_5 <= high, abs(prediction["value"] - row.valid_ndcg_at_5) / row.valid_ndcg_at_5)
        )
    return points


@pytest.mark.slow
@pytest.mark.parametrize(
    "truth, replicates", [(in_family, 10), (depth_and_repetition, 30)], ids=["in_family", "depth_and_repetition"]
)
def test_calibrated_intervals_cover_held_out_largest_runs(truth, replicates):
    """Fit without the largest-N runs (no bootstrap: the calibrated band alone), predict their final metric with the
    selected law; the calibrated 90% interval must cover close to 90% of them, also when no candidate law is true."""
    points = [
        point
        for replicate in map_replicates(_held_out_largest, [(truth, seed) for seed in range(replicates)])
        for point in replicate
    ]
    inside, errors = [p[0] for p in points], [p[1] for p in points]
    coverage = float(np.mean(inside))
    print(f"{truth.__name__}: coverage {coverage:.2f} of {len(inside)}, MAPE {np.mean(errors):.1%}")
    assert 0.8 <= coverage <= 1.0, coverage


def _selected_law(replicate):
    """One replicate: the law the backtest selects, and its G where it has one."""
    truth, seed, points = replicate
    data = fit_laws(generated_store(truth, seed), FitOptions(points=points, bootstrap=0))
    selected = data["backtest"]["selection"]["selected"]
    return selected, data["laws"][selected]["params"].get("G")


@pytest.mark.slow
@pytest.mark.parametrize(
    "truth, expected, points",
    [
        (in_family, "risk", "final"),
        (depth_penalty, "risk_depth", "final"),
        (repetition_decay, "risk_repeat", "final"),
        (unannealed, "risk_schedule", "all"),
        (more_negatives, "risk_negatives", "final"),
    ],
    ids=["in_family", "depth_penalty", "repetition_decay", "unannealed", "more_negatives"],
)
def test_the_backtest_selects_the_true_law_when_it_is_a_candidate(truth, expected, points):
    choices = map_replicates(_selected_law, [(truth, seed, points) for seed in range(5)])
    selected = [law for law, _ in choices]
    for law, g in choices:
        if law in ("risk_depth", "risk_negatives") and expected == "risk":  # Eq. 4 nests in them:
            assert abs(g) < 0.01  # harmless only with G ≈ 0
    print(truth.__name__, selected)
    assert selected.count(expected) >= 4, selected


@pytest.mark.slow
def test_predict_uses_the_selected_law_given_its_input_and_says_when_it_cannot():
    from scalerec.errors import ScalerecError

    data = fit_laws(generated_store(repetition_decay, 0), FitOptions(points="final", bootstrap=0))
    assert data["backtest"]["selection"]["selected"] == "risk_repeat"
    if data["laws"]["risk"]["status"] == "failed":  # without D the fallback is Eq. 4, which failed here: refused
        with pytest.raises(ScalerecError, match="needs --dataset-interactions.*the risk fit failed"):
            predict_nt(data, 1e5, 1e6)
    else:
        fallback = predict_nt(data, 1e5, 1e6)  # without D: Eq. 4, and it says why
        assert fallback["law"] == "risk" and "needs --dataset-interactions" in fallback["warnings"][0]
    with pytest.raises(ScalerecError, match="needs --dataset-interactions"):
        predict_nt(data, 1e5, 1e6, law="risk_repeat")
    assert predict_nt(data, 1e5, 1e6, inputs={"D": 1e5})["law"] == "risk_repeat"
    forced = predict_nt(data, 1e5, 1e6, law="risk")  # named: answered, with a warning when its fit failed
    assert forced["law"] == "risk"
    assert (data["laws"]["risk"]["status"] == "failed") == any("anyway" in w for w in forced["warnings"])


def test_nearest_shape_uses_the_runs_own_n_convention():
    """The catalog's N is the non-embedding count of the runs' own encoder; with N = total parameters only the
    runs' shapes can be matched (the bug: a total-N law compared with non-embedding catalog N)."""
    from scalerec.analysis.predict import predict_budget

    store = generated_store(in_family, 0).assign(item_encoder="id")
    total = fit_laws(store, FitOptions(points="final", bootstrap=0, backtest=False, n_column="total"))
    assert total["data"]["n_column"] == "total_params" and {s["source"] for s in total["shapes"]} == {"runs"}
    assert predict_budget(total, 1e13)["nearest_shape"]["source"] == "runs"
    own = fit_laws(store, FitOptions(points="final", bootstrap=0, backtest=False))
    paper = [s for s in own["shapes"] if s["source"] == "paper Table 3"]
    from scalerec.shapes import non_embedding_params

    assert paper and all(s["n"] == non_embedding_params(s["n_layers"], s["hidden"], item_encoder="id") for s in paper)


@pytest.mark.slow
def test_schedule_and_negatives_candidates_take_their_inputs_in_predict():
    from scalerec.errors import ScalerecError

    data = fit_laws(generated_store(unannealed, 0), FitOptions(points="all", bootstrap=0))
    assert {"risk_schedule", "risk_negatives"} <= set(data["laws"])
    annealed = predict_nt(data, 1e5, 1e6, law="risk_schedule")  # default: a finished run, f = 1
    assert annealed["law"] == "risk_schedule" and annealed["schedule_fraction"] == 1.0
    early = predict_nt(data, 1e5, 1e6, law="risk_schedule", inputs={"schedule_fraction": 0.5})
    s = data["laws"]["risk_schedule"]["params"]["S"]
    assert s == pytest.approx(0.04, abs=0.015)  # the truth's un-annealed penalty
    assert annealed["prediction"]["value"] - early["prediction"]["value"] == pytest.approx(0.5 * s, rel=1e-6)
    with pytest.raises(ScalerecError, match="needs --negatives"):
        predict_nt(data, 1e5, 1e6, law="risk_negatives")
    assert predict_nt(data, 1e5, 1e6, law="risk_negatives", inputs={"negatives": 100})["law"] == "risk_negatives"


def test_the_cli_names_every_candidate_law():
    from scalerec.analysis.candidates import NT_CANDIDATES
    from scalerec.cli.analysis import NT_LAWS

    assert NT_LAWS == ["risk", *NT_CANDIDATES]
