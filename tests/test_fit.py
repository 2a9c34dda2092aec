import numpy as np
import pandas as pd
import pytest
from helpers import map_replicates
from hypothesis import given, settings
from hypothesis import strategies as st

from scalerec.analysis import laws
from scalerec.analysis.envelope import envelope, pareto_mask
from scalerec.analysis.estimators import LinearLaw, PowerLaw, RiskLaw, SaturatingLaw
from scalerec.analysis.fit_laws import FitOptions, fit_laws
from scalerec.errors import ScalerecError


def test_saturating_law_recovers_known_parameters():
    rng = np.random.default_rng(0)
    flops = np.exp(np.linspace(18, 32, 40))  # the laws take C; the midpoint c is a ln C
    truth = dict(a=0.4, b=0.5, c=25.0, d=0.2)
    y = laws.saturating(flops, **truth) + rng.normal(0, 1e-4, len(flops))
    law = SaturatingLaw(huber_delta=1e-3).fit((flops,), y)
    for name, value in truth.items():
        assert law.params_[name] == pytest.approx(value, rel=0.05), name
    assert law.asymptote_ == pytest.approx(0.2, abs=0.01) and law.quality_["rmse"] < 5e-4
    assert law.flags() == []


def test_an_exponent_outside_its_own_bootstrap_interval_is_flagged():
    n, t = np.meshgrid(np.geomspace(1e3, 1e7, 6), np.geomspace(1e5, 1e9, 6))
    y = laws.risk(n.ravel(), t.ravel(), e=0.3, a=5.0, alpha=0.4, b=20.0, beta=0.3)
    law = RiskLaw(huber_delta=1e-3).fit((n.ravel(), t.ravel()), y)
    assert not any("outside its own" in f for f in law.with_bootstrap([law.theta()] * 20).flags())
    nearly = law.theta() * (1 + 1e-12)  # the same optimum, other rounding
    assert not any("outside its own" in f for f in law.with_bootstrap([nearly] * 20).flags())
    shifted = law.theta().copy()
    shifted[list(law.params_).index("alpha")] = 0.8  # every refit found another optimum
    flags = law.with_bootstrap([shifted] * 20).flags()
    assert any(f.startswith("exponent alpha = 0.4 lies outside its own 90% interval") for f in flags), flags


def test_risk_law_recovers_known_parameters():
    n, t = np.meshgrid(np.geomspace(1e3, 1e7, 6), np.geomspace(1e5, 1e9, 6))
    truth = dict(e=0.3, a=5.0, alpha=0.4, b=20.0, beta=0.3)
    y = laws.risk(n.ravel(), t.ravel(), **truth)
    law = RiskLaw(huber_delta=1e-3).fit((n.ravel(), t.ravel()), y)
    fitted = law.params_
    assert fitted["E"] == pytest.approx(0.3, rel=0.02)
    assert fitted["alpha"] == pytest.approx(0.4, rel=0.05) and fitted["beta"] == pytest.approx(0.3, rel=0.05)
    assert fitted["A"] == pytest.approx(5.0, rel=0.2) and fitted["B"] == pytest.approx(20.0, rel=0.2)


@settings(max_examples=30, deadline=None)
@given(st.floats(1e-3, 1e3), st.floats(-1.0, 1.5), st.floats(8, 20))
def test_power_law_recovers_any_noise_free_law(k, exponent, log10_start):
    c = np.geomspace(10**log10_start, 10 ** (log10_start + 4), 12)
    law = PowerLaw().fit((c,), laws.power(c, k, exponent))
    assert law.params_["exponent"] == pytest.approx(exponent, abs=1e-6)
    assert law.params_["k"] == pytest.approx(k, rel=1e-4)


@settings(max_examples=25, deadline=None)
@given(st.floats(-1, 1), st.floats(-0.05, 0.05), st.lists(st.floats(10, 40), min_size=3, max_size=20, unique=True))
def test_linear_law_is_exact_on_a_line(p, q, ln_c):
    ln_c = np.array(ln_c)
    law = LinearLaw().fit((np.exp(ln_c),), p + q * ln_c)
    assert law.params_["p"] == pytest.approx(p, abs=1e-6) and law.params_["q"] == pytest.approx(q, abs=1e-7)


def test_degenerate_fits_are_flagged():
    # A metric that does not move with compute: the saturating law has nothing to saturate.
    flops = np.geomspace(1e9, 1e13, 15)
    flat = 0.1 + np.random.default_rng(1).normal(0, 1e-3, 15)
    flags = SaturatingLaw().fit((flops,), flat).flags()
    assert flags, "a flat metric must not give a silently trusted saturating fit"


TRUTH = {"e": 0.5, "a": 3.0, "alpha": 0.35, "b": 40.0, "beta": 0.35}


