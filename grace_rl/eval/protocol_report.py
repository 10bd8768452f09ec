"""Printing and plotting the evaluation protocol's results (the dict :func:`grace_rl.eval.protocol.run_protocol`
returns): a markdown report (:func:`format_report`), `PREFIX.json` and `PREFIX.png` (:func:`write_report`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grace_rl.eval.protocol import best_point


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table with padded columns."""
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"

    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells[1:])])


def _cell(point: dict[str, Any], mark: str = "") -> str:
    return (
        f"{point['spearman']:.2f}{mark} [{point['ci_low']:.2f}, {point['ci_high']:.2f}] "
        f"{point['mean_rationale_tokens']:.1f} tok"
    )


def _dataset_lines(results: dict[str, Any]) -> list[str]:
    lines = ["Dev sets (a pair is dropped when either sentence occurs in any training text, normalised):"]
    for ds in results["datasets"]:
        thinned = f", {ds['pairs']} evenly spaced evaluated (--limit)" if ds["pairs"] < ds["pairs_kept"] else ""
        lines.append(
            f"- {ds['name']}: {ds['pairs_kept']} of {ds['pairs_total']} pairs held out ({ds['dropped']} dropped)"
            f"{thinned}; {ds['kind']} file {ds['source']}"
        )
    return lines


def _base_bar(results: dict[str, Any], dataset: str) -> tuple[str, int]:
    """(label, budget) of the best base point on `dataset` over every base variant (the protocol's bar)."""
    points = [
        {**p, "model": m["label"]}
        for m in results["models"]
        if m["role"] == "base"
        for p in m["results"][dataset]["points"]
    ]
    best = best_point(points)
    return best["model"], best["budget"]


def _budget_table(results: dict[str, Any], dataset: str) -> str:
    budgets = results["budgets"]
    bar_label, bar_budget = _base_bar(results, dataset)
    rows = []
    for model in results["models"]:
        by_budget = {p["budget"]: p for p in model["results"][dataset]["points"]}
        if model["role"] == "base":
            marks = {bar_budget: "^"} if model["label"] == bar_label else {}
        else:
            marks = {model["training_budget"]: "*"}
        label = (
            model["label"] if model["role"] == "base" else f"{model['label']} (trained @ {model['training_budget']})"
        )
        rows.append([label, *[_cell(by_budget[b], marks.get(b, "")) for b in budgets]])
    return markdown_table(["model", *[f"budget {b}" for b in budgets]], rows)


def _samples_lines(samples: dict[str, Any], level: int) -> list[str]:
    counts = samples["counts"]
    out = [
        f"Rationales averaged (sampled at temperature {samples['temperature']:g}, <= {samples['budget']} tokens each, "
        f"sampling seed {samples['seed']}): Spearman x100 [{level}% interval]"
    ]
    for name in samples["models"][0]["results"]:
        rows = []
        for model in samples["models"]:
            by_k = {p["num_rationales"]: p for p in model["results"][name]["points"]}
            rows.append(
                [
                    model["label"],
                    *[
                        f"{by_k[k]['spearman']:.2f} [{by_k[k]['ci_low']:.2f}, {by_k[k]['ci_high']:.2f}]"
                        for k in counts
                    ],
                ]
            )
        out += [f"{name}:", markdown_table(["model", *[f"{k} rationale{'s' if k > 1 else ''}" for k in counts]], rows)]
    rows = [
        [
            g["model"],
            g["dataset"],
            f"{g['spearman']:.2f} ({g['num_rationales']})",
            f"{g['vs_one_sample']['difference']:+.2f} [{g['vs_one_sample']['ci_low']:+.2f}, "
            f"{g['vs_one_sample']['ci_high']:+.2f}]",
            f"{g['greedy_spearman']:.2f}",
            f"{g['vs_greedy']['difference']:+.2f} [{g['vs_greedy']['ci_low']:+.2f}, {g['vs_greedy']['ci_high']:+.2f}]",
        ]
        for g in samples["gains"]
    ]
    out += [
        f"Most rationales averaged minus one sampled / one greedy rationale at the same budget (paired {level}%):",
        markdown_table(["model", "dev set", "averaged (count)", "minus 1 sampled", "greedy", "minus greedy"], rows),
    ]
    return out


def format_report(results: dict[str, Any]) -> str:
    """The protocol's results as text: dev sets with dropped counts, per dev set the Spearman of every model at
    every budget with its interval and the rationale tokens used, and the headline per trained model."""
    level = round(results["bootstrap"]["level"] * 100)
    out = _dataset_lines(results)
    for ds in results["datasets"]:
        out += [
            "",
            f"{ds['name']} ({ds['pairs']} pairs): Spearman x100 [{level}% bootstrap interval, "
            f"{results['bootstrap']['n']} resamples], mean rationale tokens used; greedy rationales",
            _budget_table(results, ds["name"]),
        ]
    out.append("^ base at its best budget (the bar); * trained model at its training budget")
    prompts = [m for m in results["models"] if m["role"] == "base" and m.get("instruction")]
    out += [f"{m['label']}: the base model under the instruction {m['instruction']!r}" for m in prompts]
    if results["headlines"]:
        rows = [
            [
                h["model"],
                h["dataset"],
                f"{h['trained_spearman']:.2f} @ {h['training_budget']}",
                f"{h['base_spearman']:.2f} @ {h['base_best_budget']}"
                + (f" ({h['base_model']})" if h.get("base_model", "base") != "base" else ""),
                f"{h['difference']:+.2f} [{h['ci_low']:+.2f}, {h['ci_high']:+.2f}]",
            ]
            for h in results["headlines"]
        ]
        out += [
            "",
            f"Headline: trained at its training budget minus base at its best budget (paired {level}% interval)",
            markdown_table(["model", "dev set", "trained", "base (best budget)", "difference"], rows),
        ]
    if "samples" in results:
        out += ["", *_samples_lines(results["samples"], level)]
    seconds = ", ".join(
        f"{m['label']}/{name} {r['seconds']:.1f} s{' (cached)' if r['cached'] else ''}"
        for m in [*results["models"], *results.get("samples", {}).get("models", [])]
        for name, r in m["results"].items()
    )
    out += ["", f"seconds per sweep: {seconds}; total {results['seconds']:.1f} s"]
    return "\n".join(out)


