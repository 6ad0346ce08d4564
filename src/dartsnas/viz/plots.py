"""Curves, alpha heat maps, op totals (matplotlib) and the GIF of a search (graphviz frames, Pillow)."""
from __future__ import annotations

import io
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DartsNASError
from .cells import cell_png, op_color


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _int_locator():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _num(rows: Sequence[dict[str, Any]], key: str) -> list[float]:
    out = []
    for r in rows:
        try:
            out.append(float(r[key]))
        except (KeyError, TypeError, ValueError):
            out.append(float("nan"))
    return out


def plot_curves(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Loss and accuracy over epochs (train, and validation and/or test where the run has them) and the
    learning rate, from a run's metrics rows."""
    plt = _pyplot()
    epochs = _num(rows, "epoch")
    eigen = _num(rows, "hessian_eigenvalue")
    collapse = bool(rows) and any(np.isfinite(eigen))  # a search that watched the alpha-Hessian eigenvalue
    fig, axes = plt.subplots(1, 4 if collapse else 3, figsize=(20 if collapse else 15, 4.2),
                             constrained_layout=True)
    styles = {"train": ("#0072B2", "-"), "val": ("#D55E00", "--"), "test": ("#009E73", "-.")}
    for ax, what in zip(axes[:2], ("loss", "acc")):
        for split, (color, ls) in styles.items():
            key = f"{split}_{what}"
            if rows and key in rows[0]:
                ax.plot(epochs, _num(rows, key), ls, color=color, marker="o", markersize=3,
                        label={"val": "validation"}.get(split, split))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(_int_locator())
        ax.set_ylabel("loss" if what == "loss" else "accuracy (%)")
        ax.set_title("loss" if what == "loss" else "accuracy")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[2].plot(epochs, _num(rows, "lr"), color="#555555", marker="o", markersize=3, label="weight lr")
    axes[2].set_xlabel("epoch")
    axes[2].xaxis.set_major_locator(_int_locator())
    axes[2].set_ylabel("learning rate")
    axes[2].set_title("learning rate")
    axes[2].grid(alpha=0.3)
    axes[2].ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    if collapse:
        _collapse_panel(axes[3], rows, epochs, eigen)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _collapse_panel(ax, rows: Sequence[dict[str, Any]], epochs: list[float], eigen: list[float]) -> None:
    """The alpha-Hessian's largest eigenvalue (left axis) with the parameter-free ops of the genotype per cell
    type (right axis): Zela et al.'s sign of a collapse and the collapse itself."""
    ax.plot(epochs, eigen, color="#CC79A7", marker="o", markersize=3, label="largest eigenvalue")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(_int_locator())
    ax.set_ylabel("alpha-Hessian eigenvalue")
    ax.set_title("collapse")
    ax.grid(alpha=0.3)
    counts = ax.twinx()
    for key, label, ls in (("param_free_normal", "parameter-free ops, normal", "--"),
                           ("param_free_reduce", "parameter-free ops, reduction", ":")):
        counts.plot(epochs, _num(rows, key), ls, color="#555555", label=label)
    counts.set_ylabel("parameter-free ops in the genotype")
    counts.yaxis.set_major_locator(_int_locator())
    lines = ax.get_legend_handles_labels()
    more = counts.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8)


def _edge_labels(num_edges: int) -> list[str]:
    labels, node, start = [], 0, 0
    while start < num_edges:
        for j in range(2 + node):
            src = {0: "c_{k-2}", 1: "c_{k-1}"}.get(j, f"node {j - 2}")
            labels.append(f"{src} -> node {node}")
        start += 2 + node
        node += 1
    return labels[:num_edges]


def alpha_kinds(history: dict[str, np.ndarray]) -> list[str]:
    """The op-weight arrays of a history: ``alpha_normal``, ``alpha_reduce`` or ``alpha_cell_NN`` (per cell)."""
    shared = [k for k in ("alpha_normal", "alpha_reduce") if k in history]
    return shared or sorted(k for k in history if k.startswith("alpha_cell_"))


def history_gates(history: dict[str, np.ndarray], kind: str) -> np.ndarray:
    """The op weights of ``history[kind]`` by the search's gate function (softmax unless it says sigmoid)."""
    from ..genotype import gate_values

    gate = str(history["gate"]) if "gate" in history else "softmax"
    return gate_values(history[kind], gate)


