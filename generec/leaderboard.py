"""Leaderboard over results records: mean +- std over seeds, costs, and tests against a baseline.

Records are grouped by dataset and *protocol* (split, training protocol, history masking, cold
start and preprocessing): two numbers obtained under different protocols are never ranked in the
same table. Inside a group a row is one model configuration; its seeds are its repetitions.

Each model is compared with a baseline model of the same group in two ways:

* a paired t-test over seeds (runs matched by seed), which measures seed-to-seed variation;
* a per-user bootstrap of the test-metric difference, read from the per-user ranks that
  ``generec.train`` writes next to each record (``<run_id>.ranks.npz``), which measures how
  much the difference depends on the particular test users.

generec leaderboard results/ [more/] --format md --baseline sasrec --metric ndcg@10 --out board.md
"""

from __future__ import annotations

import argparse
import csv
import html
import io
import json
import logging
import math
import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from generec.results import read_records

log = logging.getLogger(__name__)

DEFAULT_METRICS = ("hr@10", "ndcg@10", "mrr@10", "recall@20")
# record key -> (column title, True when lower is better)
COST_COLUMNS = {
    "train_seconds_per_epoch": ("s/epoch", True),
    "fit_seconds": ("fit s", True),
    "peak_memory_mib": ("peak MiB", True),
}
TRUST_COLUMN = "trust"
FORMATS = ("rich", "md", "csv", "html")
PADDED = -1  # padded target slot in a ranks dump (several targets per user)


# ----------------------------------------------------------------------------- statistics


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        for aa in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularised incomplete beta function."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def student_t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0
    return regularized_beta(df / 2.0, 0.5, df / (df + t * t))


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(mean of a - b, two-sided p) for paired samples; p is nan with fewer than 2 pairs."""
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    if not diffs:
        return math.nan, math.nan
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return mean, math.nan
    sd = statistics.stdev(diffs)
    if sd == 0.0:
        return mean, 1.0 if mean == 0.0 else 0.0
    return mean, student_t_two_sided_p(mean / (sd / math.sqrt(len(diffs))), len(diffs) - 1)


def per_user_metric(ranks: np.ndarray, metric: str) -> np.ndarray:
    """Per-user value of ``hr|ndcg|mrr|recall@k`` from 0-based target ranks.

    ranks: [N] (one target) or [N, T] with ``PADDED`` (-1) in padded slots. Same definitions as
    ``generec.eval.metrics.rank_metric_sums``, so the mean over users equals the record's metric.
    """
    name, k = metric.split("@")
    k = int(k)
    r = np.asarray(ranks, dtype=np.float64)
    if r.ndim == 1:
        r = r[:, None]
    real = r >= 0  # [N, T]
    hit = real & (r < k)  # [N, T]
    n_targets = real.sum(1)  # [N]
    if name == "hr":
        return hit.any(1).astype(np.float64)
    if name == "recall":
        return hit.sum(1) / np.maximum(n_targets, 1)
    if name == "mrr":
        first = np.where(hit, r, np.inf).min(1)
        return np.where(np.isfinite(first), 1.0 / (first + 1.0), 0.0)
    if name == "ndcg":
        dcg = np.where(hit, 1.0 / np.log2(np.where(hit, r, 0.0) + 2.0), 0.0).sum(1)
        ideal_cum = np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))  # [k]
        ideal = ideal_cum[np.clip(np.minimum(n_targets, k) - 1, 0, None)]
        return dcg / ideal
    raise ValueError(f"no per-user definition for metric {metric!r} (use hr|ndcg|mrr|recall@k)")


def bootstrap_mean_diff(
    diffs: np.ndarray, n_boot: int = 2000, seed: int = 0, chunk: int = 250
) -> tuple[float, float, float, float]:
    """(mean, 2.5% and 97.5% percentile bounds, two-sided p) of the mean of per-user differences.

    Users are resampled with replacement; p is twice the smaller tail mass on either side of 0.
    """
    diffs = np.asarray(diffs, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        idx = rng.integers(0, len(diffs), size=(m, len(diffs)))  # [m, N]
        means[start : start + m] = diffs[idx].mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    p = min(1.0, 2.0 * min((means <= 0).mean(), (means >= 0).mean()))
    return float(diffs.mean()), float(lo), float(hi), float(p)


# ----------------------------------------------------------------------------- grouping


def protocol_key(record: dict) -> tuple:
    """Everything that makes two records' numbers (in)comparable, apart from the model."""
    d = record["dataset"]
    return (
        d.get("name"),
        d.get("split", "loo"),
        d.get("protocol"),
        bool(d.get("mask_history", False)),
        d.get("cold_start_ratio"),
        d.get("min_user_inter"),
        d.get("min_item_inter"),
        d.get("dedup"),
    )


