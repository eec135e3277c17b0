"""Training curves as PNG bytes, to embed in the page as data URIs (the page needs no other file).

Figures are built with `matplotlib.figure.Figure` and the Agg canvas, not `pyplot`: no global
figure registry and no backend switch, so making a report cannot open a window, leak figures, or
change the plotting state of a notebook that calls it. PNG metadata is left out so the same
metrics give the same bytes.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, FuncFormatter, MaxNLocator

TRAIN = "#2563eb"
VALIDATION = "#ea580c"
LEARNING_RATE = "#7c3aed"
THROUGHPUT = "#059669"
INK = "#1f2937"
MUTED = "#6b7280"
DPI = 144


def loss_curve_png(train: Sequence[dict[str, Any]], validation: Sequence[dict[str, Any]]) -> bytes | None:
    """Training loss (raw and smoothed) and validation loss against the optimizer step."""
    train_xy = _series(train, "loss")
    val_xy = _series(validation, "val_loss")
    if not train_xy[0] and not val_xy[0]:
        return None
    fig, ax = _figure(8.0, 3.4)
    steps, loss = train_xy
    if steps:
        smooth = _ema(loss) if len(loss) >= 20 else None
        ax.plot(steps, loss, color=TRAIN, linewidth=1.0, alpha=0.35 if smooth else 1.0,
                label="train" if smooth is None else "train (raw)")
        if smooth is not None:
            ax.plot(steps, smooth, color=TRAIN, linewidth=1.8, label="train (smoothed)")
    if val_xy[0]:
        ax.plot(*val_xy, color=VALIDATION, linewidth=1.8, marker="o", markersize=3.5, label="validation")
    _style(ax, "Loss", "step", "loss (nats / token)")
    ax.legend(frameon=False, fontsize=8, labelcolor=INK)
    return _png(fig)


def lr_curve_png(train: Sequence[dict[str, Any]]) -> bytes | None:
    """The learning-rate schedule as it was applied (warmup, then decay)."""
    steps, lr = _series(train, "lr")
    if not steps:
        return None
    fig, ax = _figure(3.9, 2.6)
    ax.plot(steps, lr, color=LEARNING_RATE, linewidth=1.6)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))  # 0.003, 0.0005
    _style(ax, "Learning rate", "step", None)
    return _png(fig)


def throughput_png(train: Sequence[dict[str, Any]]) -> bytes | None:
    """Tokens per second per logged step: dips show data stalls, evaluation or checkpointing."""
    steps, tps = _series(train, "tokens_per_s")
    if not steps:
        return None
    fig, ax = _figure(3.9, 2.6)
    ax.plot(steps, tps, color=THROUGHPUT, linewidth=1.2)
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(EngFormatter(places=0, sep=""))
    _style(ax, "Throughput", "step", "tokens / s")
    return _png(fig)


def tradeoff_png(points: Sequence[dict[str, Any]]) -> bytes | None:
    """Domain and general bits per byte against the step: what continued training gains and costs as it goes."""
    domain = _series(points, "domain_bpb")
    general = _series(points, "general_bpb")
    if not domain[0] and not general[0]:
        return None
    fig, ax = _figure(8.0, 3.2)
    if domain[0]:
        ax.plot(*domain, color=TRAIN, linewidth=1.8, marker="o", markersize=3.5, label="held-out domain text")
    if general[0]:
        ax.plot(*general, color=VALIDATION, linewidth=1.8, marker="s", markersize=3.5, label="general text")
    _style(ax, "Domain vs general, during training", "step", "bits / byte")
    ax.legend(frameon=False, fontsize=8, labelcolor=INK)
    return _png(fig)


RUN_COLOURS = ("#2563eb", "#ea580c", "#059669", "#7c3aed", "#db2777", "#0891b2")


def runs_curves_png(lines: Sequence[dict[str, Any]], title: str) -> bytes | None:
    """Several runs on one plot: each line {"label", "points": [(step, bits/byte)], "dashed", "colour": index}."""
    if not lines:
        return None
    fig, ax = _figure(8.0, 3.4)
    for line in lines:
        xs, ys = zip(*line["points"])
        ax.plot(xs, ys, "--" if line["dashed"] else "-", color=RUN_COLOURS[line["colour"] % len(RUN_COLOURS)],
                marker="o", markersize=3, linewidth=1.6, label=line["label"])
    _style(ax, title, "step", "bits / byte")
    ax.legend(frameon=False, fontsize=7, labelcolor=INK)
    return _png(fig)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _series(points: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) for the points that carry `key`; non-numbers become NaN (a gap in the line)."""
    xs, ys = [], []
    for p in points:
        if key not in p:
            continue
        xs.append(p["step"])
        ys.append(_float(p[key]))
    if all(math.isnan(y) for y in ys):
        return [], []
    return xs, ys


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _ema(values: list[float], span_fraction: float = 0.05) -> list[float]:
    """Bias-corrected exponential moving average over ~5% of the points (as TensorBoard smooths)."""
    alpha = 2.0 / (max(2.0, len(values) * span_fraction) + 1.0)
    out, avg, weight = [], 0.0, 0.0
    for v in values:
        if math.isfinite(v):
            avg = (1 - alpha) * avg + alpha * v
            weight = (1 - alpha) * weight + alpha
        out.append(avg / weight if weight else math.nan)
    return out


def _figure(width: float, height: float) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _style(ax: Axes, title: str, xlabel: str, ylabel: str | None) -> None:
    ax.set_title(title, loc="left", fontsize=10, fontweight="bold", color=INK)
    ax.set_xlabel(xlabel, fontsize=8, color=MUTED)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=8, color=MUTED)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
    ax.xaxis.set_major_formatter(FuncFormatter(_short_count))
    ax.tick_params(labelsize=8, colors=MUTED)
    ax.grid(True, color="#e5e7eb", linewidth=0.7)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#d1d5db")


def _short_count(value: float, _pos: int | None = None) -> str:
    """Axis steps: 200000 → "200k", 1500000 → "1.5M"."""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    with np.errstate(all="ignore"):  # a diverged run (loss 1e30, inf) still draws, without warnings
        fig.savefig(buf, format="png", metadata={"Software": None}, facecolor="white")
    return buf.getvalue()
