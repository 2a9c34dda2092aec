"""End-to-end: the real console entry point on a tiny grid, and one-line errors on bad input."""

import json
import os
import subprocess
import sys

import pytest
from helpers import scalerec, scalerec_in_process

from scalerec.analysis.candidates import NT_CANDIDATES
from scalerec.data.slices import slice_names
from scalerec.store.runstore import read_checkpoints

TINY_GRID = """
[data]
n_items = 60
mean_length = 8
[model]
max_len = 10
dropout = 0.1
[train]
epochs = 3
batch_size = 16
lr = 0.003
n_negatives = 20
eval_negatives = 30
targets = "all"
[grid]
shapes = [[1, 2, 8], [1, 2, 16]]
[grid.vary]
"data.n_users" = [40, 120]
"""


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    (root / "grid.toml").write_text(TINY_GRID)
    dry = scalerec("grid", root / "grid.toml", "--runs", root / "runs", "--dry-run", "--json")
    assert [r["status"] for r in json.loads(dry.stdout)] == ["new"] * 4
    scalerec("grid", root / "grid.toml", "--runs", root / "runs", "--workers", "2")
    again = scalerec("grid", root / "grid.toml", "--runs", root / "runs", "--json")
    assert json.loads(again.stdout)["skipped"] == 4  # finished runs are not trained twice
    scalerec(
        "fit-laws",
        root / "runs",
        "--out",
        root / "analysis",
        "--points",
        "all",
        "--bootstrap",
        "20",
        "--holdout-largest",
        "1",
    )
    return root


@pytest.mark.slow
def test_grid_fit_predict(fitted):
    runs = json.loads(scalerec("runs", fitted / "runs", "--json").stdout)
    assert len(runs) == 4 and {r["status"] for r in runs} == {"done"}
    assert all(0 < r["cpu_hours"] and 0 < r["hours"] for r in runs)  # what each run cost, both clocks
    laws = json.loads((fitted / "analysis" / "laws.json").read_text())
    assert laws["schema_version"] == 2 and laws["data"]["runs"] == 4
    candidates = set(NT_CANDIDATES)  # each fitted when the store can tell it from Eq. 4
    assert set(laws["laws"]) - candidates == {"saturating", "linear", "risk", "n_opt", "t_opt", "loss_nt", "loss_n"}
    assert laws["backtest"]["selection"]["selected"] in {"risk"} | candidates
    assert len(list((fitted / "analysis" / "figures").glob("*.png"))) == 6  # backtest.png and nt_contours.png too
    report = (fitted / "analysis" / "report.md").read_text()
    assert "## Risk decomposition" in report and "## Held-out extrapolation check" in report
    assert "## Backtest: how far to trust each law" in report and "backtest" in laws
    assert laws["holdout"]["largest"]["k"] == 1 and len(laws["holdout"]["largest"]["held_out_runs"]) == 1
    rows = read_checkpoints(fitted / "runs")  # every run ranks every slice; these are too small to fit
    assert rows.valid_users__noise_10pct.min() > 0 and rows.valid_ndcg_at_5__ahead_1.notna().all()
    slices = {r["slice"]: r for r in laws["slices"]}
    assert list(slices) == ["all", *slice_names()] and slices["all"]["left_out"] is None
    assert all("fewer than 2 runs have at least 500" in slices[n]["left_out"] for n in slice_names())
    assert "## Slices: which cases gain most from size" in report

    out = json.loads(
        scalerec("predict", "--N", "5K", "--T", "1e5", "--laws", fitted / "analysis" / "laws.json", "--json").stdout
    )
    assert 0 <= out["prediction"]["value"] <= 1 and out["N"] == 5000
    budget = json.loads(
        scalerec(
            "predict",
            "--flops",
            "1e11",
            "--dataset-interactions",
            "20K",
            "--laws",
            fitted / "analysis" / "laws.json",
            "--json",
        ).stdout
    )
    fixed = budget["fixed_dataset"]  # epochs: of the unconstrained answer, or of the data-limited one
    epochs = budget.get("epochs") or fixed.get("epochs") or fixed["one_pass"]["epochs"]
    assert budget["envelope_allocation"]["N"]["value"] > 0 and epochs > 0
    assert budget["nearest_shape"]["n"] > 0
    text = scalerec("predict", "--flops", "1e11", "--laws", fitted / "analysis" / "laws.json").stdout
    assert "nearest shape" in text
    (fitted / "mine.toml").write_text("shapes = [[3, 3, 48], [5, 4, 512]]\n")
    mine = [
        json.loads(
            scalerec(
                "predict",
                "--flops",
                c,
                "--shapes",
                fitted / "mine.toml",
                "--laws",
                fitted / "analysis" / "laws.json",
                "--json",
            ).stdout
        )["nearest_shape"]
        for c in ("1e8", "1e30")
    ]
    assert [s["hidden"] for s in mine] == [48, 512] and mine[0]["source"].endswith("mine.toml")