def protocol_label(key: tuple) -> str:
    _, split, protocol, masked, cold, min_u, min_i, dedup = key
    parts = [str(split), str(protocol)]
    if masked:
        parts.append("masked")
    if cold is not None:
        parts.append(f"cold={cold}")
    if min_u or min_i:
        parts.append(f"{min_u}/{min_i}-core")
    if dedup not in (None, "all"):
        parts.append(f"dedup={dedup}")
    return "/".join(parts)


def _model_config(record: dict) -> dict:
    return dict((record.get("config") or {}).get("model") or {})


@dataclass
class Stat:
    """One column of one row: the value of every seed."""

    by_seed: dict[int, float]

    @property
    def n(self) -> int:
        return len(self.by_seed)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.by_seed.values()) if self.by_seed else math.nan

    @property
    def std(self) -> float:
        return statistics.stdev(self.by_seed.values()) if self.n > 1 else math.nan


@dataclass
class Row:
    """One model configuration in one (dataset, protocol) group."""

    dataset: str
    protocol: str
    group: tuple
    model: str
    variant: str
    records: list[dict]
    stats: dict[str, Stat] = field(default_factory=dict)
    best: set[str] = field(default_factory=set)
    is_baseline: bool = False
    delta: float = math.nan  # mean over matched seeds of (model - baseline), chosen metric
    p_paired: float = math.nan
    boot: tuple[float, float, float, float] | None = None  # (delta, lo, hi, p) per-user bootstrap

    @property
    def name(self) -> str:
        return f"{self.model} [{self.variant}]" if self.variant else self.model

    @property
    def seeds(self) -> list[int]:
        return sorted(r["seed"] for r in self.records)


def _dedup_seeds(records: list[dict]) -> list[dict]:
    """One record per seed (the newest): a requeued or repeated run must not count twice."""
    by_seed: dict[int, dict] = {}
    for r in sorted(records, key=lambda r: (r.get("created") or "", r["run_id"])):
        if r["seed"] in by_seed:
            log.warning("seed %s of %s appears twice; keeping %s", r["seed"], r["model"], r["run_id"])
        by_seed[r["seed"]] = r
    return [by_seed[s] for s in sorted(by_seed)]


def _variants(records: list[dict]) -> dict[str, list[dict]]:
    """Splits one model's records by model config; labels name only the keys that differ."""
    configs = [_model_config(r) for r in records]
    keys = sorted({k for c in configs for k in c})
    differing = [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1]
    out: dict[str, list[dict]] = defaultdict(list)
    for r, c in zip(records, configs, strict=True):
        out[",".join(f"{k}={c.get(k)}" for k in differing)].append(r)
    return out


