"""The bad-input contract of every command: one line `scalerec: error: ...`, a non-zero exit, no traceback, nothing
left on disk; strict JSON; progress bars only on a terminal; predictions inside what the metric can be."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import tiny_config
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from scalerec import jsonio
from scalerec.cli import main, run
from scalerec.config import DataConfig, ModelConfig, TrainConfig
from scalerec.errors import ScalerecError
from scalerec.numbers import parse_number
from scalerec.store import RunStore
from scalerec.store.schema import COLUMNS


def invoke(*args) -> tuple[int, str, str]:
    """The console entry point in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            run([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert code in (1, 2), (code, err)
    assert len(lines) == 1 and lines[0].startswith("scalerec: error: "), err
    assert "Traceback" not in err and "\r" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def strict_loads(text: str):
    """json.loads that rejects NaN and Infinity, as every strict parser does."""

    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _rows(run_id: str, n: int, d: int, *, metric=True, epochs: int = 4) -> pd.DataFrame:
    """Checkpoint rows of a made-up run following NDCG = 0.5 - 3/N^0.35 - 40/T^0.35."""
    rows = []
    for epoch in range(1, epochs + 1):
        t = epoch * d
        row = {
            name: (
                0
                if pa.types.is_integer(kind)
                else 0.0
                if pa.types.is_floating(kind)
                else False
                if pa.types.is_boolean(kind)
                else "x"
            )
            for name, (kind, _) in COLUMNS.items()
        }
        row |= {
            "run_id": run_id,
            "step": epoch,
            "epoch": float(epoch),
            "is_final": epoch == epochs,
            "schedule_fraction": epoch / epochs,
            "seen_interactions": t,
            "dataset_interactions": d,
            "train_flops": 12.0 * n * t,
            "non_embedding_params": n,
            "total_params": 2 * n,
            "n_layers": 2,
            "n_heads": 2,
            "hidden": 32,
            "item_encoder": "text",
            "valid_loss": 5.0 - 0.1 * epoch,
        }
        if metric:
            row["valid_ndcg_at_5"] = 0.5 - 3 / n**0.35 - 40 / t**0.35 + 0.001 * ((n + epoch) % 3)
        rows.append(row)
    return pd.DataFrame(rows)


def write_run(store: RunStore, run_id: str, rows: pd.DataFrame, d: int) -> None:
    store.write_config(run_id, {"run_id": run_id, "dataset": {"name": "made-up", "dataset_interactions": d}})
    store.write_rows(run_id, rows)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> Path:
    """A made-up store of 9 runs and its laws.json."""
    root = tmp_path_factory.mktemp("contract")
    store = RunStore(root / "runs")
    for n in (3000, 10000, 30000):
        for d in (10000, 30000, 100000):
            write_run(store, f"n{n}d{d}", _rows(f"n{n}d{d}", n, d), d)
    code, _, err = invoke("fit-laws", root / "runs", "--out", root / "analysis", "--bootstrap", "20")
    assert code == 0, err
    return root


# -- 1. the last-resort handler and usage errors --------------------------------------------------------------------


def test_an_unforeseen_exception_is_one_line_and_debug_shows_it(fitted, monkeypatch):
    import scalerec.analysis.fit_laws as fit_laws

    def boom(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(fit_laws, "fit_laws", boom)
    code, _, err = invoke("fit-laws", fitted / "runs", "--out", fitted / "other")
    assert_one_line_error(
        code, err, "internal error: RuntimeError: boom second line", "(rerun with --debug for the traceback)"
    )
    with pytest.raises(RuntimeError, match="boom"):
        run(["--debug", "fit-laws", str(fitted / "runs"), "--out", str(fitted / "other")])


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["data", "prepar", "x"], ["No such command 'prepar'", "see 'scalerec data --help'"]),
        (["data", "prepare"], ["Missing argument 'SOURCE'", "see 'scalerec data prepare --help'"]),
        (["predict", "--N"], ["requires an argument", "see 'scalerec predict --help'"]),
        (["nope"], ["No such command 'nope'", "see 'scalerec --help'"]),
    ],
)
def test_usage_errors_are_one_line_naming_the_right_command(args, fragments):
    assert_one_line_error(*invoke(*args)[::2], *fragments)


