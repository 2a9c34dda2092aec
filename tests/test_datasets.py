"""Real-data layer: readers on fixture files written here, cleaning, k-core, nested subsets, atomic prepare."""

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from scalerec.data.datasets import prepare_dataset, read_source
from scalerec.data.prepare import clean, dataset_info, gini, kcore, read_dataset
from scalerec.data.subsample import nested_subsets
from scalerec.data.tabular import ColumnMapping, find_shared_beauty
from scalerec.errors import ScalerecError

REVIEWS_2014 = [
    {"reviewerID": "U1", "asin": "A", "unixReviewTime": 100, "overall": 5.0, "reviewText": "nice"},
    {"reviewerID": "U1", "asin": "B", "unixReviewTime": 50},
    {"reviewerID": "U1", "asin": "C", "unixReviewTime": 100},  # same time as A: file order kept
    {"reviewerID": "U2", "asin": "A", "unixReviewTime": "300"},
    {"reviewerID": "U1", "asin": "B", "unixReviewTime": 50},  # exact duplicate event
]
META_2014 = [
    "{'asin': 'A', 'title': 'Rose Oil', 'brand': 'Velo', 'categories': [['Beauty']]}",
    "{'asin': 'B', 'title': 'Mint &amp; Tea Soap'}",
    "{'asin': 'Z', 'title': 'never reviewed'}",
]


def _write(path: Path, lines: list[str], compress: bool = False) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def _reviews(tmp_path, compress=True, extra=()):
    lines = [json.dumps(r) for r in REVIEWS_2014] + list(extra)
    return _write(tmp_path / f"reviews.json{'.gz' if compress else ''}", lines, compress)


def test_amazon_2014_reviews_and_literal_meta(tmp_path):
    meta = _write(tmp_path / "meta.json.gz", META_2014, compress=True)
    inter, items, report = read_source(_reviews(tmp_path), "amazon2014", meta=meta, progress=False)
    assert len(inter) == 5 and report["skipped_lines"] == 0
    assert dict(zip(items.item_id, items.title)) == {"A": "Rose Oil", "B": "Mint & Tea Soap"}
    tables, report = prepare_dataset(_reviews(tmp_path), "amazon2014", tmp_path / "ds", meta=meta, progress=False)
    user1 = tables.interactions[tables.interactions.user_id == "U1"]
    assert list(user1.item_id) == ["B", "A", "C"]  # by time, ties in file order
    assert report["cleaning"][1]["dropped"] == 1
    assert tables.items.set_index("item_id").loc["C", "title"] == ""  # no text: kept with an empty text


def test_meta_is_never_evaluated(tmp_path):
    meta = _write(tmp_path / "meta.json", ["__import__('os').system('touch pwned')"])
    with pytest.raises(ScalerecError, match="meta.json:1: not a Python literal"):
        read_source(_reviews(tmp_path), "amazon2014", meta=meta, progress=False)
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_amazon_2018_html_titles_and_duplicate_meta(tmp_path):
    meta = _write(
        tmp_path / "meta.json",
        [
            json.dumps({"asin": "A", "title": '<span class="x">Rose</span> Oil &amp; More', "brand": " Velo "}),
            json.dumps({"asin": "A", "title": "a later duplicate line", "brand": "X"}),
            json.dumps({"asin": "B", "title": None}),
        ],
    )
    _, items, _ = read_source(_reviews(tmp_path, compress=False), "amazon2018", meta=meta, progress=False)
    row = items.set_index("item_id").loc["A"]
    assert (row.title, row.brand) == ("Rose Oil & More", "Velo")
    assert items.set_index("item_id").loc["B", "title"] == ""


@pytest.mark.parametrize(
    "bad, reason",
    [
        (b"{not json", "reviews.json:6: not JSON"),
        (b'{"asin": "A", "unixReviewTime": 1}', "reviews.json:6: missing field: 'reviewerID'"),
        (b'{"reviewerID": "U", "asin": "A", "unixReviewTime": "soon"}', "reviews.json:6: non-numeric timestamp"),
        (b'{"reviewerID": "U\xff", "asin": "A", "unixReviewTime": 1}', "reviews.json:6: not UTF-8"),
    ],
)
def test_bad_lines_name_file_and_line_or_are_counted(tmp_path, bad, reason):
    path = _reviews(tmp_path, compress=False)
    path.write_bytes(path.read_bytes() + bad + b"\n")
    with pytest.raises(ScalerecError) as info:
        read_source(path, "amazon2014", progress=False)
    assert str(info.value).startswith(reason)
    inter, _, report = read_source(path, "amazon2014", skip_bad_lines=True, progress=False)
    assert len(inter) == 5 and report["skipped_lines"] == 1