def load_ranks(record: dict) -> dict[str, np.ndarray] | None:
    """The run's per-user test ranks (``users``, ``ranks``, ...), or None when not dumped."""
    name = record.get("ranks_file")
    if not name or "_path" not in record:
        return None
    path = Path(record["_path"]).with_name(name)
    if not path.is_file():
        return None
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _user_values(record: dict, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    ranks = load_ranks(record)
    if ranks is None:
        return None
    return ranks["users"], per_user_metric(ranks["ranks"], metric)


def _bootstrap_vs(row: Row, base: Row, metric: str, seeds: list[int], n_boot: int) -> tuple | None:
    """Per-user metric averaged over the matched seeds, model minus baseline, bootstrapped over users."""
    mine = {r["seed"]: r for r in row.records}
    theirs = {r["seed"]: r for r in base.records}
    sums: dict[str, dict[int, float]] = {"a": defaultdict(float), "b": defaultdict(float)}
    used = 0
    for s in seeds:
        a, b = _user_values(mine[s], metric), _user_values(theirs[s], metric)
        if a is None or b is None:
            continue
        for side, (users, values) in (("a", a), ("b", b)):
            acc = sums[side]
            for u, v in zip(users.tolist(), values.tolist(), strict=True):
                acc[u] += v
        used += 1
    if not used:
        return None
    common = sorted(set(sums["a"]) & set(sums["b"]))
    if not common:
        return None
    diffs = np.array([sums["a"][u] - sums["b"][u] for u in common]) / used  # [U]
    return bootstrap_mean_diff(diffs, n_boot=n_boot)


def build_rows(
    records: list[dict],
    metrics: Sequence[str] = DEFAULT_METRICS,
    split: str = "test",
    baseline: str | None = None,
    metric: str = "ndcg@10",
    n_boot: int = 2000,
) -> list[Row]:
    """Groups records into leaderboard rows, fills statistics, best marks and baseline tests."""
    groups: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        groups[protocol_key(r)][r["model"]].append(r)
    rows: list[Row] = []
    for key in sorted(groups, key=lambda k: tuple(str(x) for x in k)):
        group_rows = []
        for model, recs in sorted(groups[key].items()):
            for variant, vrecs in sorted(_variants(recs).items()):
                vrecs = _dedup_seeds(vrecs)
                row = Row(str(key[0]), protocol_label(key), key, model, variant, vrecs)
                for m in dict.fromkeys([*metrics, metric]):
                    row.stats[m] = Stat(
                        {
                            r["seed"]: float(r["metrics"][split][m])
                            for r in vrecs
                            if m in r["metrics"].get(split, {})
                        }
                    )
                for col in COST_COLUMNS:
                    row.stats[col] = Stat({r["seed"]: float(r[col]) for r in vrecs if r.get(col) is not None})
                trust = {
                    r["seed"]: float(r["trust"]["index"])
                    for r in vrecs
                    if isinstance(r.get("trust"), dict) and r["trust"].get("index") is not None
                }
                if trust:
                    row.stats[TRUST_COLUMN] = Stat(trust)
                group_rows.append(row)
        _mark_best(group_rows)
        if baseline is not None:
            _test_against(group_rows, baseline, metric, n_boot)
        group_rows.sort(key=lambda r: -_nan_low(r.stats[metric].mean))
        rows += group_rows
    return rows


def _nan_low(x: float) -> float:
    return -math.inf if math.isnan(x) else x


def _mark_best(rows: list[Row]) -> None:
    columns = {c for r in rows for c in r.stats}
    for col in columns:
        lower = COST_COLUMNS.get(col, ("", False))[1]
        scored = [
            (r.stats[col].mean, r) for r in rows if col in r.stats and not math.isnan(r.stats[col].mean)
        ]
        if len(scored) < 2:
            continue
        target = (min if lower else max)(v for v, _ in scored)
        for v, r in scored:
            if v == target:
                r.best.add(col)


def _test_against(rows: list[Row], baseline: str, metric: str, n_boot: int) -> None:
    candidates = [r for r in rows if r.model == baseline]
    if not candidates:
        return
    # Several configurations of the baseline: the one with most seeds, then the best mean.
    base = max(candidates, key=lambda r: (r.stats[metric].n, _nan_low(r.stats[metric].mean)))
    base.is_baseline = True
    for row in rows:
        if row is base:
            continue
        seeds = sorted(set(row.stats[metric].by_seed) & set(base.stats[metric].by_seed))
        row.delta, row.p_paired = paired_t_test(
            [row.stats[metric].by_seed[s] for s in seeds], [base.stats[metric].by_seed[s] for s in seeds]
        )
        row.boot = _bootstrap_vs(row, base, metric, seeds, n_boot)


# ----------------------------------------------------------------------------- rendering


def _columns(rows: list[Row], metrics: Sequence[str]) -> list[str]:
    cols = [*metrics, *COST_COLUMNS]
    if any(TRUST_COLUMN in r.stats for r in rows):
        cols.append(TRUST_COLUMN)
    return cols


def _title(col: str) -> str:
    return COST_COLUMNS[col][0] if col in COST_COLUMNS else col


def _fmt_stat(stat: Stat | None, col: str) -> str:
    if stat is None or not stat.n:
        return "-"
    digits = 4 if col not in COST_COLUMNS else (0 if col == "peak_memory_mib" else 2)
    if stat.n == 1:
        return f"{stat.mean:.{digits}f}"
    return f"{stat.mean:.{digits}f} ± {stat.std:.{digits}f}"


def _fmt_p(p: float) -> str:
    return "-" if p is None or math.isnan(p) else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


def _test_cells(row: Row) -> list[str]:
    if row.is_baseline:
        return ["baseline", "", ""]
    delta = "-" if math.isnan(row.delta) else f"{row.delta:+.4f}"
    boot = "-" if row.boot is None else f"{_fmt_p(row.boot[3])} [{row.boot[1]:+.4f}, {row.boot[2]:+.4f}]"
    return [delta, _fmt_p(row.p_paired), boot]


def table(
    rows: list[Row], metrics: Sequence[str], baseline: str | None, metric: str
) -> tuple[list[str], list[list[str]], list[set[int]]]:
    """Header, string cells and, per row, the indices of cells marked best."""
    cols = _columns(rows, metrics)
    header = ["dataset", "protocol", "model", "seeds", *(_title(c) for c in cols)]
    if baseline is not None:
        header += [f"Δ {metric}", "p seeds (paired t)", "p users (bootstrap) [95% CI of Δ]"]
    body, best = [], []
    for row in rows:
        cells = [row.dataset, row.protocol, row.name, str(len(row.records))]
        marks = {len(cells) + i for i, c in enumerate(cols) if c in row.best}
        cells += [_fmt_stat(row.stats.get(c), c) for c in cols]
        if baseline is not None:
            cells += _test_cells(row)
        body.append(cells)
        best.append(marks)
    return header, body, best


def render_markdown(header: list[str], body: list[list[str]], best: list[set[int]]) -> str:
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    for cells, marks in zip(body, best, strict=True):
        lines.append(
            "| " + " | ".join(f"**{esc(c)}**" if i in marks else esc(c) for i, c in enumerate(cells)) + " |"
        )
    return "\n".join(lines) + "\n"


def render_html(header: list[str], body: list[list[str]], best: list[set[int]]) -> str:
    out = ['<table class="generec-leaderboard">', "<thead><tr>"]
    out += [f"<th>{html.escape(h)}</th>" for h in header]
    out.append("</tr></thead><tbody>")
    for cells, marks in zip(body, best, strict=True):
        tds = [
            f"<td><strong>{html.escape(c)}</strong></td>" if i in marks else f"<td>{html.escape(c)}</td>"
            for i, c in enumerate(cells)
        ]
        out.append("<tr>" + "".join(tds) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out) + "\n"


def render_csv(rows: list[Row], metrics: Sequence[str], baseline: str | None, metric: str) -> str:
    """Machine-readable: numbers unformatted, ``<col>_std``, ``<col>_n`` and ``<col>_best`` per column."""
    cols = _columns(rows, metrics)
    header = ["dataset", "protocol", "model", "variant", "seeds"]
    for c in cols:
        header += [c, f"{c}_std", f"{c}_n", f"{c}_best"]
    if baseline is not None:
        header += ["baseline", "delta", "p_paired", "boot_delta", "boot_lo", "boot_hi", "p_bootstrap"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    num = lambda x: "" if x is None or (isinstance(x, float) and math.isnan(x)) else repr(float(x))  # noqa: E731
    for row in rows:
        cells: list[str] = [row.dataset, row.protocol, row.model, row.variant, " ".join(map(str, row.seeds))]
        for c in cols:
            s = row.stats.get(c)
            cells += [num(s.mean), num(s.std), str(s.n), str(int(c in row.best))] if s else ["", "", "0", "0"]
        if baseline is not None:
            b = row.boot or (None, None, None, None)
            cells += [str(int(row.is_baseline)), num(row.delta), num(row.p_paired), *(num(x) for x in b)]
        writer.writerow(cells)
    return buf.getvalue()


def render_rich(header: list[str], body: list[list[str]], best: list[set[int]], title: str):
    from rich.table import Table

    t = Table(title=title)
    for i, h in enumerate(header):
        t.add_column(h, justify="left" if i < 3 else "right")
    for cells, marks in zip(body, best, strict=True):
        t.add_row(*(f"[bold green]{c}[/]" if i in marks else c for i, c in enumerate(cells)))
    return t


def render(
    rows: list[Row],
    fmt: str = "md",
    metrics: Sequence[str] = DEFAULT_METRICS,
    baseline: str | None = None,
    metric: str = "ndcg@10",
    split: str = "test",
) -> str:
    """The leaderboard as text in ``fmt`` (rich is rendered to plain text here)."""
    if fmt == "csv":
        return render_csv(rows, metrics, baseline, metric)
    header, body, best = table(rows, metrics, baseline, metric)
    if fmt == "md":
        return render_markdown(header, body, best)
    if fmt == "html":
        return render_html(header, body, best)
    if fmt == "rich":
        from rich.console import Console

        console = Console(file=io.StringIO(), width=250, color_system=None)
        console.print(render_rich(header, body, best, f"generec leaderboard ({split})"))
        return console.file.getvalue()
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="generec leaderboard", description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="*", default=["results"], help="folders of results records")
    parser.add_argument("--format", default="rich", choices=FORMATS)
    parser.add_argument("--metrics", default=",".join(DEFAULT_METRICS), help="comma-separated columns")
    parser.add_argument(
        "--metric", default="ndcg@10", help="metric ranked on and tested against the baseline"
    )
    parser.add_argument("--baseline", default=None, help="model every other model is tested against")
    parser.add_argument("--split", default="test", choices=["valid", "test"])
    parser.add_argument("--bootstrap", type=int, default=2000, help="per-user bootstrap resamples")
    parser.add_argument("--out", default=None, help="write here instead of stdout")
    args = parser.parse_args(argv)
    metrics = [m for m in args.metrics.split(",") if m]
    records = read_records(*args.folders)
    if not records:
        print(f"generec leaderboard: no results records under {' '.join(args.folders)}", file=sys.stderr)
        return 1
    rows = build_rows(records, metrics, args.split, args.baseline, args.metric, args.bootstrap)
    if args.format == "rich" and args.out is None:
        from rich.console import Console

        header, body, best = table(rows, metrics, args.baseline, args.metric)
        title = f"generec leaderboard ({args.split})" + (
            f", baseline {args.baseline}" if args.baseline else ""
        )
        Console(width=None if sys.stdout.isatty() else 250).print(render_rich(header, body, best, title))
        return 0
    text = render(rows, args.format, metrics, args.baseline, args.metric, args.split)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0
