"""PNG histograms of per-document steerability slopes: ``sweep_<task>_steerability.png``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from saeval.analysis.plots import _png
from saeval.analysis.steerability import Steerability


def steerability_path(directory: Path, entry: Steerability) -> Path:
    """``sweep_<task>_steerability.png`` (``..._steerability_negative.png`` for the negative
    strengths)."""
    suffix = "_negative" if entry.negative else ""
    return _png(directory, f"sweep_{entry.task}_steerability{suffix}")


def plot_steerability(entries: Sequence[Steerability], directory: Path) -> list[Path]:
    """One histogram of the per-document slopes per entry, with zero and the median marked."""
    if not entries:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for entry in entries:
        figure, axes = plt.subplots(figsize=(5.0, 3.5), layout="constrained")
        slopes = [doc.slope for doc in entry.slopes]
        axes.hist(slopes, bins=min(30, max(5, len(slopes) // 2)), color="C0", alpha=0.8)
        axes.axvline(0.0, color="0.3", linestyle="--", label="no effect")
        axes.axvline(entry.median_slope, color="C3", label=f"median {entry.median_slope:+.3g}")
        if entry.median_ci_low is not None and entry.median_ci_high is not None:
            axes.axvspan(entry.median_ci_low, entry.median_ci_high, color="C3", alpha=0.15,
                         label="CI of the median")  # fmt: skip
        scales = ",".join(f"{scale:g}" for scale in entry.scales)
        axes.set_xlabel(f"slope of log P(target) per unit scale (scales {scales})")
        axes.set_ylabel("documents")
        anti = f"{entry.anti_steerable}/{entry.n} anti-steerable"
        axes.set_title(f"{entry.task}: steerability ({anti})", fontsize="medium")
        axes.legend(fontsize="small")
        path = steerability_path(directory, entry)
        figure.savefig(path, dpi=120)
        plt.close(figure)
        written.append(path)
    return written