def test_truncated_gzip_and_empty_file(tmp_path):
    path = _reviews(tmp_path)
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(ScalerecError, match="truncated or corrupt gzip"):
        read_source(path, "amazon2014", progress=False)
    empty = _write(tmp_path / "empty.json", [""])
    with pytest.raises(ScalerecError, match="empty"):
        read_source(empty, "amazon2014", progress=False)


def test_recbole_atomic_files(tmp_path):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "toy.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\nu1\ti1\t5\t10.0\nu1\ti2\t4\t5.0\nu2\ti1\t3\t7.0\n"
    )
    (tmp_path / "toy" / "toy.item").write_text("item_id:token\ttitle:token_seq\tbrand:token\ni1\tred lip\tAcme\n")
    inter, items, _ = read_source(tmp_path / "toy", "recbole")
    assert list(inter.timestamp) == [10, 5, 7] and list(inter.user_id) == ["u1", "u1", "u2"]
    assert items.set_index("item_id").loc["i1", "brand"] == "Acme"
    (tmp_path / "toy" / "toy.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\nu1\ti1\tlater\n")
    with pytest.raises(ScalerecError, match="toy.inter:2: non-numeric timestamp"):
        read_source(tmp_path / "toy", "recbole")


def test_table_with_a_column_mapping(tmp_path):
    pd.DataFrame(
        {
            "who": ["a", "a", "b"],
            "what": ["x", "y", "x"],
            "when": [2, 1, 3],
            "name": ["X thing", "Y thing", "X thing"],
            "maker": ["M", "", "M"],
        }
    ).to_csv(tmp_path / "t.csv", index=False)
    mapping = ColumnMapping("who", "what", "when", ("name", "maker"))
    inter, items, _ = read_source(tmp_path / "t.csv", "table", mapping=mapping)
    assert list(inter.item_id) == ["x", "y", "x"] and set(items.title) == {"X thing", "Y thing"}
    with pytest.raises(ScalerecError, match="no column 'colour'"):
        read_source(tmp_path / "t.csv", "table", mapping=ColumnMapping("who", "what", "when", ("colour",)))


def test_kcore_by_hand():
    # u3 has one interaction; removing it leaves item z with one, whose removal leaves u2 with one: all go.
    inter = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "u2", "u3", "u4", "u4"],
            "item_id": ["x", "y", "x", "z", "z", "x", "y"],
            "timestamp": range(7),
        }
    )
    core = kcore(inter, 2)
    assert sorted(zip(core.user_id, core.item_id)) == [("u1", "x"), ("u1", "y"), ("u4", "x"), ("u4", "y")]


def test_nested_subsets_hit_their_targets_and_nest(tmp_path):
    from scalerec.config import DataConfig
    from scalerec.data.synthetic import generate

    tables = generate(DataConfig(n_users=300, n_items=100))
    subsets = nested_subsets(tables, [1000, 3000, 5000], seed=3)
    users = [set(s[1].user_id) for s in subsets]
    assert users[0] < users[1] < users[2]
    for (target, inter, _), _users in zip(subsets, users):
        assert target <= len(inter) < target + inter.groupby("user_id").size().max()
    with pytest.raises(ScalerecError, match="exceeds"):
        nested_subsets(tables, [10**9])


def test_gini():
    assert gini([5, 5, 5, 5]) == pytest.approx(0.0)
    assert gini([0, 0, 0, 10]) == pytest.approx(0.75)


