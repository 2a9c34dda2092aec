"""The Beauty scaling study (issue 18): fit the laws of a `--preset beauty-ladder` store with the held-out check, and
write the study under benchmarks/results/beauty_scaling/: laws.json, report.md and figures/ (from `scalerec fit-laws`),
the executed figure notebooks, and README.md with the runs (estimated and measured hours), the laws, the per-slice
exponents and how well the largest runs were predicted from the smaller ones.

    scalerec data subsample ../shared/... --interactions 25K,50K,100K,all --out LADDER   (or data prepare first)
    scalerec grid --preset beauty-ladder --data LADDER --runs RUNS --workers 2      (resumable; hours)
    python -m benchmarks.beauty_scaling --runs RUNS --ladder LADDER [--id-runs ID_RUNS]

Works on a store that is still training (the README says how many runs had finished); every number it writes comes
from the store and the fits made here.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

from scalerec.analysis.envelope import best_checkpoints
from scalerec.store import RunStore, read_checkpoints
from scalerec.store.provenance import git_state
from scalerec.store.summary import run_seconds

HERE = Path(__file__).resolve().parent

NOTEBOOKS = ("fig4_metric_vs_compute", "fig5_allocation", "fig6_nt_contours", "slices")
# the hard cases compared between the text and the ID encoder (test metric at the best validation checkpoint)
COMPARED_SLICES = ("cold_le3", "tail_items", "noise_30pct", "ahead_3")


def fit(runs: Path, out: Path, args: argparse.Namespace) -> dict:
    """`scalerec fit-laws` as a user runs it; returns its laws.json."""
    command = [
        sys.executable,
        "-m",
        "scalerec",
        "fit-laws",
        str(runs),
        "--out",
        str(out),
        "--metric",
        args.metric,
        "--holdout-largest",
        str(args.holdout_largest),
        "--bootstrap",
        str(args.bootstrap),
    ]
    if subprocess.run(command).returncode:
        sys.exit(f"beauty_scaling: `{' '.join(command[1:])}` failed (its error is above)")
    return json.loads((out / "laws.json").read_text())


def run_table(runs: Path, ladder: Path | None, metric: str) -> list[dict]:
    """One row per run: shape, N, D, status, epochs, the best-validation checkpoint's metrics, measured hours, and
    the grid's dry-run estimate when the ladder is given."""
    store, checkpoints = RunStore(runs), read_checkpoints(runs)
    best = best_checkpoints(checkpoints, metric).set_index("run_id")
    estimates = _estimates(checkpoints.run_id.unique(), ladder) if ladder else {}
    rows = []
    for run_id, ckpt in checkpoints.groupby("run_id"):
        last, chosen = ckpt.iloc[-1], best.loc[run_id]
        test = metric.replace("valid_", "test_", 1)
        rows.append(
            {
                "run_id": run_id,
                "shape": f"{last.n_layers}x{last.n_heads}x{last.hidden}",
                "encoder": last.item_encoder,
                "N": int(last.non_embedding_params),
                "D": int(last.dataset_interactions),
                "status": store.status(run_id),
                "epochs": float(last.epoch),
                "best_epoch": float(chosen.epoch),
                metric: float(chosen[metric]),
                test: float(chosen.get(test, math.nan)),
                **{
                    c: float(chosen[c])
                    for c in chosen.index
                    if c.startswith((f"{test}__", f"{test.split('_')[0]}_users__"))
                },  # slices and their users
                **_hours(run_seconds(last)),
                "estimated_hours": estimates.get(run_id),
            }
        )
    return sorted(rows, key=lambda r: (r["encoder"], r["N"], r["D"]))


def _hours(seconds: dict[str, float | None]) -> dict[str, float | None]:
    """run_seconds' wall and CPU seconds as hours (CPU None where not recorded)."""
    cpu = seconds["cpu_time_s"]
    return {"hours": seconds["wall_time_s"] / 3600, "cpu_hours": None if cpu is None else cpu / 3600}


def _estimates(run_ids, ladder: Path) -> dict[str, float]:
    """The grid's estimate of each run (`scalerec grid --preset beauty-ladder --dry-run`: a throughput probe made now,
    with this commit's code, on this machine as it is now)."""
    import tempfile

    with tempfile.TemporaryDirectory() as empty:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "scalerec",
                "grid",
                "--preset",
                "beauty-ladder",
                "--data",
                str(ladder),
                "--runs",
                empty,
                "--dry-run",
                "--json",
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    return {r["run_id"]: r["hours"] for r in json.loads(done.stdout) if r.get("hours") is not None}


