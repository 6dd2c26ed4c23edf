"""Image-grid composition with PIL: panels, text labels, grids, strips and atomic PNG/GIF writing.

Pure picture plumbing: no torch, no generator. Every grid has a `GridLayout` (stored in the PNG's
text chunk under the key "fpbench") so a reader can find each panel from the image alone:
width = left + cols * (cell + pad), height = top + rows * (cell + pad).
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from ..cache import atomic_path

BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)
MIN_CELL = 128  # smaller generator outputs are enlarged (nearest) so labels stay legible
MAX_CELL = 512  # larger ones are shrunk by default so a grid stays a few MB (pass cell= for full size)


@dataclass(frozen=True)
class GridLayout:
    rows: int
    cols: int
    cell: int
    pad: int
    left: int
    top: int

    @property
    def size(self) -> tuple[int, int]:
        return (self.left + self.cols * (self.cell + self.pad), self.top + self.rows * (self.cell + self.pad))

    def panel_box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of panel (row, col) in the composed image."""
        x0 = self.left + col * (self.cell + self.pad) + self.pad // 2
        y0 = self.top + row * (self.cell + self.pad) + self.pad // 2
        return (x0, y0, x0 + self.cell, y0 + self.cell)

    def to_dict(self) -> dict:
        return asdict(self)


@functools.lru_cache(maxsize=16)
def font(size: int) -> ImageFont.ImageFont:
    """DejaVu Sans (system or matplotlib's copy), else PIL's built-in font."""
    candidates = ["DejaVuSans.ttf"]
    try:
        import matplotlib

        candidates.append(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"))
    except ImportError:
        pass
    for name in candidates:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size)


def text_size(text: str, size: int) -> tuple[int, int]:
    x0, y0, x1, y1 = font(size).getbbox(text)
    return (x1 - x0, y1 - y0)


def to_uint8(images) -> np.ndarray:
    """Generator output [N,C,H,W] in ~[-1,1] (torch or numpy) -> uint8 [N,H,W,C] on the CPU."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency of the package
        torch = None
    if torch is not None and isinstance(images, torch.Tensor):
        x = (images.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
        return x.permute(0, 2, 3, 1).cpu().numpy()
    x = np.clip(np.asarray(images, dtype=np.float32) * 127.5 + 128, 0, 255).astype(np.uint8)
    return x.transpose(0, 2, 3, 1)


def to_pil(array: np.ndarray) -> Image.Image:
    """uint8 [H,W,C] (C = 1 or 3) or [H,W] -> RGB image."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        return Image.fromarray(a, mode="L").convert("RGB")
    if a.shape[2] == 4:
        return Image.fromarray(a, mode="RGBA").convert("RGB")
    return Image.fromarray(a[:, :, :3], mode="RGB")


def default_cell(resolution: int, cell: int | None = None) -> int:
    """Panel size: `cell` if given, else the native resolution enlarged by a whole factor to >= MIN_CELL,
    or shrunk to MAX_CELL."""
    if cell:
        return int(cell)
    if resolution > MAX_CELL:
        return MAX_CELL
    return resolution * max(1, math.ceil(MIN_CELL / resolution))


def fit(img: Image.Image, cell: int) -> Image.Image:
    """Square panel of side `cell`: nearest when enlarging (keeps pixels honest), Lanczos when shrinking."""
    if img.size == (cell, cell):
        return img
    method = Image.NEAREST if cell >= max(img.size) else Image.LANCZOS
    return img.resize((cell, cell), method)