def test_round_trip_and_interrupted_prepare(tmp_path, monkeypatch):
    inter = pd.DataFrame({"user_id": ["a", "a", "a"], "item_id": ["x", "y", "z"], "timestamp": [1, 2, 3]})
    items = pd.DataFrame({"item_id": ["x", "y"], "title": ["X", "Y"], "brand": ["", "B"]})
    inter, items, _ = clean(inter, items)
    from scalerec import parquet_io
    from scalerec.data.prepare import write_dataset

    written = write_dataset(tmp_path / "ds", "ds", inter, items, {})
    again = read_dataset(tmp_path / "ds")
    pd.testing.assert_frame_equal(written.interactions, again.interactions)
    pd.testing.assert_frame_equal(written.items, again.items)
    assert dataset_info(tmp_path / "ds")["fingerprint"] == again.fingerprint

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(parquet_io, "write_parquet", crash)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(tmp_path / "half", "half", inter, items, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # nothing half-written is left


SHARED_BEAUTY = Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon-beauty-5core"


def test_shared_beauty_has_the_papers_statistics(tmp_path, monkeypatch):
    if not SHARED_BEAUTY.is_dir():
        pytest.skip(f"{SHARED_BEAUTY} is absent")
    monkeypatch.setenv("SCALEREC_BEAUTY", str(SHARED_BEAUTY))
    assert find_shared_beauty() == SHARED_BEAUTY
    tables, _ = prepare_dataset("beauty", "beauty", tmp_path / "beauty", progress=False)
    stats = dataset_info(tmp_path / "beauty")["stats"]
    assert (stats["users"], stats["items"], stats["interactions"]) == (22363, 12101, 198502)  # paper Table 2
    assert stats["seq_len_quantiles"]["min"] >= 5
    assert 0.70 < stats["items_with_brand"] / stats["items"] < 0.80  # 76.5% have a brand


@pytest.mark.slow
def test_cli_prepare_subsample_and_train_on_it(tmp_path):
    env = os.environ | {"TQDM_DISABLE": "1"}

    def scalerec(*args):
        result = subprocess.run(
            [sys.executable, "-m", "scalerec", *map(str, args)],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    from scalerec.config import DataConfig
    from scalerec.data.synthetic import generate

    tables = generate(DataConfig(n_users=200, n_items=60, mean_length=8))
    tables.interactions.rename(columns={"timestamp": "t"}).to_csv(tmp_path / "inter.csv", index=False)
    tables.items.to_parquet(tmp_path / "items.parquet")
    scalerec(
        "data",
        "prepare",
        "inter.csv",
        "--format",
        "table",
        "--time",
        "t",
        "--items",
        "items.parquet",
        "--out",
        "ds",
        "--kcore",
        "2",
    )
    ladder = json.loads(
        scalerec("data", "subsample", "ds", "--interactions", "500,1K,all", "--out", "ladder", "--json")
    )
    assert [r["interactions"] >= t for r, t in zip(ladder, (500, 1000))] == [True, True]
    whole = json.loads(scalerec("data", "stats", "ds", "--json"))[0]
    assert ladder[2]["dataset"].endswith("all") and len(ladder) == 3  # the top rung: every interaction
    assert ladder[2]["interactions"] == whole["interactions"] and ladder[2]["users"] == whole["users"]
    shutil.rmtree(tmp_path / "ladder" / "all")  # the grid below trains the two subsets
    (tmp_path / "grid.toml").write_text(
        '[data]\nname = "prepared"\n[model]\nhidden = 16\nn_layers = 1\nmax_len = 10\n'
        '[train]\nepochs = 1\nn_negatives = 10\ntargets = "all"\n'
        '[grid.vary]\n"data.path" = ["ladder/500", "ladder/1000"]\n'
    )
    runs = json.loads(scalerec("grid", "grid.toml", "--runs", "runs", "--json"))
    assert runs["done"] == 2
    stats = json.loads(scalerec("data", "stats", "ds", "ladder/500", "--json"))
    assert stats[0]["interactions"] > stats[1]["interactions"]
    # --data LADDER gives the same runs (same ids) as naming the ladder in the spec; the cost probe's D is exact
    plan = json.loads(scalerec("grid", "grid.toml", "--data", "ladder", "--runs", "runs", "--dry-run", "--json"))
    trained = json.loads(scalerec("runs", "runs", "--json"))
    assert sorted(r["run_id"] for r in plan) == sorted(r["run_id"] for r in trained)
    assert {r["status"] for r in plan} == {"done"}
    assert sorted(r["D"] for r in plan) == sorted(r["D"] for r in trained)
