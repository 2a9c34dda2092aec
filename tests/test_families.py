"""fit-laws --by: laws per family of runs, their comparison, and predict --family."""

import json

import numpy as np
import pandas as pd
import pytest
from helpers import scalerec_in_process
from test_fit import _synthetic_store

from scalerec.analysis.estimators import SaturatingLaw
from scalerec.analysis.families import (
    EXPONENT_COLUMNS,
    compare,
    crossover,
    crossover_text,
    exponent_cells,
    family_laws,
    fit_families,
)
from scalerec.analysis.fit_laws import FitOptions, fit_laws
from scalerec.errors import ScalerecError


def _family(a, b, c, d, flops=(1e8, 1e12), seed=0):
    """A laws.json mapping whose envelope law is the saturating curve (a, b, c, d), with bootstrap refits."""
    grid = np.geomspace(*flops, 40)
    rng = np.random.default_rng(seed)
    law = SaturatingLaw(1e-3).fit((grid,), a / (1 + np.exp(-b * (np.log(grid) - c))) - d)
    refits = []
    for _ in range(30):  # refits on noisy copies, as the bootstrap's
        y = a / (1 + np.exp(-b * (np.log(grid) - c))) - d + rng.normal(0, 0.002, len(grid))
        refits.append(SaturatingLaw(1e-3).fit((grid,), y, [list(law.theta())]).theta())
    law.with_bootstrap(refits)
    return {
        "laws": {"saturating": law.to_dict()},
        "data": {"flops_range": list(flops)},
        "options": {"direction": "higher"},
    }


def test_the_crossover_is_where_one_envelope_overtakes_the_other_with_its_interval():
    # a: a fast riser with a low ceiling; b: slower, higher. They cross where their curves meet.
    a, b = _family(0.30, 1.2, 20.0, 0.0), _family(0.45, 0.5, 24.0, 0.0, seed=1)
    grid = np.geomspace(1e8, 1e12, 100_000)
    curve_a = 0.30 / (1 + np.exp(-1.2 * (np.log(grid) - 20.0)))
    curve_b = 0.45 / (1 + np.exp(-0.5 * (np.log(grid) - 24.0)))
    truth = grid[np.argmax(curve_b > curve_a)]  # b overtakes a
    pair = crossover("a", a, "b", b)
    assert pair["ahead_at_low"] == "a" and pair["ahead_at_high"] == "b"
    assert pair["crossover_flops"] == pytest.approx(truth, rel=0.02)
    low, high = pair["interval_90"]
    assert low <= truth <= high and pair["share_of_refits_crossing"] > 0.9


def test_no_crossover_in_the_fitted_range_is_said_so():
    pair = crossover("a", _family(0.5, 0.8, 21.0, 0.0), "b", _family(0.4, 0.8, 21.0, 0.0))
    assert pair["crossover_flops"] is None and pair["note"].startswith("no crossover in the fitted range: a is ahead")
    # at 1e12 the curves are 0.5 s and 0.4 s (s = the same sigmoid): a leads by 25% of b, in every refit
    s = 1 / (1 + np.exp(-0.8 * (np.log(1e12) - 21.0)))
    assert pair["lead_at_high"] == pytest.approx((0.5 * s - 0.4 * s) / (0.4 * s), rel=0.01)
    assert pair["share_of_refits_same_leader_at_high"] == 1.0
    assert "a leads by 25.0%, and 100% of the refits agree" in crossover_text(pair)
    close = crossover("a", _family(0.4002, 0.8, 21.0, 0.0), "b", _family(0.4, 0.8, 21.0, 0.0, seed=1))
    assert 0.2 < close["share_of_refits_same_leader_at_high"] < 0.9  # a 0.05% lead, inside the refits' noise
    apart = crossover("a", _family(0.5, 0.8, 21.0, 0.0, (1e8, 1e9)), "b", _family(0.4, 0.8, 21.0, 0.0, (1e10, 1e12)))
    assert "do not overlap" in apart["note"]