def test_every_option_has_help():
    missing = []

    def walk(command: click.Command, path: str) -> None:
        missing.extend(
            f"{path} {p.opts[0]}" for p in command.params if isinstance(p, click.Option) and not p.help and not p.hidden
        )
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(main, "scalerec")
    assert not missing, missing


# -- checks before anything is written ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "toml, fragment",
    [
        ("[train]\nlr = nan\n", "train: lr must be a finite number"),
        ("[train]\nlr = inf\n", "train: lr must be a finite number"),
        ("[data]\nmean_length = inf\n", "data: mean_length must be a finite number"),
        ("[model]\ndropout = -inf\n", "model: dropout must be a finite number"),
        ("[train]\nsgd_momentum = 1.5\n", "sgd_momentum in [0, 1)"),
    ],
)
def test_non_finite_and_out_of_range_config_floats_are_refused(tmp_path, toml, fragment):
    (tmp_path / "run.toml").write_text(toml)
    before = listing(tmp_path)
    assert_one_line_error(*invoke("train", tmp_path / "run.toml", "--runs", tmp_path / "runs")[::2], fragment)
    assert listing(tmp_path) == before


def test_finite_floats_are_checked_for_library_callers_too():
    for make in (
        lambda: TrainConfig(lr=math.inf),
        lambda: DataConfig(mean_length=math.nan),
        lambda: ModelConfig(layer_dropout=(math.nan, 0.1)),
    ):
        with pytest.raises(ScalerecError, match="finite"):
            make()


@pytest.mark.parametrize(
    "device, fragment",
    [("tpu", "unknown"), ("cuda:x", "unknown"), ("meta", "scalerec trains on")]
    + ([("cuda", "not available")] if not __import__("torch").cuda.is_available() else []),
)
def test_unknown_or_absent_devices_stop_train_before_anything_is_written(tmp_path, device, fragment):
    (tmp_path / "run.toml").write_text("[train]\nepochs = 1\n")
    before = listing(tmp_path)
    assert_one_line_error(
        *invoke("train", tmp_path / "run.toml", "--runs", tmp_path / "runs", "--device", device)[::2],
        f"device {device!r}",
        fragment,
    )
    assert listing(tmp_path) == before


def test_a_run_that_fails_before_training_leaves_no_folder(tmp_path, monkeypatch):
    from scalerec.train import trainer

    def refuse(self, *args, **kwargs):
        raise ScalerecError("train.n_negatives (500) must be below the catalog size (60 items)")

    monkeypatch.setattr(trainer.Trainer, "__init__", refuse)
    store = RunStore(tmp_path / "runs")
    with pytest.raises(ScalerecError, match="catalog size"):
        trainer.train_run(tiny_config(), store, progress=False)
    assert not store.run_dir(tiny_config().run_id).exists() and not any(store.root.iterdir())


def test_a_run_that_fails_while_training_is_marked_with_its_reason(tmp_path, monkeypatch):
    from scalerec.train import trainer

    def fail(self, bar):
        raise OSError("disk on fire")

    monkeypatch.setattr(trainer.Trainer, "_train_epoch", fail)
    store, cfg = RunStore(tmp_path / "runs"), tiny_config()
    with pytest.raises(OSError):
        trainer.train_run(cfg, store, progress=False)
    assert store.status(cfg.run_id) == "failed" and store.failure(cfg.run_id) == "OSError: disk on fire"
    code, out, _ = invoke("runs", tmp_path / "runs", "--json")
    assert code == 0 and strict_loads(out)[0]["reason"] == "OSError: disk on fire"
    code, out, _ = invoke("runs", tmp_path / "runs")
    assert "OSError: disk on fire" in out


