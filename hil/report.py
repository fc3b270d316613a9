"""Plots a person would rather look at than read: objective vs queries."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_objective_vs_queries(path: str | Path, curves: dict[str, tuple[np.ndarray, np.ndarray]], *,
                              sense: str, title: str, ylabel: str = "objective") -> Path:
    """Write a PNG. ``curves``: name -> (queries per start ``T``, best objective ``T x n_starts``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for name, (queries, best) in curves.items():
        if best.size == 0:
            continue
        mean = np.nanmean(best, axis=1)
        q25, q75 = np.nanpercentile(best, [25, 75], axis=1)
        (line,) = ax.plot(queries, mean, label=f"{name} (mean)")
        ax.fill_between(queries, q25, q75, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("BlackBox queries per starting point")
    ax.set_ylabel(f"best {ylabel} so far ({'lower' if sense == 'min' else 'higher'} is better)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(title="band: 25-75 % of starts")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