def execute_notebooks(runs: Path, laws: Path, out: Path) -> list[str]:
    """The figure notebooks, executed on this store and saved with their outputs."""
    import nbclient
    import nbformat

    out.mkdir(parents=True, exist_ok=True)
    written = []
    os.environ.update({"SCALEREC_RUNS": str(runs.resolve()), "SCALEREC_LAWS": str(laws.resolve())})
    for name in NOTEBOOKS:
        nb = nbformat.read(HERE.parent / "notebooks" / f"{name}.ipynb", as_version=4)
        nbclient.NotebookClient(
            nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(out)}}
        ).execute()
        nbformat.write(nb, out / f"{name}.ipynb")
        written.append(f"{name}.ipynb")
    return written


def _interval(row: dict, name: str) -> str:
    low, high = row.get(f"{name}_interval_90") or (None, None)
    value = row.get(name)
    if value is None:
        return "—"
    return f"{value:.3g} [{low:.3g}, {high:.3g}]" if low is not None and high is not None else f"{value:.3g}"


def laws_section(title: str, laws: dict, metric: str) -> list[str]:
    """What the fits say: the envelope, Eq. 4, N*(C) and T*(C), the held-out check and the slices."""
    fitted, extra = laws["laws"], laws["saturating_extra"]
    sat, risk = fitted["saturating"], fitted["risk"]
    p, r = sat["params"], risk["params"]
    ri = risk.get("intervals_90", {})
    lines = [
        f"## {title}",
        "",
        f"{laws['data']['runs']} runs ({laws['data']['finished_runs']} finished), "
        f"{laws['data']['checkpoints']} checkpoints; metric `{metric}`, compute `{laws['options']['flops']}`.",
        "",
        f"- Envelope (Eq. 3): {metric}(C) = {p['a']:.4g} / (1 + exp(−{p['b']:.3g} (ln C − {p['c']:.4g}))) "
        f"{-p['d']:+.4g}; asymptote {extra['asymptote']:.4g}; R² {sat['quality'].get('r2', math.nan):.3f} "
        f"(linear in ln C: R² {fitted['linear']['quality'].get('r2', math.nan):.3f}). Flags: "
        f"{'; '.join(sat['flags']) or 'none'}.",
        f"- N,T law (Eq. 4): E = {r['E']:.4g}, α = {r['alpha']:.3g} {_span(ri.get('alpha'))}, "
        f"β = {r['beta']:.3g} {_span(ri.get('beta'))}. Flags: {'; '.join(risk['flags']) or 'none'}.",
        f"- Compute-optimal allocation (Fig. 5): N* ∝ C^{fitted['n_opt']['params']['exponent']:.3g} "
        f"{_span(fitted['n_opt'].get('intervals_90', {}).get('exponent'))}, T* ∝ "
        f"C^{fitted['t_opt']['params']['exponent']:.3g} "
        f"{_span(fitted['t_opt'].get('intervals_90', {}).get('exponent'))} (the paper: both grow as power laws "
        "of C).",
        "",
    ]
    check = (laws.get("holdout") or {}).get("largest")
    if check:
        lines += [
            f"### Held out: the {check['k']} largest runs by {check['by']}, predicted from the other "
            f"{check['fit_on_runs']}",
            "",
            "| run | N | T | observed | predicted | 90% interval | inside |",
            "|---|---|---|---|---|---|---|",
        ]
        risk_check = check.get("risk_law") or {}
        for row in risk_check.get("per_run", []):
            band = "—" if row["interval_90"] is None else f"[{row['interval_90'][0]:.4f}, {row['interval_90'][1]:.4f}]"
            lines.append(
                f"| {row['run_id']} | {row['N']:.3g} | {row['T']:.3g} | {row['observed']:.4f} | "
                f"{row['predicted']:.4f} | {band} | {row['inside_90']} |"
            )
        if risk_check:
            lines += [
                "",
                f"N,T law on the held-out runs: MAE {risk_check['mae']:.4f}, MAPE "
                f"{_pct(risk_check.get('mape'))}, 90% coverage {_pct(risk_check.get('coverage_90'))}.",
            ]
        env = check.get("envelope_law") or {}
        if env.get("n"):
            lines.append(
                f"Envelope law beyond the fitted compute: {env['n']} points, MAE {env['mae']:.4f}, MAPE "
                f"{_pct(env.get('mape'))}, 90% coverage {_pct(env.get('coverage_90'))}."
            )
        lines.append("")
    slices = laws.get("slices") or []
    if slices:
        lines += [
            "### Slices: how fast each improves (90% bootstrap intervals)",
            "",
            "| slice | users (median per checkpoint) | α (N) | β (T) | b (envelope, per e-fold of C) "
            "| best on envelope | left out |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in slices:
            users = "—" if row["users"] is None else row["users"]
            lines.append(
                f"| {row['slice']} | {users} | {_interval(row, 'alpha')} | {_interval(row, 'beta')} | "
                f"{_interval(row, 'b')} | {_number(row.get('best_on_envelope'))} | {row['left_out'] or ''} |"
            )
        unstable = [
            f"`{row['slice']}` ({'; '.join(f for f in row.get('flags', []) if 'outside its own' in f)})"
            for row in slices
            if any("outside its own" in f for f in row.get("flags", []))
        ]
        if unstable:
            lines += ["", "Not stable under resampling (read these exponents as unknown): " + ", ".join(unstable) + "."]
        lines.append("")
    return lines


def comparison_section(tables: dict[str, list[dict]], metric: str) -> list[str]:
    """Text against ID encoder at the same shape and data size: the metric, its test twin and the hard slices."""
    test = metric.replace("valid_", "test_", 1)
    text = {(r["shape"], r["D"]): r for r in tables.get("text", [])}
    pairs = sorted(
        ((r["D"], r["N"], r["shape"]), text[r["shape"], r["D"]], r)
        for r in tables.get("id", [])
        if (r["shape"], r["D"]) in text
    )
    if not pairs:
        return []
    columns = [metric, test] + [f"{test}__{name}" for name in COMPARED_SLICES]
    lines = [
        "## Text against ID encoder, same shape and data (text / ID, best validation checkpoint)",
        "",
        "| shape | D | status | " + " | ".join(f"`{c}`" for c in columns) + " |",
        "|---|---|---|" + "---|" * len(columns),
    ]
    for (d, _, shape), t, i in pairs:
        cells = [f"{_number(t.get(c, math.nan))} / {_number(i.get(c, math.nan))}" for c in columns]
        lines.append(f"| {shape} | {d:,} | {t['status']} / {i['status']} | " + " | ".join(cells) + " |")
    return lines + [
        "",
        "N differs between the two at one shape: the ID table is embedding and left out of N, the "
        "text encoder's adapter is in it.",
        "",
    ]


def size_gain_section(rows: list[dict], metric: str) -> list[str]:
    """Which slices gain most from size, read off the runs without a law: at the largest data size where at least
    three shapes have finished, the least-squares slope of ln(test metric) on ln N over those shapes (± its standard
    error), per slice, at each run's best validation checkpoint (test never chooses)."""
    import numpy as np

    test = metric.replace("valid_", "test_", 1)
    done = [r for r in rows if r["status"] == "done"]
    sizes = sorted({r["D"] for r in done if sum(o["D"] == r["D"] for o in done) >= 3})
    if not sizes:
        return []
    top = sorted((r for r in done if r["D"] == sizes[-1]), key=lambda r: r["N"])
    names = [""] + [c[len(test) + 2 :] for c in top[0] if c.startswith(test + "__")]
    users = test.split("_")[0] + "_users__"
    lines = [
        f"### Gain from size at D = {sizes[-1]:,}: slope of ln `{test}` on ln N over {len(top)} shapes",
        "",
        "A slope of 0.2 means +15% NDCG for every doubling of N; ± one standard error of the slope. "
        "The noise and ahead slices rank the same users as `all` on harder inputs.",
        "",
        "| slice | test users | "
        + " | ".join(f"{r['shape']} (N {r['N']:,})" for r in top)
        + " | slope [± s.e.] | largest / smallest N |",
        "|---|---|" + "---|" * len(top) + "---|---|",
    ]
    for name in names:
        column = f"{test}__{name}" if name else test
        values = np.array([r.get(column, math.nan) for r in top], dtype=float)
        count = top[-1].get(users + name) if name else None
        cells = " | ".join(_number(v) for v in values)
        slope = "—"
        if np.all(values > 0):
            x, y = np.log([r["N"] for r in top]), np.log(values)
            (b, _), cov = np.polyfit(x, y, 1, cov=True) if len(top) > 3 else (np.polyfit(x, y, 1), None)
            slope = f"{b:.3f}" + ("" if cov is None else f" [± {math.sqrt(cov[0, 0]):.3f}]")
        ratio = values[-1] / values[0] if values[0] > 0 else math.nan
        lines.append(
            f"| {name or 'all'} | {'all' if not name else _number(count, '.0f')} | "
            f"{cells} | {slope} | {_number(ratio, '.2f')}x |"
        )
    drops = [
        f"{name}: " + ", ".join(f"{1 - r[f'{test}__{name}'] / r[test]:.0%} at N {r['N']:,}" for r in top)
        for name in names
        if name.startswith("noise_") and all(r[test] > 0 for r in top)
    ]
    if drops:
        lines += ["", "Robustness, the drop of NDCG from the clean history: " + "; ".join(drops) + "."]
    return lines + [""]


def _span(bounds) -> str:
    return f"[{bounds[0]:.3g}, {bounds[1]:.3g}]" if bounds and None not in bounds else ""


def _number(value, spec: str = ".4f") -> str:
    return "—" if value is None or not math.isfinite(value) else format(value, spec)


def _pct(value) -> str:
    return "—" if value is None else f"{value:.0%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", required=True, type=Path, help="the text-encoder study's run store")
    parser.add_argument("--id-runs", type=Path, help="the ID-model store of `--preset beauty-ladder-id`")
    parser.add_argument("--ladder", type=Path, help="the ladder the grid trained on: adds its dry-run estimates")
    parser.add_argument("--metric", default="valid_ndcg_at_5")
    parser.add_argument("--holdout-largest", type=int, default=2)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--no-notebooks", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "beauty_scaling")
    args = parser.parse_args()

    stores = {"text": args.runs} | ({"id": args.id_runs} if args.id_runs else {})
    command = f"python -m benchmarks.beauty_scaling {' '.join(sys.argv[1:])}".strip()
    commit = git_state()[0] or "unknown"
    lines = [
        "# Beauty scaling study: a data ladder × model sizes, laws with a held-out check, and the hard slices",
        "",
        f"Written by `{command}` at commit {commit[:12]}, from the run stores below (each run records the "
        "commit that trained it in its config.json). Runs use the SRT reference recipe "
        '(`recipe = "srt-reference"`), 100 sampled negatives, full-catalog evaluation; the laws are fitted on '
        "the validation metric, so test never chooses.",
        "",
    ]
    tables = {}
    for encoder, runs in stores.items():
        out = args.out / encoder
        laws = fit(runs, out, args)
        rows = run_table(runs, args.ladder if encoder == "text" else None, args.metric)
        tables[encoder] = rows
        test = args.metric.replace("valid_", "test_", 1)
        lines += [
            f"## Runs ({encoder} encoder): `{runs}`",
            "",
            f"| run | shape | N | D | status | epochs | best epoch | {args.metric} | {test} | hours wall "
            "(CPU) | hours (estimated) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"| {r['run_id']} | {r['shape']} | {r['N']:,} | {r['D']:,} | {r['status']} | "
                f"{r['epochs']:g} | {r['best_epoch']:g} | {_number(r[args.metric])} | {_number(r[test])} | "
                f"{r['hours']:.2f} ({_number(r['cpu_hours'], '.2f')}) | "
                f"{_number(r['estimated_hours'], '.2f')} |"
            )
        done = [r for r in rows if r["status"] == "done"]
        cpu = [r["cpu_hours"] for r in done if r["cpu_hours"] is not None]
        lines += [
            "",
            f"Finished runs: {len(done)} of {len(rows)}, {sum(r['hours'] for r in done):.2f} hours of wall "
            f"time" + (f"; the {len(cpu)} that recorded it, {sum(cpu):.2f} CPU hours" if cpu else "") + ". "
            "Wall time (evaluation included) counts the time a run waited for a busy core or was paused; the "
            "CPU time of a one-thread run is what it costs a quiet core.",
            "",
        ]
        lines += size_gain_section(rows, args.metric)
        lines += laws_section(
            f"Laws ({encoder} encoder): `{out.relative_to(args.out)}/laws.json`, `report.md`, `figures/`",
            laws,
            args.metric,
        )
        if not args.no_notebooks and encoder == "text":
            written = execute_notebooks(runs, out / "laws.json", args.out / "notebooks")
            lines += ["Executed notebooks (outputs saved): " + ", ".join(f"`notebooks/{n}`" for n in written), ""]
    lines += comparison_section(tables, args.metric)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "runs.json").write_text(
        json.dumps({"command": command, "commit": commit, "runs": tables}, indent=2) + "\n"
    )
    (args.out / "README.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