def test_a_second_writer_does_not_mark_the_first_ones_run_failed(tmp_path):
    store = RunStore(tmp_path)
    with store.claim("abc"):
        with pytest.raises(ScalerecError, match="another process"):
            with store.claim("abc"):
                pass
        assert store.failure("abc") is None
    assert not (tmp_path / "abc").exists()  # it never started: nothing is left


def _prepared(tmp_path: Path) -> Path:
    from scalerec.data.prepare import write_dataset

    rng = np.random.default_rng(0)
    inter = pd.DataFrame(
        {
            "user_id": np.repeat(np.arange(40), 6),
            "item_id": rng.integers(0, 30, 240),
            "timestamp": np.tile(np.arange(6), 40),
        }
    )
    items = pd.DataFrame({"item_id": np.arange(30), "title": [f"item {i}" for i in range(30)], "brand": "b"})
    write_dataset(tmp_path / "ds", "ds", inter, items, {})
    return tmp_path / "ds"


@pytest.mark.parametrize(
    "targets, fragment",
    [
        ("100,100", "lists 100 more than once"),
        ("0.5", "0.5 is not a whole number"),
        ("100.5", "not a whole number"),
        ("50,1M", "exceeds"),
        ("50,existing", "not a number"),
        ("", "needs at least one target"),
        ("all,50,all", "lists all more than once"),
    ],
)
def test_subsample_checks_every_target_before_writing_any(tmp_path, targets, fragment):
    ds = _prepared(tmp_path)
    before = listing(tmp_path)
    assert_one_line_error(
        *invoke("data", "subsample", ds, "--interactions", targets, "--out", tmp_path / "ladder")[::2], fragment
    )
    assert listing(tmp_path) == before


def test_subsample_refuses_an_existing_target_before_writing_the_others(tmp_path):
    ds = _prepared(tmp_path)
    assert invoke("data", "subsample", ds, "--interactions", "100", "--out", tmp_path / "ladder")[0] == 0
    before = listing(tmp_path)
    assert_one_line_error(
        *invoke("data", "subsample", ds, "--interactions", "50,100", "--out", tmp_path / "ladder")[::2],
        "100: already exists",
    )
    assert listing(tmp_path) == before


def test_prepare_names_a_directory_as_a_directory(tmp_path):
    assert_one_line_error(
        *invoke("data", "prepare", tmp_path, "--format", "amazon2014", "--out", tmp_path / "out")[::2], "is a directory"
    )


# -- store readers name the bad file; one definition of a run ------------------------------------------------------


def test_runs_names_a_corrupt_config_and_a_file_without_schema_columns(tmp_path):
    store = RunStore(tmp_path / "runs")
    write_run(store, "good", _rows("good", 1000, 1000), 1000)
    (store.run_dir("good") / "config.json").write_text("{not json")
    assert_one_line_error(*invoke("runs", store.root)[::2], "good/config.json: not a readable run config")
    # RunStore.write_rows refuses a table without the schema's columns: write one with pyarrow directly
    table = pa.Table.from_pandas(_rows("good", 1000, 1000).drop(columns=["train_flops"]), preserve_index=False)
    table = table.replace_schema_metadata({b"scalerec.schema_version": b"1"})
    store.write_config("good", {"run_id": "good", "dataset": {"dataset_interactions": 1000}})
    pq.write_table(table, store.run_dir("good") / "checkpoints.parquet")
    assert_one_line_error(*invoke("runs", store.root)[::2], "checkpoints.parquet", "train_flops")
    assert_one_line_error(*invoke("fit-laws", store.root, "--out", tmp_path / "a")[::2], "train_flops")


def test_runs_lists_a_run_without_the_default_metric(tmp_path):
    store = RunStore(tmp_path / "runs")
    write_run(store, "nometric", _rows("nometric", 1000, 1000, metric=False), 1000)
    code, out, err = invoke("runs", store.root, "--json")
    assert code == 0, err
    assert strict_loads(out)[0]["checkpoints"] == 4


