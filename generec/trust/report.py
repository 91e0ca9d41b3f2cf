"""Audit report: Markdown + self-contained HTML with plots (radar, popularity curve, groups, compression)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from generec.results import atomic_write_text
from generec.trust.metrics import DIMENSIONS


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if v != v else f"{v:.4f}"
    return str(v)


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def radar_plot(dimensions: dict[str, dict[str, float]]) -> bytes:
    """One polygon per candidate over the trust dimensions (scores in [0, 1])."""
    plt = _plt()
    dims = [d for d in DIMENSIONS if any(d in s for s in dimensions.values())]
    angles = np.linspace(0, 2 * np.pi, len(dims), endpoint=False).tolist()
    fig = plt.figure(figsize=(5, 5))
    ax = fig.add_subplot(111, polar=True)
    for name, scores in dimensions.items():
        vals = [scores.get(d, 0.0) for d in dims]
        ax.plot(angles + angles[:1], vals + vals[:1], label=name)
        ax.fill(angles + angles[:1], vals + vals[:1], alpha=0.08)
    ax.set_xticks(angles)
    ax.set_xticklabels(dims)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper right", bbox_to_anchor=(1.35, 1.1), fontsize=8)
    ax.set_title("trust dimensions (ECDF across candidates)")
    return _png(fig)


def popularity_plot(curves: dict[str, dict]) -> bytes:
    """Share of training interactions vs share of top-K slots per item-popularity bin."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    first = next(iter(curves.values()))
    x = first["bin_upper"]
    ax.plot(x, first["train_share"], "k--", label="training interactions")
    for name, c in curves.items():
        ax.plot(x, c["rec_share"], marker=".", label=f"top-K slots: {name}")
    ax.set_xlabel("item popularity percentile (bin upper edge)")
    ax.set_ylabel("share")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title("popularity: what users consume vs what is recommended")
    return _png(fig)


def groups_plot(groups: dict[str, dict[str, dict]]) -> bytes:
    """NDCG@10 per user group, one panel per grouping."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(groups), figsize=(4 * len(groups), 3.2), squeeze=False)
    for ax, (name, stats) in zip(axes[0], groups.items(), strict=True):
        labels = list(stats)
        if name == "activity":
            labels = sorted(labels, key=int)
        ax.bar(range(len(labels)), [stats[g]["ndcg@10"] for g in labels])
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=45 if name != "activity" else 0, fontsize=8)
        ax.set_title(f"NDCG@10 by {name}" + (" decile" if name == "activity" else ""))
    return _png(fig)


def compression_plot(variants: dict[str, dict]) -> bytes:
    plt = _plt()
    names = list(variants)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    x = np.arange(len(names))
    ax.bar(
        x - 0.2, [variants[n]["metrics"].get("utility/ndcg@10", np.nan) for n in names], 0.4, label="NDCG@10"
    )
    ax2 = ax.twinx()
    ax2.bar(x + 0.2, [variants[n]["index"] for n in names], 0.4, color="tab:orange", label="trust index")
    ax.set_xticks(x)
    ax.set_xticklabels(names)
    ax.set_ylabel("NDCG@10")
    ax2.set_ylabel("trust index (ECDF)")
    ax2.set_ylim(0, 1)
    fig.legend(loc="upper right", fontsize=8)
    ax.set_title("compression: accuracy vs trust")
    return _png(fig)


def _table(header: list[str], rows: list[list]) -> tuple[str, str]:
    md = "| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n"
    md += "".join("| " + " | ".join(_fmt(c) for c in r) + " |\n" for r in rows)
    h = "<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in header) + "</tr>"
    h += "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
    return md, h + "</table>"


def write_report(trust: dict, record: dict, stem: Path) -> tuple[Path, Path]:
    """Writes ``<stem>.trust.md`` (+ ``<stem>.trust_plots/*.png``) and ``<stem>.trust.html`` (images inline)."""
    variants = trust["variants"]
    details = trust["details"]
    title = f"Trust audit: {record.get('model')} on {record.get('dataset', {}).get('name')}"
    sections: list[tuple[str, str, str]] = []  # (heading, markdown, html)

    intro = (
        f"run `{record.get('run_id')}`, checkpoint `{record.get('checkpoint')}`; "
        f"{details.get('users')} audited users; index reference: {trust['reference']}; "
        f"weights: {trust['weights']}."
    )
    sections.append(("Summary", intro + "\n", f"<p>{html.escape(intro)}</p>"))

    dims = [d for d in DIMENSIONS if any(d in v["dimensions"] for v in variants.values())]
    rows = [
        [n, v["index"], v["absolute_index"], *[v["dimensions"].get(d, np.nan) for d in dims]]
        for n, v in variants.items()
    ]
    sections.append(("Trust index", *_table(["candidate", "index (ECDF)", "absolute index", *dims], rows)))

    base = variants.get("original", next(iter(variants.values())))["metrics"].get("utility/ndcg@10", np.nan)
    rows = [
        [
            n,
            v["metrics"].get("utility/ndcg@10", np.nan),
            v["metrics"].get("utility/ndcg@10", np.nan) - base,
            v["index"],
            *[v["dimensions"].get(d, np.nan) for d in dims],
        ]
        for n, v in variants.items()
    ]
    sections.append(("Compression", *_table(["variant", "NDCG@10", "delta NDCG@10", "index", *dims], rows)))

    keys = sorted({k for v in variants.values() for k in v["metrics"]})
    rows = [[k, *[v["metrics"].get(k, np.nan) for v in variants.values()]] for k in keys]
    sections.append(("Raw metrics", *_table(["metric", *variants], rows)))

    group_rows = [
        [name, g, s["users"], s["ndcg@10"]]
        for name, stats in details.get("groups", {}).items()
        for g, s in stats.items()
    ]
    if group_rows:
        sections.append(("Group accuracy", *_table(["grouping", "group", "users", "NDCG@10"], group_rows)))

    plots: dict[str, bytes] = {
        "radar": radar_plot({n: v["dimensions"] for n, v in variants.items()}),
        "compression": compression_plot(variants),
    }
    curves = {
        n: v["details"]["popularity_curve"] for n, v in variants.items() if "popularity_curve" in v["details"]
    }
    if curves:
        plots["popularity"] = popularity_plot(curves)
    if details.get("groups"):
        plots["groups"] = groups_plot(details["groups"])

    plot_dir = stem.parent / f"{stem.name}.trust_plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    for name, png in plots.items():
        (plot_dir / f"{name}.png").write_bytes(png)

    md = f"# {title}\n\n"
    md += "".join(f"## {h}\n\n{m}\n" for h, m, _ in sections)
    md += "## Plots\n\n" + "".join(f"![{n}]({plot_dir.name}/{n}.png)\n\n" for n in plots)
    body = "".join(f"<h2>{html.escape(h)}</h2>{x}" for h, _, x in sections)
    body += "<h2>Plots</h2>" + "".join(
        f'<img alt="{n}" src="data:image/png;base64,{base64.b64encode(p).decode()}"/>'
        for n, p in plots.items()
    )
    style = "body{font-family:sans-serif;max-width:1100px;margin:auto}td,th{border:1px solid #ccc;padding:2px 6px}"
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
    page += (
        f"<style>{style}table{{border-collapse:collapse}}</style></head><body><h1>{html.escape(title)}</h1>"
    )
    page += body + "</body></html>"
    md_path = atomic_write_text(stem.parent / f"{stem.name}.trust.md", md)
    html_path = atomic_write_text(stem.parent / f"{stem.name}.trust.html", page)
    return md_path, html_path