def _synthetic_store(truth=TRUTH, noise=0.002, seed=0):
    """Checkpoint rows of runs that follow the risk law exactly (plus noise): N x D grid, 5 checkpoints each."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in (3e3, 1e4, 3e4, 1e5):
        for d in (1e4, 3e4, 1e5):
            for epoch in range(1, 6):
                t = epoch * d * 4
                rows.append(
                    {
                        "run_id": f"n{n:g}d{d:g}",
                        "step": epoch,
                        "epoch": float(epoch),
                        "is_final": epoch == 5,
                        "schedule_fraction": epoch / 5,
                        "seen_interactions": int(t),
                        "dataset_interactions": int(d),
                        "train_flops": 6 * 2 * n * t,
                        "non_embedding_params": int(n),
                        "total_params": int(n * 1.5),
                        "n_layers": 2,
                        "n_heads": 2,
                        "hidden": int(n**0.5),
                        "valid_ndcg_at_5": laws.risk(n, t, **truth) + rng.normal(0, noise),
                    }
                )
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_fit_laws_end_to_end_on_a_known_store():
    df = _synthetic_store()
    data = fit_laws(df, FitOptions(points="all", bootstrap=40, huber_delta=1e-3))
    risk = data["laws"]["risk"]
    assert risk["params"]["alpha"] == pytest.approx(0.35, abs=0.08)
    assert risk["params"]["beta"] == pytest.approx(0.35, abs=0.08)
    low, high = risk["intervals_90"]["beta"]
    assert low < risk["params"]["beta"] < high
    assert len(risk["bootstrap"]) == 40
    assert data["allocation"]["k_flops_per_param_target"] == pytest.approx(12.0)
    assert data["data"]["runs"] == 12


def test_fit_laws_refuses_too_little_data():
    df = _synthetic_store()
    with pytest.raises(ScalerecError, match="at least 2 runs"):
        fit_laws(df[df.run_id == df.run_id.iloc[0]], FitOptions(bootstrap=0))
    two = df[df.run_id.isin(df.run_id.unique()[:2])]  # the envelope is fitted; Eq. 4 is left out, and says why
    data = fit_laws(two, FitOptions(points="final", bootstrap=0))
    assert "saturating" in data["laws"] and "risk" not in data["laws"]
    assert "cannot fit 5 parameters" in data["not_fitted"]["risk"]
    with pytest.raises(ScalerecError, match="no column"):
        fit_laws(df, FitOptions(metric="valid_ndcg_at_7", bootstrap=0))


def test_envelope_interpolates_inside_each_run_only():
    df = pd.DataFrame(
        {
            "run_id": ["a", "a", "b", "b"],
            "train_flops": [1e3, 1e5, 1e4, 1e6],
            "valid_ndcg_at_5": [0.1, 0.3, 0.05, 0.5],
            "seen_interactions": [10, 1000, 10, 1000],
            "dataset_interactions": 100,
            "non_embedding_params": [1, 1, 2, 2],
        }
    )
    env = envelope(df, "valid_ndcg_at_5").set_index("flops")
    assert env.loc[1e3, "run_id"] == "a" and env.loc[1e6, "run_id"] == "b"
    assert env.loc[1e4, "metric"] == pytest.approx(0.2)  # a at the midpoint of its log range beats b's 0.05
    assert env.loc[1e4, "seen_interactions"] == pytest.approx(100)
    assert pareto_mask(df, "valid_ndcg_at_5").tolist() == [True, True, False, True]


@pytest.mark.slow
def test_holdout_largest_on_a_true_law_predicts_the_held_out_runs():
    from scalerec.analysis.holdout import holdout_largest

    df = _synthetic_store(noise=0.001)
    report = holdout_largest(df, 3, "N", FitOptions(points="all", bootstrap=30, huber_delta=1e-3))
    assert sorted(report["held_out_runs"]) == ["n100000d10000", "n100000d100000", "n100000d30000"]
    assert report["fit_on_runs"] == 9
    risk = report["risk_law"]
    assert risk["n"] == 3 and risk["mae"] < 0.01 and risk["mape"] < 0.05
    assert all(r["interval_90"][0] <= r["predicted"] <= r["interval_90"][1] for r in risk["per_run"])


@pytest.mark.slow
def test_holdout_by_compute_and_above_a_budget():
    from scalerec.analysis.holdout import holdout_flops_above, holdout_largest

    df = _synthetic_store(noise=0.001)
    options = FitOptions(points="all", bootstrap=0, huber_delta=1e-3)
    by_c = holdout_largest(df, 1, "C", options)
    finals = df[df.is_final].set_index("run_id").train_flops
    assert by_c["held_out_runs"] == [finals.idxmax()]
    budget = float(np.quantile(df.train_flops, 0.7))
    above = holdout_flops_above(df, budget, options)
    assert above["envelope_law"]["n"] > 0 and all(p["flops"] > budget for p in above["envelope_law"]["points"])
    with pytest.raises(ScalerecError, match="keep at least 2"):
        holdout_largest(df, 11, "N", options)
    with pytest.raises(ScalerecError, match="needs at least 2 runs below"):
        holdout_flops_above(df, float(df.train_flops.max()) * 2, options)


def test_point_policies():
    from scalerec.analysis.envelope import select_points

    df = _synthetic_store(noise=0.0)
    assert len(select_points(df, "final", "valid_ndcg_at_5")) == 12
    assert len(select_points(df, "all", "valid_ndcg_at_5")) == 60
    tail = select_points(df, "tail", "valid_ndcg_at_5")  # schedule fractions 0.2 ... 1.0: the last two
    assert len(tail) == 24 and (tail.schedule_fraction >= 0.8).all()
    best = select_points(df, "best-per-run", "valid_ndcg_at_5")
    assert len(best) == 12 and best.is_final.all()  # the law rises with T, so each run's best is its last
    with pytest.raises(ScalerecError, match="--points"):
        select_points(df, "median", "valid_ndcg_at_5")


@pytest.mark.parametrize(
    "law_class, truth",
    [
        ("LossLaw", dict(e=1.5, a=30.0, alpha=0.3, b=400.0, beta=0.35)),
        ("LossNLaw", dict(e=1.5, n0=5e4, alpha=0.3)),
    ],
)
def test_loss_laws_recover_known_parameters_on_log_residuals(law_class, truth):
    from scalerec.analysis import estimators

    rng = np.random.default_rng(0)
    n, t = np.exp(rng.uniform(7, 15, 60)), np.exp(rng.uniform(10, 20, 60))
    if law_class == "LossLaw":
        x, y = (n, t), laws.loss(n, t, **truth)
    else:
        x, y = (n,), laws.loss_n(n, **truth)
    y = y * np.exp(rng.normal(0, 0.002, len(y)))  # multiplicative noise: log-residuals are homoscedastic
    law = getattr(estimators, law_class)(huber_delta=1e-3).fit(x, y)
    values = list(law.params_.values())
    for fitted, (name, true) in zip(values, truth.items()):
        assert fitted == pytest.approx(true, rel=0.1), name
    assert law.flags() == []


def test_non_finite_metrics_are_dropped_and_counted():
    df = _synthetic_store()
    df.loc[[3, 7], "valid_ndcg_at_5"] = [np.nan, np.inf]
    data = fit_laws(df, FitOptions(points="all", bootstrap=0))
    assert data["data"]["dropped_non_finite_rows"] == 2 and data["data"]["checkpoints"] == len(df) - 2
    with pytest.raises(ScalerecError, match="2 checkpoints have a NaN/inf valid_ndcg_at_5"):
        fit_laws(df, FitOptions(points="all", bootstrap=0), strict=True)


@settings(max_examples=30, deadline=None)
@given(st.floats(0.1, 0.9), st.floats(0.1, 0.9), st.floats(1.0, 100.0), st.floats(1.0, 100.0), st.floats(14, 22))
def test_risk_optimum_matches_a_numeric_search(alpha, beta, a, b, log10_c):
    from scipy.optimize import minimize_scalar

    c, k = 10**log10_c, 6.0
    n_opt, t_opt = laws.risk_optimum(c, k, 0.5, a, alpha, b, beta)
    assert float(n_opt * t_opt * k) == pytest.approx(c, rel=1e-9)  # spends exactly the budget
    numeric = minimize_scalar(
        lambda log_n: -laws.risk(np.exp(log_n), c / (k * np.exp(log_n)), 0.5, a, alpha, b, beta),
        bounds=(-30, np.log(c / k) + 30),
        method="bounded",
        options={"xatol": 1e-10},
    )
    best = laws.risk(n_opt, t_opt, 0.5, a, alpha, b, beta)
    assert best >= -numeric.fun - 1e-12  # no N on the budget line does better
    assert np.log(n_opt) == pytest.approx(numeric.x, abs=1e-3)


_TRUTH = {"alpha": 0.35, "beta": 0.35, "E": 0.5}  # _synthetic_store's law


def _covers_the_truth(replicate: int) -> dict[str, bool]:
    """One replicate of a known-law store: whether each 90% interval contains the true value."""
    data = fit_laws(
        _synthetic_store(noise=0.005, seed=100 + replicate),
        FitOptions(points="all", bootstrap=40, huber_delta=1e-3, seed=replicate),
    )
    intervals = data["laws"]["risk"]["intervals_90"]
    return {name: bool(intervals[name][0] <= value <= intervals[name][1]) for name, value in _TRUTH.items()}


@pytest.mark.slow
def test_bootstrap_intervals_cover_the_truth_about_90_percent_of_the_time():
    """Replicates of a known-law store (fixed seeds, so deterministic): the 90% intervals must contain the true
    exponents and E in most replicates. Too-narrow intervals (refits that never leave the full fit's optimum) once
    covered α in 13% of replicates."""
    replicates = 16
    covered = map_replicates(_covers_the_truth, list(range(replicates)))
    coverage = {name: sum(c[name] for c in covered) / replicates for name in _TRUTH}
    assert min(coverage.values()) >= 0.7, coverage
    assert np.mean(list(coverage.values())) >= 0.75, coverage


def test_best_checkpoints_is_each_runs_best_the_earliest_among_equals_and_never_nan():
    from scalerec.analysis.envelope import best_checkpoints

    rows = pd.DataFrame(
        {"run_id": ["a", "a", "a", "b", "b"], "epoch": [1, 2, 3, 1, 2], "valid_ndcg_at_5": [0.1, 0.3, 0.3, np.nan, 0.2]}
    )
    best = best_checkpoints(rows)
    assert best.run_id.tolist() == ["a", "b"] and best.epoch.tolist() == [2, 2]


@pytest.mark.slow
def test_a_parallel_bootstrap_gives_the_serial_result(monkeypatch):
    from scalerec.analysis import bootstrap_pool as module

    store = _synthetic_store()
    options = FitOptions(points="all", bootstrap=module.PARALLEL_BOOTSTRAP, huber_delta=1e-3, backtest=False)
    monkeypatch.setattr(module, "available_cores", lambda: 2)  # two cores, whatever here
    parallel = fit_laws(store, options)
    monkeypatch.setattr(module, "PARALLEL_BOOTSTRAP", 10**9)
    serial = fit_laws(store, options)
    for name in serial["laws"]:
        assert np.array_equal(
            np.array(parallel["laws"][name]["bootstrap"], dtype=float),
            np.array(serial["laws"][name]["bootstrap"], dtype=float),
            equal_nan=True,
        ), name


@pytest.mark.parametrize(
    "name, law, z",
    [
        ("RiskDepthLaw", "risk_depth", [1.0, 2.0, 8.0]),
        ("RiskScheduleLaw", "risk_schedule", [0.25, 0.5, 1.0]),
        ("RiskNegativesLaw", "risk_negatives", [10.0, 300.0, 1000.0]),
        ("RiskRepeatLaw", "risk_repeat", [1e3, 3e3, 2e4]),
    ],
)
def test_candidate_laws_are_their_laws_py_function_with_an_exact_jacobian(name, law, z):
    from scalerec.analysis import estimators

    estimator = getattr(estimators, name)()
    x = (np.array([1e3, 1e4, 1e5]), np.array([5e3, 2e4, 1e5]), np.array(z))
    theta = np.array([0.5, 2.0, 0.35, 5.0, 0.3, 0.03 if law != "risk_repeat" else 4.0])
    assert np.allclose(estimator._function(x, theta), getattr(laws, law)(*x, *theta))
    numeric = np.column_stack(
        [
            (estimator._function(x, theta + step) - estimator._function(x, theta - step)) / 2e-6
            for step in np.eye(len(theta)) * 1e-6
        ]
    )
    assert np.allclose(estimator._jacobian(x, theta), numeric, rtol=1e-4, atol=1e-7)


@given(
    st.lists(st.tuples(st.integers(0, 6), st.sampled_from(["", "@0.25", "@0.5", "@1"])), min_size=1, max_size=12),
    st.integers(0, 10),
)
@settings(max_examples=60, deadline=None)
def test_the_bootstrap_draws_a_run_and_its_cooldown_branches_together(names, seed):
    """Each resample holds every run of each trajectory it draws (a run and its `@fraction` branches) as often as the
    trajectory was drawn, and draws as many trajectories as there are."""
    from scalerec.analysis.fit import bootstrap_runs

    run_ids = list(dict.fromkeys(f"r{base}{branch}" for base, branch in names))
    bases = np.array([r.split("@")[0] for r in run_ids])
    for draw in bootstrap_runs(run_ids, 5, seed):
        counts = np.bincount(draw, minlength=len(run_ids))
        for base in set(bases):
            assert len(set(counts[bases == base])) == 1  # the trajectory's runs drawn alike
        drawn = sum(counts[bases == b][0] for b in set(bases))
        assert drawn == len(set(bases))


def test_without_branches_the_bootstrap_draws_runs_as_before():
    """Trajectories of one run each: the same draws as resampling the runs themselves with the same seed (so
    existing fits keep their intervals to the digit)."""
    from scalerec.analysis.fit import bootstrap_runs

    rng = np.random.default_rng(7)
    before = [rng.choice(np.arange(9), size=9) for _ in range(20)]
    now = bootstrap_runs([f"run{i}" for i in range(9)], 20, 7)
    assert all(np.array_equal(a, b) for a, b in zip(before, now, strict=True))