def annotate(img: Image.Image, text: str, *, corner: str = "bl", color=(255, 255, 255),
             size: int | None = None) -> Image.Image:
    """Copy of `img` with `text` on a dark box in a corner ('tl', 'tr', 'bl', 'br')."""
    out = img.copy()
    size = size or max(10, out.size[1] // 11)
    f = font(size)
    draw = ImageDraw.Draw(out)
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=f)
    w, h, m = x1 - x0, y1 - y0, max(2, size // 5)
    x = m if corner[1] == "l" else out.size[0] - w - 3 * m
    y = m if corner[0] == "t" else out.size[1] - h - 3 * m
    draw.rectangle([x, y, x + w + 2 * m, y + h + 2 * m], fill=(0, 0, 0))
    draw.text((x + m - x0, y + m - y0), text, font=f, fill=color)
    return out


def grid(cells: Sequence[Sequence[Image.Image]], *, cell: int, pad: int = 4,
         col_labels: Sequence[str] | None = None, row_labels: Sequence[str] | None = None,
         title: str | None = None, font_size: int | None = None,
         background=BACKGROUND) -> tuple[Image.Image, GridLayout]:
    """Compose rows of panels (each fitted to `cell` x `cell`) with optional headers and a title.

    Column labels go in a strip above the panels, row labels in a strip to their left, the
    title above everything; long labels wrap onto several lines.
    """
    rows = len(cells)
    cols = max((len(r) for r in cells), default=0)
    if rows == 0 or cols == 0:
        raise ValueError("grid needs at least one panel")
    if col_labels is not None and len(col_labels) != cols:
        raise ValueError(f"{len(col_labels)} column labels for {cols} columns")
    if row_labels is not None and len(row_labels) != rows:
        raise ValueError(f"{len(row_labels)} row labels for {rows} rows")
    fs = font_size or max(12, min(28, cell // 9))
    line_h = text_size("Ag", fs)[1] + fs // 2
    col_lines = [_wrap(t, cell + pad - 4, fs) for t in col_labels] if col_labels else []
    header_h = (max(len(x) for x in col_lines) * line_h + fs // 2) if col_lines else 0
    left = 0
    if row_labels:
        row_lines = [_wrap(t, max(cell, 6 * fs), fs) for t in row_labels]
        left = max(text_size(line, fs)[0] for lines in row_lines for line in lines) + fs
    title_lines = _wrap(title, left + cols * (cell + pad) - 8, fs) if title else []
    title_h = len(title_lines) * line_h + (fs // 2 if title_lines else 0)
    layout = GridLayout(rows=rows, cols=cols, cell=cell, pad=pad, left=left, top=title_h + header_h)
    canvas = Image.new("RGB", layout.size, background)
    draw = ImageDraw.Draw(canvas)
    f = font(fs)
    for i, line in enumerate(title_lines):
        draw.text((4, fs // 4 + i * line_h), line, font=f, fill=TEXT)
    for c, lines in enumerate(col_lines):
        x_mid = left + c * (cell + pad) + (cell + pad) / 2
        for i, line in enumerate(lines):
            w = text_size(line, fs)[0]
            draw.text((x_mid - w / 2, title_h + fs // 4 + i * line_h), line, font=f, fill=TEXT)
    for r, row in enumerate(cells):
        for c, panel in enumerate(row):
            if panel is None:
                continue
            x0, y0, _, _ = layout.panel_box(r, c)
            canvas.paste(fit(panel.convert("RGB"), cell), (x0, y0))
        if row_labels:
            lines = row_lines[r]
            y_mid = layout.top + r * (cell + pad) + (cell + pad) / 2
            y = y_mid - len(lines) * line_h / 2
            for i, line in enumerate(lines):
                draw.text((fs // 2, y + i * line_h), line, font=f, fill=TEXT)
    return canvas, layout


def _wrap(text: str, width: int, size: int) -> list[str]:
    """Greedy word wrap to `width` pixels (explicit newlines kept)."""
    out: list[str] = []
    for paragraph in str(text).split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}".strip()
            if line and text_size(candidate, size)[0] > width:
                out.append(line)
                line = word
            else:
                line = candidate
        out.append(line)
    return out


def hstack(images: Sequence[Image.Image], pad: int = 0, background=BACKGROUND) -> Image.Image:
    """Images side by side, tops aligned."""
    w = sum(im.size[0] for im in images) + pad * (len(images) - 1)
    h = max(im.size[1] for im in images)
    canvas = Image.new("RGB", (w, h), background)
    x = 0
    for im in images:
        canvas.paste(im.convert("RGB"), (x, 0))
        x += im.size[0] + pad
    return canvas


def save_png(img: Image.Image, dest: str | Path, meta: dict | None = None) -> Path:
    """Write `img` to `dest` atomically, with `meta` (JSON) in the text chunk "fpbench"."""
    dest = Path(dest)
    info = PngImagePlugin.PngInfo()
    if meta:
        info.add_text("fpbench", json.dumps(meta, sort_keys=True, default=str))
    with atomic_path(dest) as tmp:
        img.save(tmp, format="PNG", pnginfo=info, optimize=True)
        _readable(tmp)
    return dest


def save_gif(frames: Sequence[Image.Image], dest: str | Path, *, duration_ms: int = 80, loop: int = 0) -> Path:
    """Animated GIF of `frames`, written atomically."""
    if not frames:
        raise ValueError("save_gif needs at least one frame")
    dest = Path(dest)
    with atomic_path(dest) as tmp:
        first, *rest = [f.convert("RGB") for f in frames]
        first.save(tmp, format="GIF", save_all=True, append_images=rest, duration=duration_ms, loop=loop)
        _readable(tmp)
    return dest


def _readable(path: Path) -> None:
    """Temporary files are created private; a finished figure gets the usual umask permissions."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def read_layout(path: str | Path) -> GridLayout | None:
    """The layout stored in a PNG written by `save_png`, or None."""
    with Image.open(path) as im:
        raw = getattr(im, "text", {}).get("fpbench")
    if not raw:
        return None
    meta = json.loads(raw)
    return GridLayout(**meta["layout"]) if "layout" in meta else None