@pytest.mark.slow
def test_runs_and_fit_laws_agree_on_what_a_run_is(fitted, tmp_path):
    import shutil

    shutil.copytree(fitted / "runs", tmp_path / "runs")
    stray = tmp_path / "runs" / "stray"  # checkpoints but no config.json: debris, not a run
    shutil.copytree(tmp_path / "runs" / "n3000d10000", stray)
    (stray / "config.json").unlink()
    listed = {r["run_id"] for r in strict_loads(invoke("runs", tmp_path / "runs", "--json")[1])}
    code, out, err = invoke("fit-laws", tmp_path / "runs", "--out", tmp_path / "a", "--bootstrap", "0", "--json")
    assert code == 0, err
    assert "stray" not in listed and strict_loads(out)["data"]["runs"] == len(listed) == 9


@pytest.mark.parametrize(
    "metric, fragment",
    [("run_id", "not numbers"), ("is_final", "not numbers"), ("valid_ndcg_at_7", "no column 'valid_ndcg_at_7'")],
)
def test_fit_laws_refuses_a_metric_that_is_no_number(fitted, tmp_path, metric, fragment):
    assert_one_line_error(
        *invoke("fit-laws", fitted / "runs", "--metric", metric, "--out", tmp_path / "a")[::2], fragment
    )
    assert not (tmp_path / "a").exists()


# -- strict JSON and progress bars --------------------------------------------------------------------------------


def test_strict_json_writes_null_for_what_could_not_be_computed():
    text = jsonio.dumps(
        {
            "a": float("nan"),
            "b": [np.float64("inf"), 1.5],
            "c": np.int64(3),
            "d": np.array([1.0]),
            "e": (np.bool_(True),),
        }
    )
    assert strict_loads(text) == {"a": None, "b": [None, 1.5], "c": 3, "d": [1.0], "e": [True]}


@pytest.mark.slow
def test_every_json_output_is_strict(fitted, tmp_path):
    # a run whose metric diverged: the envelope still fits, the laws.json and --json outputs stay strict JSON
    laws = (fitted / "analysis" / "laws.json").read_text()
    strict_loads(laws)
    for args in (
        ["runs", fitted / "runs", "--json"],
        ["fit-laws", fitted / "runs", "--out", tmp_path / "a", "--bootstrap", "5", "--json"],
        ["predict", "--N", "1e12", "--T", "10", "--laws", fitted / "analysis" / "laws.json", "--json"],
        ["predict", "--flops", "1,1e12", "--laws", fitted / "analysis" / "laws.json", "--json"],
    ):
        code, out, err = invoke(*args)
        assert code == 0, err
        strict_loads(out)


