import dataclasses
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scalerec.config import DataConfig, RunConfig, load_run_config
from scalerec.errors import ScalerecError
from scalerec.numbers import parse_number


def test_run_id_is_a_stable_hash_of_the_config():
    a, b = RunConfig(), RunConfig.from_dict({"train": {"epochs": 50}})
    assert a.run_id == b.run_id and len(a.run_id) == 12
    assert RunConfig.from_dict({"train": {"epochs": 49}}).run_id != a.run_id
    assert RunConfig.from_dict(a.to_dict()) == a


def test_toml_round_trip(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("seed = 3\n[model]\nhidden = 32\nn_heads = 4\n[train]\nlr = 1\neval_ks = [1, 5]\n")
    cfg = load_run_config(path)
    assert (cfg.seed, cfg.model.hidden, cfg.train.lr, cfg.train.eval_ks) == (3, 32, 1.0, (1, 5))


@pytest.mark.parametrize(
    "text, message",
    [
        ("[model]\nhiden = 3\n", "unknown key 'hiden'"),
        ("[model]\nhidden = 'big'\n", "must be an integer"),
        ("[model]\nhidden = 30\nn_heads = 4\n", "divisible"),
        ("[model]\nn_layers = 0\n", "n_layers must be >= 1"),
        ("[train]\nloss = 'bpr'\n", "sampled_softmax"),
        ("[train]\nn_negatives = 5000\n", "smaller than the catalog"),
        ("[data]\nname = 'movielens'\n", "unknown dataset"),
        ("[model\n", "invalid TOML"),
        ("colour = 1\n", "unknown key 'colour'"),
    ],
)
def test_bad_configs_give_one_line_errors(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ScalerecError, match=message) as info:
        load_run_config(path)
    assert "\n" not in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ScalerecError, match="no such file"):
        load_run_config(tmp_path / "nope.toml")


@pytest.mark.parametrize("text, value", [("1e6", 1e6), ("2.5M", 2.5e6), ("80k", 8e4), ("1.2B", 1.2e9), ("7", 7.0)])
def test_parse_number(text, value):
    assert parse_number(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["-1", "0", "abc", "1e6x", "", "nan", "inf", "1MM"])
def test_parse_number_rejects(text):
    with pytest.raises(ScalerecError):
        parse_number(text)


@given(st.floats(min_value=1e-3, max_value=1e15, allow_nan=False), st.sampled_from(["", "K", "M", "B"]))
def test_parse_number_property(value, suffix):
    scale = {"": 1, "K": 1e3, "M": 1e6, "B": 1e9}[suffix]
    assert parse_number(f"{value!r}{suffix}") == pytest.approx(value * scale, rel=1e-12)


def test_fields_added_later_keep_old_run_ids_until_set():
    """A run id from before train.precision existed (its JSON without the field) is still the id at the default."""
    import hashlib

    from scalerec.config import ADDED_FIELDS, canonical_json

    cfg = RunConfig.from_dict({"recipe": "scalerec-0.1"})  # every added field at the value it had before it existed
    before = cfg.to_dict()
    for section, name in ADDED_FIELDS:
        del before[section][name]
    assert cfg.run_id == hashlib.sha256(canonical_json(before).encode()).hexdigest()[:12]
    assert RunConfig.from_dict({"recipe": "scalerec-0.1", "train": {"precision": "bf16"}}).run_id != cfg.run_id


def test_a_stored_config_from_before_a_field_keeps_the_value_it_had_then():
    """0.2 made the reference recipe the default; a 0.1 run's stored config (no block_norm) is still pre-LN."""
    from scalerec.config import ADDED_FIELDS

    old = RunConfig.from_dict({"recipe": "scalerec-0.1"})
    stored = old.to_dict()
    for section, name in ADDED_FIELDS:
        del stored[section][name]
    rebuilt = RunConfig.from_stored(stored)
    assert rebuilt == old and rebuilt.model.block_norm == "pre" and rebuilt.run_id == old.run_id
    assert RunConfig.from_dict(stored).model.block_norm == "post"  # today's default, for a config someone writes


@pytest.mark.parametrize("recipe", ["srt-reference", "scalerec-0.1", "iclrec-sasrec"])
def test_a_recipe_states_only_what_differs_from_the_defaults(recipe):
    """A recipe that restated a default would be a second copy of it to keep equal."""
    from importlib import resources

    from scalerec.config import load_toml

    with resources.as_file(resources.files("scalerec.recipes") / f"{recipe}.toml") as file:
        written = load_toml(file)
    default = RunConfig().to_dict()
    restated = [f"{s}.{k}" for s, values in written.items() for k, v in values.items() if default[s][k] == v]
    assert written and not restated
    merged = {s: {**default[s], **written.get(s, {})} if isinstance(default[s], dict) else default[s] for s in default}
    assert RunConfig.from_dict({"recipe": recipe}) == RunConfig.from_dict(merged)  # nothing but its values