def test_the_power_forms_exponents_stand_beside_a_failed_eq4():
    """Far below its ceiling a metric leaves Eq. 4's α and β ≈ 0 (failed); N^a T^b's a and b still compare."""
    laws = {
        "risk": {"status": "failed", "params": {"alpha": 0.01, "beta": 0.02}},
        "power_nt": {"params": {"k": 1e-5, "a": 0.18, "b": 0.39}, "intervals_90": {"a": [0.16, 0.22]}},
    }
    exponents = compare({"x": {"laws": laws}})["exponents"]["x"]
    assert exponents["alpha"]["value"] is None and exponents["power_a"] == {"value": 0.18, "interval_90": [0.16, 0.22]}
    cells = dict(zip(EXPONENT_COLUMNS, exponent_cells(exponents)))
    assert cells["alpha"] == "failed" and cells["power_a"] == "0.18 [0.16, 0.22]" and cells["power_b"] == "0.39"
    assert cells["b"] == "not fitted"  # no envelope law in this family (e.g. a metric it cannot take)


def test_every_law_is_fitted_per_family_and_a_small_family_is_left_out():
    sasrec = _synthetic_store()
    hstu = _synthetic_store(truth={"e": 0.55, "a": 3.0, "alpha": 0.45, "b": 40.0, "beta": 0.35}, seed=1)
    hstu = hstu.assign(run_id="h" + hstu.run_id, block="hstu")
    tiny = hstu[hstu.run_id.isin(hstu.run_id.unique()[:2])].assign(block="tiny", run_id=lambda f: "t" + f.run_id)
    rows = pd.concat([sasrec, hstu, tiny], ignore_index=True)  # sasrec rows have no block: runs from before it
    options = FitOptions(points="all", bootstrap=20, backtest=False, slices=False)
    by = fit_families(rows, options, "block", lambda r, o: fit_laws(r, o))
    assert set(by["families"]) == {"sasrec", "hstu"} and "2 run(s)" in by["left_out"]["tiny"]
    alphas = {f: e["alpha"]["value"] for f, e in by["comparison"]["exponents"].items()}
    assert alphas["hstu"] == pytest.approx(0.45, abs=0.1) and alphas["sasrec"] == pytest.approx(0.35, abs=0.1)
    assert by["families"]["hstu"]["data"]["runs"] == 12
    with pytest.raises(ScalerecError, match="no column 'nope'"):
        fit_families(rows, options, "nope", lambda r, o: fit_laws(r, o))
    with pytest.raises(ScalerecError, match="no family 'x' by block"):
        family_laws({"by": by}, "x")
    with pytest.raises(ScalerecError, match="has no families"):
        family_laws({}, "hstu")


@pytest.mark.slow
def test_fit_laws_by_block_and_predict_a_family_on_trained_runs(tmp_path):
    spec = tmp_path / "grid.toml"
    spec.write_text(
        "[data]\nn_items = 60\nmean_length = 8\n[model]\nmax_len = 10\ndropout = 0.1\n"
        "[train]\nepochs = 3\nbatch_size = 32\nlr = 3e-3\nn_negatives = 20\neval_negatives = 30\ntargets = 'all'\n"
        "[grid]\nshapes = [[1, 1, 8], [1, 2, 16], [2, 2, 32]]\n"
        "[grid.vary]\n'model.block' = ['sasrec', 'hstu']\n'data.n_users' = [200, 600]\n"
    )
    scalerec_in_process("grid", spec, "--runs", "runs", cwd=tmp_path)
    args = ("fit-laws", "runs", "--by", "block", "--points", "all", "--bootstrap", "20", "--no-slices")
    out = scalerec_in_process(*args, cwd=tmp_path).stdout
    assert "block = hstu:" in out and "block = sasrec:" in out and "hstu vs sasrec:" in out
    laws = json.loads((tmp_path / "analysis" / "laws.json").read_text())
    assert laws["by"]["column"] == "block" and set(laws["by"]["families"]) == {"hstu", "sasrec"}
    report = (tmp_path / "analysis" / "report.md").read_text()
    assert "## Families by `block`" in report and "| a: m ∝ N^a |" in report
    assert (tmp_path / "analysis" / "figures" / "families.png").exists()
    answer = json.loads(
        scalerec_in_process("predict", "--flops", "1e9", "--family", "hstu", "--json", cwd=tmp_path).stdout
    )
    (tmp_path / "hstu.json").write_text(json.dumps(laws["by"]["families"]["hstu"]))
    alone = scalerec_in_process("predict", "--flops", "1e9", "--laws", "hstu.json", "--json", cwd=tmp_path).stdout
    assert answer == json.loads(alone)  # the family's own laws answer
    missing = scalerec_in_process("fit-laws", "runs", "--by", "nope", cwd=tmp_path, ok=False)
    assert missing.returncode == 1 and "no column 'nope'" in missing.stderr