def kind_title(kind: str) -> str:
    if kind == "alpha_normal":
        return "normal cell"
    if kind == "alpha_reduce":
        return "reduction cell"
    return f"cell {int(kind.rsplit('_', 1)[1])}"


def _grid(plt, panels: int, width: float, height: float):
    cols = min(panels, 2 if panels <= 2 else 4)
    rows = -(-panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False,
                             constrained_layout=True)
    flat = [ax for row in axes for ax in row]
    for ax in flat[panels:]:
        ax.axis("off")
    return fig, flat


def heatmap_layout(epochs: int, kinds: int) -> tuple[int, int, list[tuple[int, int]]]:
    """Rows, columns and each (epoch, kind) panel's cell: one epoch per row (a per-cell search's cells wrap
    at four per row within their epoch's rows), so an epoch never shares a row with another."""
    cols = min(kinds, 4)
    per_epoch = -(-kinds // cols)
    cells = [(e * per_epoch + k // cols, k % cols) for e in range(epochs) for k in range(kinds)]
    return epochs * per_epoch, cols, cells


def heatmap_range(weights: Sequence[np.ndarray], gate: str) -> tuple[float, float]:
    """One colour scale for every panel, from 0: to 1 for sigmoid gates (each a probability of its own), to the
    largest weight shown for softmax ones, so near-uniform weights look uniform."""
    if gate == "sigmoid":
        return 0.0, 1.0
    return 0.0, max(float(np.max(w)) for w in weights)


def plot_alpha_heatmaps(history: dict[str, np.ndarray], primitives: Sequence[str], epochs: Sequence[int],
                        path: str | Path) -> Path:
    """Op weights (edges by ops) of every cell type (or every cell, per-cell search) after each of ``epochs``,
    on one colour scale."""
    plt = _pyplot()
    kinds = alpha_kinds(history)
    edges = history[kinds[0]].shape[1]
    rows, cols, cells = heatmap_layout(len(epochs), len(kinds))
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, (0.38 * edges + 1.6) * rows), squeeze=False,
                             constrained_layout=True)
    panels = [(e, k) for e in epochs for k in kinds]
    weights = [history_gates(history, kind)[epoch] for epoch, kind in panels]
    gate = str(history["gate"]) if "gate" in history else "softmax"
    vmin, vmax = heatmap_range(weights, gate)
    used = set(cells)
    for (r, c), (epoch, kind), w in zip(cells, panels, weights):
        ax = axes[r][c]
        im = ax.imshow(w, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
        ax.set_xticks(range(len(primitives)), list(primitives), rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(edges), _edge_labels(edges), fontsize=7)
        ax.set_title(f"{kind_title(kind)}, epoch {epoch}", fontsize=10)
    for r in range(rows):
        for c in range(cols):
            if (r, c) not in used:
                axes[r][c].axis("off")
    uniform = f" (uniform: {1 / len(primitives):.3f})" if gate == "softmax" else ""
    fig.colorbar(im, ax=axes, shrink=0.6, label=f"op weight{uniform}")
    return _save(fig, path)


def plot_op_totals(history: dict[str, np.ndarray], primitives: Sequence[str], path: str | Path) -> Path:
    """Each op's weight summed over edges, epoch by epoch: skip-connection collapse shows as the green
    line rising."""
    plt = _pyplot()
    kinds = alpha_kinds(history)
    fig, axes = _grid(plt, len(kinds), 6.5, 4.2)
    for ax, kind in zip(axes, kinds):
        w = history_gates(history, kind).sum(axis=1)  # [epochs + 1, ops]
        for k, op in enumerate(primitives):
            ax.plot(range(w.shape[0]), w[:, k], color=op_color(op), label=op, linewidth=2)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(_int_locator())
        ax.set_ylabel("total weight over edges")
        ax.set_title(kind_title(kind))
        ax.grid(alpha=0.3)
    axes[len(kinds) - 1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    from ..fileio import atomic_write_bytes

    path = Path(path)
    buf = io.BytesIO()
    fmt = path.suffix.lstrip(".") or "png"
    fig.savefig(buf, format=fmt, dpi=110)
    _pyplot().close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _frame(genotype, caption: str):
    """Normal and reduction diagrams side by side under a caption (a Pillow image)."""
    from PIL import Image, ImageDraw, ImageFont

    if genotype.cells is not None:  # per-cell: every position, four to a row
        designs = [(d, f"cell {i} ({'reduction' if d.reduction else 'normal'})") for i, d in enumerate(genotype.cells)]
    else:
        designs = [(genotype.normal, "normal cell"), (genotype.reduce, "reduction cell")]
    parts = []
    for design, name in designs:
        png = cell_png(design, name)
        parts.append(Image.open(io.BytesIO(png)).convert("RGB"))
    head, per_row = 40, 2 if len(parts) <= 2 else 4
    rows = [parts[i:i + per_row] for i in range(0, len(parts), per_row)]
    width = max(sum(p.width for p in row) + 10 * (len(row) + 2) for row in rows)
    height = sum(max(p.height for p in row) + 10 for row in rows) + head
    frame = Image.new("RGB", (width, height), "white")
    y = head
    for row in rows:
        x = 10
        for p in row:
            frame.paste(p, (x, y))
            x += p.width + 10
        y += max(p.height for p in row) + 10
    draw = ImageDraw.Draw(frame)
    try:
        font = ImageFont.load_default(size=22)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    draw.text((12, 8), caption, fill="black", font=font)
    return frame


def _search_frames(genotypes: Sequence[Any], captions: Sequence[str]):
    """One RGB frame per genotype, all padded to the same size."""
    from PIL import Image

    frames = [_frame(g, c) for g, c in zip(genotypes, captions)]
    width, height = max(f.width for f in frames), max(f.height for f in frames)
    padded = []
    for f in frames:
        canvas = Image.new("RGB", (width, height), "white")
        canvas.paste(f, (0, 0))
        padded.append(canvas)
    return padded


def search_gif(genotypes: Sequence[Any], captions: Sequence[str], path: str | Path,
               seconds_per_frame: float = 0.8) -> Path:
    """A GIF of the cells epoch after epoch (one frame per genotype, the last held longer)."""
    from PIL import Image

    padded = [f.convert("P", palette=Image.Palette.ADAPTIVE) for f in _search_frames(genotypes, captions)]
    durations = [int(seconds_per_frame * 1000)] * len(padded)
    durations[-1] = max(durations[-1], 2500)
    buf = io.BytesIO()
    padded[0].save(buf, format="GIF", save_all=True, append_images=padded[1:], duration=durations, loop=0)
    from ..fileio import atomic_write_bytes

    return atomic_write_bytes(Path(path), buf.getvalue())


class NoVideoEncoder(DartsNASError):
    def __init__(self) -> None:
        super().__init__("MP4 needs ffmpeg: apt-get install ffmpeg, or pip install imageio-ffmpeg "
                         "(the GIF needs neither)")


def ffmpeg_executable() -> str | None:
    """ffmpeg on PATH, else the one the imageio-ffmpeg package ships, else None."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:
        return None


def search_mp4(genotypes: Sequence[Any], captions: Sequence[str], path: str | Path,
               seconds_per_frame: float = 0.8) -> Path:
    """The search GIF's frames as an H.264 MP4 (the last frame held longer). Needs ffmpeg."""
    import os
    import subprocess
    import tempfile

    ffmpeg = ffmpeg_executable()
    if ffmpeg is None:
        raise NoVideoEncoder()
    frames = _search_frames(genotypes, captions)
    frames += [frames[-1]] * max(0, int(round(2.5 / seconds_per_frame)) - 1)  # hold the result
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for i, f in enumerate(frames):
            f.save(os.path.join(tmp, f"{i:05d}.png"))
        out = os.path.join(tmp, "out.mp4")
        cmd = [ffmpeg, "-y", "-loglevel", "error", "-framerate", f"{1 / seconds_per_frame:g}",
               "-i", os.path.join(tmp, "%05d.png"), "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2:color=white",
               "-pix_fmt", "yuv420p", "-r", "25", "-movflags", "+faststart"]
        done = None
        for codec in (["-c:v", "libx264"], ["-c:v", "mpeg4", "-q:v", "3"]):  # H.264 where the build has it
            done = subprocess.run(cmd + codec + [out], capture_output=True, text=True)
            if done.returncode == 0:
                break
        if done is None or done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["unknown error"])[-1] if done else "not run"
            raise DartsNASError(f"ffmpeg could not write {path.name}: {last}")
        shutil.move(out, path)
    return path