def test_bf16_on_cpu_is_a_clear_error(tmp_path):

    import pytest
    from conftest import tiny_config

    from scalerec.errors import ScalerecError
    from scalerec.store import RunStore
    from scalerec.train.trainer import train_run

    cfg = tiny_config()
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, precision="bf16"))
    with pytest.raises(ScalerecError, match="needs a CUDA device"):
        train_run(cfg, RunStore(tmp_path), device="cpu", progress=False)


def test_golden_run_ids(tmp_path):
    """Run ids are the store's keys: a change of field, default or canonical JSON that moves them orphans every
    existing run. 0.1's ids stay reachable with recipe "scalerec-0.1" (0.2 changed the defaults to the reference
    recipe's; fields added since enter the id only when set); 0.2's defaults have ids of their own, pinned here."""
    from importlib import resources

    from conftest import tiny_config

    from scalerec.grid.spec import expand, load_spec

    def ids_of_0_1(preset: str, n: int) -> list[str]:
        spec = tmp_path / f"{preset}.toml"
        text = (resources.files("scalerec.grid.presets") / f"{preset}.toml").read_text()
        spec.write_text('recipe = "scalerec-0.1"\n' + text)
        return [c.run_id for c in expand(*load_spec(str(spec), None))][:n]

    assert RunConfig.from_dict({"recipe": "scalerec-0.1"}).run_id == "48a44e8a41c2"
    assert ids_of_0_1("demo", 3) == ["3318d1594609", "e5711ea63454", "3a851bb6aa43"]
    assert ids_of_0_1("paper", 2) == ["a5441ddca211", "20f78fcc0bd6"]
    assert RunConfig().run_id == "618e5ca8bc6a"
    # tiny_config passes integers to float fields; before they were held as floats its id was 73290e2c1daf, which
    # its own stored record did not hash to (the TOML of the same config read 8 as 8.0)
    assert tiny_config().run_id == "af9f1b4aa165"
    assert RunConfig(DataConfig(mean_length=8)).run_id == RunConfig.from_dict({"data": {"mean_length": 8}}).run_id
    assert [c.run_id for c in expand(*load_spec(None, "demo"))][:3] == ["a75af6665ed3", "19952d6076fb", "9c44fed9649a"]
    assert [c.run_id for c in expand(*load_spec(None, "paper"))][:2] == ["03a0b2d8795b", "845a83340976"]


def test_config_show_prints_the_resolved_config_its_run_id_and_what_was_normalised(tmp_path):
    from helpers import scalerec_in_process

    from scalerec.config import tomllib

    (tmp_path / "run.toml").write_text(
        'recipe = "srt-reference"\n[model]\nhidden = 32\n[train]\ntargets = "all"\nprefix_batches = "one-pass"\n'
    )
    expected = RunConfig.from_dict({"recipe": "srt-reference", "model": {"hidden": 32}, "train": {"targets": "all"}})
    out = scalerec_in_process("config", "show", "run.toml", cwd=tmp_path).stdout
    assert out.splitlines()[0] == f"# run.toml: run id {expected.run_id}"
    assert "# normalised: train.prefix_batches: 'one-pass' -> 'padded'" in out
    assert RunConfig.from_dict(tomllib.loads(out)) == expected  # the printed TOML is the run, whole

    changed = tomllib.loads(scalerec_in_process("config", "show", "run.toml", "--changed", cwd=tmp_path).stdout)
    assert changed["model"] == {"hidden": 32} and changed["train"]["n_negatives"] == 300 and "data" not in changed

    store = tmp_path / "runs" / expected.run_id
    store.mkdir(parents=True)
    (store / "config.json").write_text(json.dumps({"config": expected.to_dict(), "dataset": {}}))
    shown = json.loads(scalerec_in_process("config", "show", expected.run_id, "--json", cwd=tmp_path).stdout)
    assert shown["run_id"] == expected.run_id and shown["config"]["model"]["hidden"] == 32

    for args, message in [(["nope"], "no such config file, run folder, or run id"), (["grid.toml"], "a grid spec")]:
        (tmp_path / "grid.toml").write_text("[grid]\nshapes = [[1, 2, 16]]\n")
        result = scalerec_in_process("config", "show", *args, cwd=tmp_path, ok=False)
        assert result.returncode == 1 and message in result.stderr


def test_a_grid_varies_the_seed_for_replicates(tmp_path):
    from scalerec.grid.spec import expand, load_spec

    spec = tmp_path / "grid.toml"
    spec.write_text('[grid]\nshapes = [[1, 1, 8]]\n[grid.vary]\n"train.epochs" = [1, 2]\nseed = [0, 3]\n')
    configs = expand(*load_spec(str(spec)))
    assert [(c.train.epochs, c.seed) for c in configs] == [(1, 0), (1, 3), (2, 0), (2, 3)]
    assert len({c.run_id for c in configs}) == 4