def _base_style(model: dict[str, Any]) -> dict[str, str]:
    """Base curves: black dashed; the base under a trained run's prompt grey dotted."""
    return {"color": "grey", "linestyle": ":"} if model.get("instruction") else {"color": "black", "linestyle": "--"}


def plot_results(results: dict[str, Any], png_path: str | Path) -> None:
    """Budget on x, Spearman on y, one panel per dev set; base and each trained model with interval bars (the
    trained model's training budget drawn as a star)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = results["budgets"]
    datasets = results["datasets"]
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets), 4.0), dpi=120, squeeze=False)
    models = results["models"]
    for ax, ds in zip(axes[0], datasets, strict=True):
        for k, model in enumerate(models):
            points = sorted(model["results"][ds["name"]]["points"], key=lambda p: p["budget"])
            x = [budgets.index(p["budget"]) + 0.08 * (k - (len(models) - 1) / 2) for p in points]  # dodge the bars
            y = [p["spearman"] for p in points]
            yerr = [[p["spearman"] - p["ci_low"] for p in points], [p["ci_high"] - p["spearman"] for p in points]]
            style = _base_style(model) if model["role"] == "base" else {}
            line = ax.errorbar(x, y, yerr=yerr, marker="o", capsize=3, label=model["label"], **style)
            if model["role"] == "trained":
                j = next(i for i, p in enumerate(points) if p["budget"] == model["training_budget"])
                ax.plot([x[j]], [y[j]], marker="*", markersize=14, color=line[0].get_color(), zorder=5)
        ax.set_xticks(range(len(budgets)), [str(b) for b in budgets])
        ax.set_xlabel("rationale budget (max tokens, greedy)")
        ax.set_ylabel("Spearman x100")
        ax.set_title(
            f"{ds['name']}: {ds['pairs']} of {ds['pairs_kept']} held-out pairs ({ds['kind']} file)", fontsize=9
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)


def plot_samples(
    samples: dict[str, Any], png_path: str | Path, headlines: Sequence[dict[str, Any]] | None = None
) -> list[str]:
    """Rationales averaged on x (log 2), Spearman on y, one panel per dev set, base dashed, intervals shaded.

    Reference lines (horizontal): each model's one greedy rationale at the same budget (dotted, the model's colour)
    and, from `headlines`, the base model at its best greedy budget (the protocol's bar; black, dash-dot). Returns
    the legend labels drawn, in order.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(samples["models"][0]["results"])
    greedy = {(g["model"], g["dataset"]): g["greedy_spearman"] for g in samples.get("gains", [])}
    bars = {
        h["dataset"]: (h["base_spearman"], h["base_best_budget"], h.get("base_model", "base")) for h in headlines or []
    }
    labels: list[str] = []
    fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 4.0), dpi=120, squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for model in samples["models"]:
            points = sorted(model["results"][name]["points"], key=lambda p: p["num_rationales"])
            xs = [p["num_rationales"] for p in points]
            style = _base_style(model) if model["role"] == "base" else {}
            (line,) = ax.plot(xs, [p["spearman"] for p in points], marker="o", label=model["label"], **style)
            lows, highs = [p["ci_low"] for p in points], [p["ci_high"] for p in points]
            ax.fill_between(xs, lows, highs, alpha=0.15, color=line.get_color())
            labels.append(model["label"])
            if (model["label"], name) in greedy:
                label = f"{model['label']}: 1 greedy rationale"
                ax.axhline(greedy[model["label"], name], color=line.get_color(), linestyle=":", label=label)
                labels.append(label)
        if name in bars:
            value, budget, base_label = bars[name]
            label = f"{base_label} at its best budget ({budget} tokens, greedy)"
            ax.axhline(value, color="black", linestyle="-.", label=label)
            labels.append(label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(samples["counts"], [str(k) for k in samples["counts"]])
        ax.set_xlabel(f"rationales averaged (T={samples['temperature']:g}, <= {samples['budget']} tokens)")
        ax.set_ylabel("Spearman x100")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return labels


def write_report(results: dict[str, Any], prefix: str | Path) -> dict[str, str]:
    """Write `PREFIX.json` (the results) and `PREFIX.png` (:func:`plot_results`), and with a rationale-count sweep
    `PREFIX_samples.png` (:func:`plot_samples`); returns the paths (`json`, `plot`, `samples_plot`)."""
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    json_path, png_path = prefix.with_name(prefix.name + ".json"), prefix.with_name(prefix.name + ".png")
    json_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    plot_results(results, png_path)
    files = {"json": str(json_path), "plot": str(png_path)}
    if "samples" in results:
        files["samples_plot"] = str(prefix.with_name(prefix.name + "_samples.png"))
        plot_samples(results["samples"], files["samples_plot"], results.get("headlines"))
    return files