@pytest.mark.slow
def test_an_archive_of_finished_runs_is_a_store_the_grid_skips(fitted, tmp_path):
    archive = tmp_path / "kept"
    scalerec("runs", fitted / "runs", "--archive", archive)
    kept = sorted(p.name for p in archive.rglob("*") if p.is_file())
    assert kept == sorted(["config.json", "checkpoints.parquet", "DONE"] * 4)  # records only, no state.pt
    assert json.loads(scalerec("grid", fitted / "grid.toml", "--runs", archive, "--json").stdout)["skipped"] == 4
    assert {r["status"] for r in json.loads(scalerec("runs", archive, "--json").stdout)} == {"done"}
    scalerec(
        "fit-laws", archive, "--out", tmp_path / "analysis", "--points", "all", "--bootstrap", "0", "--no-backtest"
    )
    assert json.loads((tmp_path / "analysis" / "laws.json").read_text())["data"]["runs"] == 4


@pytest.mark.slow
def test_check_store_tool_accepts_the_output(fitted):
    tool = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "tools", "check_store.py")
    if not os.path.exists(tool):
        pytest.skip("../shared/tools/check_store.py is absent")
    result = subprocess.run(
        [sys.executable, tool, fitted / "runs", fitted / "analysis", "4"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["grid", "missing.toml"], "no such file"),
        (["grid", "--preset", "huge"], "unknown preset 'huge'"),
        (["grid"], "give a grid spec file or --preset"),
        (["fit-laws", "empty"], "no runs"),
        (["predict", "--N", "-5", "--T", "1e6"], "--N"),
        (["predict", "--N", "lots", "--T", "1e6"], "not a number"),
        (["predict", "--N", "1e6"], "give --N and --T, or --flops"),
        (["predict", "--flops", "1e12", "--laws", "nope.json"], "no such file"),
        (["train", "bad.toml"], "unknown key 'hiden'"),
        (["grid", "badgrid.toml", "--dry-run"], "grid.shapes entry must be"),
        (["predict", "--N", "1e6", "--T", "1e6", "--laws", "old.json"], "schema version 0"),
        (["fit-laws", "foreign"], "not a scalerec checkpoints file"),
        (["predict", "--flops", "1e12", "--shapes", "badgrid.toml"], "each shape must be"),
        (["predict", "--N", "1e6", "--T", "1e6", "--shapes", "badgrid.toml"], "--shapes goes with --flops"),
    ],
)
def test_bad_input_gives_one_line_error(tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.toml").write_text("[model]\nhiden = 3\n")
    (tmp_path / "badgrid.toml").write_text("[grid]\nshapes = [[1, 2]]\n")
    (tmp_path / "old.json").write_text(json.dumps({"schema_version": 0, "laws": {}}))
    (tmp_path / "foreign" / "r").mkdir(parents=True)
    import pandas as pd

    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "foreign" / "r" / "checkpoints.parquet")
    (tmp_path / "foreign" / "r" / "config.json").write_text("{}")
    result = scalerec_in_process(*args, cwd=tmp_path, ok=False)
    assert result.returncode in (1, 2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("scalerec: error:") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_killed_grid_leaves_no_orphans_and_resumes(tmp_path):
    import signal
    import time

    from scalerec.errors import ScalerecError
    from scalerec.store import RunStore

    (tmp_path / "grid.toml").write_text(
        TINY_GRID.replace("epochs = 3", "epochs = 30")
        .replace("[[1, 2, 8], [1, 2, 16]]", "[[1, 2, 16]]")
        .replace("[40, 120]", "[150, 160]")
    )
    command = [
        sys.executable,
        "-m",
        "scalerec",
        "grid",
        str(tmp_path / "grid.toml"),
        "--runs",
        str(tmp_path / "runs"),
        "--workers",
        "2",
    ]
    env = os.environ | {"TQDM_DISABLE": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def rows(file) -> int:  # the store's reader: one open, so the writer's rename never tears what it reads
        return len(read_checkpoints(file))

    deadline = time.time() + 180
    while time.time() < deadline:
        files = list((tmp_path / "runs").glob("*/checkpoints.parquet"))
        if len(files) == 2 and min(rows(f) for f in files) >= 2:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    store = RunStore(tmp_path / "runs")

    def run_still_locked() -> str | None:
        for run_id in store.run_ids():
            try:
                with store.lock(run_id):
                    pass
            except ScalerecError:
                return run_id
        return None

    deadline = time.time() + 10  # the kernel kills the workers with their parent: poll until they are gone
    while (held := run_still_locked()) and time.time() < deadline:
        time.sleep(0.05)
    assert held is None, f"a worker of the killed grid still holds run {held}"
    assert len(read_checkpoints(tmp_path / "runs")) < 60
    scalerec(*command[3:])
    rows = read_checkpoints(tmp_path / "runs")
    for _, run in rows.groupby("run_id"):
        assert list(run.epoch) == [float(e) for e in range(1, 31)]


def test_analysis_and_predict_never_import_torch():
    code = (
        "import sys, scalerec.cli\n"
        "from scalerec.analysis import fit_laws, holdout, plots, predict, report\n"
        "from scalerec.store import read_checkpoints\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def store_with_finetuning(fitted, tmp_path_factory):
    """The tiny grid's store plus one fine-tuning run on the data of its larger runs (from one of its smaller)."""
    import shutil

    root = tmp_path_factory.mktemp("transfer")
    shutil.copytree(fitted / "runs", root / "runs")
    rows = read_checkpoints(root / "runs")
    parent = rows.run_id[rows.n_users == 40].iloc[0]
    (root / "target.toml").write_text("[data]\nn_users = 120\nn_items = 60\nmean_length = 8\n")
    scalerec(
        "finetune",
        "--from",
        root / "runs" / parent,
        "--data",
        root / "target.toml",
        "--runs",
        root / "runs",
        "--layer-epochs",
        "1",
        "--embedding-epochs",
        "1",
        "--eval-every",
        "1",
    )
    return root / "runs"


NOTEBOOKS = ["fig4_metric_vs_compute", "fig5_allocation", "fig6_nt_contours", "fig7_transfer", "slices"]


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_plotting_notebooks_execute_on_a_store(name, fitted, store_with_finetuning, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = os.path.join(os.path.dirname(__file__), "..", "notebooks", f"{name}.ipynb")
    nb = nbformat.read(notebook, as_version=4)
    settings = {
        "SCALEREC_RUNS": str(store_with_finetuning),
        "SCALEREC_LAWS": str(fitted / "analysis" / "laws.json"),
        "SCALEREC_MIN_SLICE_USERS": "1",
    }  # the tiny store's slices are far below the default minimum
    os.environ.update(settings)
    try:
        nbclient.NotebookClient(
            nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
    finally:
        for key in settings:
            del os.environ[key]
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, f"{name} drew nothing: {[o.get('text', '') for o in outputs]}"


def test_every_notebook_is_executed_by_the_tests():
    folder = os.path.join(os.path.dirname(__file__), "..", "notebooks")
    assert sorted(f[:-6] for f in os.listdir(folder) if f.endswith(".ipynb")) == sorted(NOTEBOOKS)


def test_the_cli_offers_every_point_policy():
    from scalerec.analysis.envelope import POINT_POLICIES
    from scalerec.cli import main

    fit = main.get_command(None, "fit-laws")
    choices = next(p.type.choices for p in fit.params if p.name == "points")
    assert tuple(choices) == POINT_POLICIES
