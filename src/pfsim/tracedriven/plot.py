"""``pfsim mrc --plot``: the miss-ratio curve as an image (matplotlib, imported only here)."""

from __future__ import annotations

from pathlib import Path

from pfsim.tracedriven.mrc import MissRatioCurve
from pfsim.tracedriven.output import check_image_output, size_text, write_atomically


def plot_curve(curve: MissRatioCurve, path: Path, title: str) -> None:
    """Draw LRU's miss ratio against memory (frames and bytes) with the compulsory floor."""
    check_image_output(path, "--plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames, ratios = curve.curve()
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=120)
    axes.step(frames, ratios, where="post", label="LRU" + (
        f" (SHARDS, rate {curve.sample_rate:g})" if curve.sample_rate < 1 else ""))
    floor = curve.compulsory_misses / curve.requests
    axes.axhline(floor, color="grey", linestyle=":",
                 label=f"compulsory misses ({floor:.4f})")
    axes.set_xlabel(f"memory (frames of {size_text(curve.page_size)}; footprint "
                    f"{curve.footprint:,})")
    axes.set_ylabel("miss ratio")
    axes.set_ylim(0, max(1e-9, float(ratios.max()) * 1.05))
    axes.set_xlim(0, max(frames.max(), 1))
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    suffix = path.suffix.lstrip(".").lower()

    def write(handle) -> None:
        figure.savefig(handle, format=suffix)

    try:
        write_atomically(path, "--plot", write, binary=True)
    finally:
        plt.close(figure)