@pytest.mark.slow
def test_progress_bars_only_on_a_terminal_or_when_asked(fitted, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQDM_")}
    command = [
        sys.executable,
        "-m",
        "scalerec",
        "fit-laws",
        str(fitted / "runs"),
        "--out",
        str(tmp_path / "a"),
        "--bootstrap",
        "10",
    ]
    quiet = subprocess.run(command, capture_output=True, text=True, env=env)  # stderr is a pipe, not a terminal
    assert quiet.returncode == 0 and "\r" not in quiet.stderr and "bootstrap" not in quiet.stderr
    forced = subprocess.run([*command[:3], "--progress", *command[3:]], capture_output=True, text=True, env=env)
    assert forced.returncode == 0 and "bootstrap" in forced.stderr


# -- predictions inside what the metric can be --------------------------------------------------------------------


def test_predictions_outside_the_metric_domain_are_no_number(fitted):
    laws = fitted / "analysis" / "laws.json"
    code, out, err = invoke("predict", "--N", "1e12", "--T", "10", "--laws", laws, "--json")
    prediction = strict_loads(out)["prediction"]
    assert code == 0 and prediction["value"] is None and prediction["law_value"] < 0
    assert "outside the [0, 1]" in prediction["out_of_domain"]
    code, out, err = invoke("predict", "--N", "1e12", "--T", "10", "--laws", laws)
    assert "none (the law gives" in out and "outside the [0, 1] it can be" in err
    budget = strict_loads(invoke("predict", "--flops", "1", "--laws", laws, "--json")[1])
    n = budget["envelope_allocation"]["N"]
    assert n["value"] is None or n["value"] >= 1
    if budget["risk_law_allocation"]["metric"] is None:
        assert "not a run that can be" in budget["risk_law_allocation"]["out_of_domain"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(log_n=st.floats(0, 14), log_t=st.floats(0, 12))
def test_any_prediction_and_interval_lie_in_the_metric_domain(fitted, log_n, log_t):
    from scalerec.analysis.predict import load_laws, predict_nt

    entry = predict_nt(load_laws(fitted / "analysis" / "laws.json"), 10**log_n, 10**log_t)["prediction"]
    assert entry["value"] is None or 0 <= entry["value"] <= 1
    assert entry["interval_90"] is None or all(0 <= v <= 1 for v in entry["interval_90"])


def test_inputs_outside_the_fitted_range_are_warned_about(fitted):
    laws = fitted / "analysis" / "laws.json"
    _, _, err = invoke("predict", "--flops", "1e12", "--dataset-interactions", "10", "--laws", laws)
    assert "D = 10 is" in err and "epochs" in err and "outside the fitted range" in err


@pytest.mark.parametrize("law, args", [("risk", ["--N", "1e4", "--T", "1e5"]), ("saturating", ["--flops", "1e10"])])
def test_a_law_that_was_not_fitted_is_refused_by_name(fitted, tmp_path, law, args):
    data = json.loads((fitted / "analysis" / "laws.json").read_text())
    del data["laws"][law]
    data["backtest"] = None
    data["not_fitted"] = {law: "3 points cannot fit 5 parameters"}
    (tmp_path / "laws.json").write_text(json.dumps(data))
    code, out, err = invoke("predict", *args, "--laws", tmp_path / "laws.json")
    if law == "risk":
        assert_one_line_error(code, err, "the risk law was not fitted (3 points cannot fit 5 parameters)")
    else:  # the budget answers what it can and says what it cannot
        assert code == 0 and "the saturating law was not fitted" in out + err


# -- laws.json validated on load ----------------------------------------------------------------------------------

LAWS_PATHS = (
    [
        ("options", "metric"),
        ("options", "flops"),
        ("data", "flops_range"),
        ("data", "flops_range", 0),
        ("allocation", "k_flops_per_param_target"),
        ("shapes",),
        ("shapes", 0, "n"),
        ("shapes", 0, "hidden"),
    ]
    + [
        (("laws", law) + rest)
        for law in ("saturating", "risk", "n_opt", "t_opt")
        for rest in ((), ("params",), ("flags",), ("x_range",), ("x_range", 0))
    ]
    + [("laws", "risk", "params", "alpha"), ("laws", "saturating", "params", "a"), ("laws", "n_opt", "params", "k")]
)
JUNK = [None, "x", [], {}, -1.0, [["x"]], True]


def _mutated(data: dict, path: tuple, junk, delete: bool) -> dict:
    data = copy.deepcopy(data)
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = junk
    return data


def _still_valid(original, path: tuple, junk) -> bool:
    """Whether the junk is a legitimate value at that place after all (an empty list of flags, a number for a
    number that may be negative), so that the file is not malformed."""
    value = original
    for key in path:
        value = value[key]
    if path[-1] == "flags" or path == ("shapes",):
        return junk == []  # a fit without flags; runs with no shape (an imported table)
    return (type(junk) is type(value) and not isinstance(junk, (list, dict))) or (
        isinstance(value, (int, float)) and not isinstance(value, bool) and isinstance(junk, float) and junk > 0
    )


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(LAWS_PATHS), junk=st.sampled_from(JUNK), delete=st.booleans())
def test_a_malformed_laws_file_is_one_line_naming_what_is_wrong(fitted, tmp_path, path, junk, delete):
    original = json.loads((fitted / "analysis" / "laws.json").read_text())
    assume(delete or not _still_valid(original, path, junk))
    assume(not (delete and len(path) == 2 and path[0] == "laws"))  # a law not fitted: a refusal, tested apart
    bad = tmp_path / f"bad-{abs(hash((path, repr(junk), delete)))}.json"
    bad.write_text(json.dumps(_mutated(original, path, junk, delete)))
    before = listing(tmp_path)
    for args in (["--N", "1e4", "--T", "1e5"], ["--flops", "1e10"]):
        code, out, err = invoke("predict", *args, "--laws", bad)
        assert_one_line_error(code, err, str(bad))
    assert listing(tmp_path) == before


def test_a_version_1_laws_file_predicts_as_its_version_2(fitted, tmp_path):
    """Version 1 gave the envelope laws' x_range in ln C; read as version 2 it answers exactly as before."""
    laws = fitted / "analysis" / "laws.json"
    old = json.loads(laws.read_text())
    old["schema_version"] = 1
    for name in ("saturating", "linear"):
        old["laws"][name]["x_range"] = np.log(old["laws"][name]["x_range"]).tolist()
    (tmp_path / "v1.json").write_text(json.dumps(old))
    for args in (["--flops", "1e9"], ["--flops", "1e14"], ["--N", "1e4", "--T", "1e5"]):  # inside and beyond the fit
        answers = [
            json.loads(invoke("predict", *args, "--json", "--laws", path)[1]) for path in (laws, tmp_path / "v1.json")
        ]
        assert _close(*answers), answers


def _close(a, b) -> bool:
    """Equal JSON, numbers to 1e-9 relative (exp(ln x) may differ from x in the last bit)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_close, a, b))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9)
    return a == b


# -- 6. the contract under generated input ------------------------------------------------------------------------


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(_toml_value, value)) + "]"
    return str(value)


def _wrong_values(kind: type):
    """Values no field of this type takes: another type altogether, or a non-finite float."""
    floats = st.sampled_from([math.nan, math.inf, -math.inf])
    others = {
        int: st.one_of(st.text(max_size=5), floats, st.lists(st.integers(), max_size=2)),
        float: st.one_of(st.text(max_size=5), floats, st.booleans(), st.lists(st.floats(0, 1), max_size=2)),
        bool: st.one_of(st.text(max_size=5), st.integers(), floats),
        str: st.one_of(st.integers(), floats, st.booleans(), st.lists(st.text(max_size=3), max_size=2)),
    }
    return others.get(kind, st.one_of(st.text(max_size=5), floats))


def _fields():
    import dataclasses
    import typing

    out = []
    for section, cls in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig)):
        hints = typing.get_type_hints(cls)
        out += [(section, f.name, hints[f.name]) for f in dataclasses.fields(cls)]
    return out


@st.composite
def malformed_configs(draw) -> str:
    section, name, kind = draw(st.sampled_from(_fields()))
    if draw(st.booleans()):  # an unknown key instead
        name = draw(st.sampled_from(["hiden", "lr_max", "epoch", "n_negative", "x"]))
        value = draw(st.integers(0, 5))
    else:
        value = draw(_wrong_values(kind if kind in (int, float, bool, str) else list))
    return f"[{section}]\n{name} = {_toml_value(value)}\n"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(toml=malformed_configs())
def test_property_malformed_configs(tmp_path, toml):
    config = tmp_path / "run.toml"
    config.write_text(toml)
    before = listing(tmp_path)
    for args in (
        ["train", config, "--runs", tmp_path / "runs"],
        ["finetune", "--from", "x", "--data", config, "--runs", tmp_path / "runs"],
    ):
        assert_one_line_error(*invoke(*args)[::2])
    assert listing(tmp_path) == before


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.one_of(
        st.text(max_size=8),
        st.sampled_from(["0", "-5", "nan", "inf", "1e999", "-1e3", "1e6x", "", "1,,2", "2.5Q", "0.0"]),
    ),
    option=st.sampled_from(["--N", "--T", "--flops", "--dataset-interactions"]),
)
def test_property_bad_numbers(fitted, tmp_path, text, option):
    for part in text.split(","):
        try:
            parse_number(part)
        except ScalerecError:
            break
    else:
        assume(False)  # every part is a good number
    laws = fitted / "analysis" / "laws.json"
    base = {"--N": ["--T", "1e5"], "--T": ["--N", "1e4"], "--flops": [], "--dataset-interactions": ["--flops", "1e10"]}
    before = listing(tmp_path)
    assert_one_line_error(*invoke("predict", option, text, *base[option], "--laws", laws)[::2])
    assert listing(tmp_path) == before


def _junk_store(root: Path, config: bytes) -> Path:
    """A run store whose one run has `config` as its config.json and a junk checkpoints file."""
    run = root / "store" / "r1"
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_bytes(config)
    (run / "checkpoints.parquet").write_bytes(config)
    return root / "store"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.binary(max_size=200).map(lambda b: b"\x00" + b))  # a NUL byte: no TOML, JSON, Parquet or SQLite
def test_property_every_command_refuses_junk_in_one_line(tmp_path, junk):
    """Every command, given a file or store of junk where its input goes: one line, exit != 0, nothing written."""
    junk_file = tmp_path / "input.bin"
    junk_file.write_bytes(junk)
    store = _junk_store(tmp_path, junk)
    out = tmp_path / "out"
    commands = [
        ["grid", junk_file, "--runs", out, "--dry-run", "--no-cost"],
        ["train", junk_file, "--runs", out],
        ["runs", store],
        ["fit-laws", store, "--out", out],
        ["predict", "--N", "1e4", "--T", "1e5", "--laws", junk_file],
        ["predict", "--flops", "1e9", "--laws", junk_file],
        ["import-mlflow", junk_file, "--out", out],
        ["data", "prepare", junk_file, "--format", "amazon2014", "--out", out],
        ["data", "prepare", junk_file, "--format", "table", "--out", out],
        ["data", "prepare", junk_file, "--format", "recbole", "--out", out],
        ["data", "stats", store / "r1"],
        ["data", "subsample", store / "r1", "--interactions", "10", "--out", out],
        ["finetune", "--from", store / "r1", "--data", junk_file, "--runs", out],
        ["predict", "--flops", "1e9", "--shapes", junk_file, "--laws", junk_file],
    ]
    before = listing(tmp_path)
    for args in commands:
        code, _, err = invoke(*args)
        assert_one_line_error(code, err)
        assert listing(tmp_path) == before, args


@pytest.mark.slow
def test_fit_laws_warns_about_a_flagged_slice_beside_its_numbers(tmp_path):
    """A slice whose metric is noise (R² ≈ 0) is printed marked and warned about, not as plain numbers."""
    store = RunStore(tmp_path / "runs")
    rng = np.random.default_rng(0)
    for n in (3000, 10000, 30000):
        for d in (10000, 30000, 100000):
            rows = _rows(f"n{n}d{d}", n, d)
            rows = rows.assign(
                valid_ndcg_at_5__cold_le3=rows.valid_ndcg_at_5 - 0.1,
                valid_users__cold_le3=800,
                valid_ndcg_at_5__ahead_1=rng.uniform(0.1, 0.2, len(rows)),
                valid_users__ahead_1=900,
            )
            write_run(store, f"n{n}d{d}", rows, d)
    code, out, err = invoke("fit-laws", store.root, "--out", tmp_path / "analysis", "--bootstrap", "0", "--no-backtest")
    assert code == 0, err
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith("slice ")}
    warned = {line.split()[2].rstrip(":"): line for line in err.splitlines() if line.startswith("warning: slice ")}
    assert lines["ahead_1"].endswith("(flagged: see the warnings)") and "explains only 0%" in warned["ahead_1"]
    assert "explains only" not in warned.get("cold_le3", "")  # a slice that follows the law is not called noise
