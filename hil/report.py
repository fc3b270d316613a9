"""Plots a person would rather look at than read: objective vs queries, and the best point's images."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_objective_vs_queries(path: str | Path, curves: dict[str, tuple[np.ndarray, np.ndarray]], *,
                              sense: str, title: str, ylabel: str = "objective",
                              reference: tuple[float, str] | None = None,
                              crossings: dict[str, tuple[float, str]] | None = None) -> Path:
    """Write a PNG. ``curves``: name -> (queries per start ``T``, best objective ``T x n_starts``).

    ``reference``: (level, label), a dashed horizontal line (e.g. the base method's final mean);
    ``crossings``: curve name -> (queries per start, text), a marker where that curve reaches the level.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    colours = _draw_curves(ax, curves, sense, title, ylabel)
    if reference is not None:
        level, label = reference
        ax.axhline(level, color="0.3", linestyle="--", linewidth=1)
        ax.annotate(label, (0, level), xytext=(4, 3), textcoords="offset points", fontsize=8, color="0.3")
        for i, (name, (queries, text)) in enumerate((crossings or {}).items()):
            ax.plot([queries], [level], marker="o", color=colours.get(name, "k"), markeredgecolor="k")
            # stacked labels, so that close crossings stay readable
            ax.annotate(f"{name}: {text}", (queries, level), xytext=(4, -12 - 10 * i), textcoords="offset points",
                        fontsize=8, color=colours.get(name, "k"))
    return _save(fig, path)


def plot_run_report(path: str | Path, curves: dict[str, tuple[np.ndarray, np.ndarray]], *, sense: str, title: str,
                    images: dict[str, np.ndarray], ylabel: str = "objective") -> Path:
    """Objective vs queries beside image panels (e.g. the best SLM phase, its camera image, the target).

    ``images``: panel title -> 2-D array; an empty mapping gives the curves alone.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not images:
        return plot_objective_vs_queries(path, curves, sense=sense, title=title, ylabel=ylabel)
    n = len(images)
    fig = plt.figure(figsize=(7 + 3.2 * n, 4.5), dpi=110)
    grid = fig.add_gridspec(1, n + 2)
    _draw_curves(fig.add_subplot(grid[0, :2]), curves, sense, title, ylabel)
    for i, (name, image) in enumerate(images.items()):
        ax = fig.add_subplot(grid[0, 2 + i])
        shown = ax.imshow(np.asarray(image), cmap="twilight" if "phase" in name else "inferno")
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(fig, path)


def _draw_curves(ax, curves: dict[str, tuple[np.ndarray, np.ndarray]], sense: str, title: str,
                 ylabel: str) -> dict[str, str]:
    """Mean curves with 25-75 % bands; returns each drawn curve's colour."""
    colours: dict[str, str] = {}
    for name, (queries, best) in curves.items():
        if best.size == 0:
            continue
        mean = np.nanmean(best, axis=1)
        q25, q75 = np.nanpercentile(best, [25, 75], axis=1)
        (line,) = ax.plot(queries, mean, label=f"{name} (mean)")
        ax.fill_between(queries, q25, q75, color=line.get_color(), alpha=0.2, linewidth=0)
        colours[name] = line.get_color()
    ax.set_xlabel("BlackBox queries per starting point")
    ax.set_ylabel(f"best {ylabel} so far ({'lower' if sense == 'min' else 'higher'} is better)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(title="band: 25-75 % of starts")
    return colours


def _save(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
