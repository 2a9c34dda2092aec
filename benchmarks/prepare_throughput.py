"""Throughput and peak memory of reading raw Amazon reviews: scalerec's streaming reader and `scalerec data prepare`
against pandas.read_json(lines=True), on the same generated Amazon-2014-format file, side by side in one run.

    python -m benchmarks.prepare_throughput [--lines 2000000] [--gzip]

Each contender runs in its own process so that its peak resident memory (ru_maxrss) is its own. Prints a table and
writes it to benchmarks/results/prepare_throughput.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONTENDERS = {
    "scalerec reader (read_reviews)": """
from scalerec.data.amazon import read_reviews
from scalerec.data.lines import LineErrors
frame = read_reviews(PATH, LineErrors(False), progress=False)
rows = len(frame)
""",
    "scalerec data prepare (read + clean + sort + Parquet)": """
from scalerec.data.datasets import prepare_dataset
tables, _ = prepare_dataset(PATH, "amazon2014", OUT, force=True, progress=False)
rows = len(tables.interactions)
""",
    "pandas.read_json(lines=True)": """
import pandas as pd
frame = pd.read_json(PATH, lines=True, dtype=False, compression="infer")[["reviewerID", "asin", "unixReviewTime"]]
rows = len(frame)
""",
}

RUNNER = """
import resource, sys, time, json
PATH, OUT = sys.argv[1], sys.argv[2]
start = time.perf_counter()
{code}
seconds = time.perf_counter() - start
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"rows": rows, "seconds": seconds, "peak_mb": peak_mb}}))
"""

WORDS = (
    "great nice smells lovely skin hair dry soft works well price would buy again not worth it bottle "
    "color shade lasts all day sensitive gentle"
).split()


def generate(path: Path, lines: int, compress: bool) -> None:
    """An Amazon-2014-format reviews file: 1 line per review, ~25 users' worth of items each, realistic fields."""
    rng = random.Random(0)
    n_users, n_items = max(10, lines // 9), max(10, lines // 16)
    opener = gzip.open if compress else open
    with opener(path, "wt", encoding="utf-8") as handle:
        for _ in range(lines):
            user, item = rng.randrange(n_users), int(rng.paretovariate(1.2)) % n_items
            text = " ".join(rng.choices(WORDS, k=rng.randint(10, 60)))
            handle.write(
                json.dumps(
                    {
                        "reviewerID": f"A{user:013X}",
                        "asin": f"B{item:09d}",
                        "reviewerName": "Some Reviewer",
                        "helpful": [rng.randint(0, 3), rng.randint(3, 6)],
                        "reviewText": text,
                        "overall": float(rng.randint(1, 5)),
                        "summary": " ".join(rng.choices(WORDS, k=4)),
                        "unixReviewTime": 1_300_000_000 + rng.randrange(10**8),
                        "reviewTime": "01 1, 2013",
                    }
                )
                + "\n"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--gzip", action="store_true", help="gzip the generated file")
    parser.add_argument(
        "--only",
        help="run only the contenders whose name contains this text (e.g. 'prepare': "
        "pandas needs ~3.5 GB per million lines)",
    )
    args = parser.parse_args()
    contenders = {k: v for k, v in CONTENDERS.items() if not args.only or args.only in k}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("reviews_Bench.json" + (".gz" if args.gzip else ""))
        started = time.perf_counter()
        generate(path, args.lines, args.gzip)
        size_mb = path.stat().st_size / 2**20
        print(
            f"generated {args.lines:,} lines, {size_mb:.0f} MB, in {time.perf_counter() - started:.0f} s",
            file=sys.stderr,
        )
        results = []
        for name, code in contenders.items():
            out = subprocess.run(
                [sys.executable, "-c", RUNNER.format(code=code), str(path), str(Path(tmp) / "ds")],
                capture_output=True,
                text=True,
                env=os.environ | {"TQDM_DISABLE": "1"},
            )
            if out.returncode:
                results.append((name, None, out.stderr.strip().splitlines()[-1]))
                continue
            results.append((name, json.loads(out.stdout.strip().splitlines()[-1]), ""))
            print(f"  {name}: done", file=sys.stderr)
    lines = [
        f"Input: {args.lines:,} Amazon-2014 review lines, {size_mb:.0f} MB{' gzipped' if args.gzip else ''}; "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}.",
        "",
        "| contender | rows | seconds | lines/s | peak memory (MB) |",
        "|---|---|---|---|---|",
    ]
    for name, result, error in results:
        if result is None:
            lines.append(f"| {name} | failed: {error} | | | |")
        else:
            lines.append(
                f"| {name} | {result['rows']:,} | {result['seconds']:.1f} | "
                f"{args.lines / result['seconds']:,.0f} | {result['peak_mb']:,.0f} |"
            )
    table = "\n".join(lines)
    print(table)
    suffix = f"{'_gzip' if args.gzip else ''}{'' if args.lines == 2_000_000 else f'_{args.lines}'}"
    out = Path(__file__).parent / "results" / f"prepare_throughput{suffix}.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(table + "\n")


if __name__ == "__main__":
    main()
