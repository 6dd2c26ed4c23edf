"""Interpolation and editing compatibility (paper Figs 13-14): a latent path rendered untreated and
with each treatment, as a strip (rows = treatments, columns = steps) and optionally a GIF/MP4.

Interpolation runs through the given seeds in order, by lerp in W (default) or slerp in Z. In W,
each row maps its endpoints with its own treatment active (so truncation applies; it is linear in
W, so truncating the endpoints truncates the whole path) and synthesizes the path with it active.
With --direction, the strip is an edit instead: w(seed) + alpha * direction for each alpha.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..cache import atomic_path
from ..errors import ConfigError, MissingFileError
from . import compose
from .common import FigureOutput, Session, TreatmentSpec, parse_floats, parse_seeds, parse_treatments, write_grid

DEFAULT_SEEDS = "0,1"
KIND = "interpolation"
HELP = "latent interpolation (or --direction edit) strip, untreated vs treated, optional GIF/MP4 (Figs 13-14)"


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """a + t (b - a) for steps t [S] -> [S, *a.shape]."""
    t = t.to(a.dtype).view(-1, *([1] * a.dim()))
    return a[None] + t * (b - a)[None]


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of directions, linear in norm, for 1-D vectors -> [S, D]."""
    t = t.to(a.dtype)[:, None]
    na, nb = a.norm(), b.norm()
    ua, ub = a / na, b / nb
    omega = torch.arccos((ua * ub).sum().clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    if so.abs() < 1e-6:  # (anti)parallel: fall back to lerp of the directions
        u = ua[None] + t * (ub - ua)[None]
    else:
        u = (torch.sin((1 - t) * omega) * ua[None] + torch.sin(t * omega) * ub[None]) / so
    return u * (na + t * (nb - na))


def _path_steps(n_seeds: int, steps: int) -> list[tuple[int, float]]:
    """(segment, fraction) for a path through n_seeds points with `steps` frames per segment."""
    out = [(s, i / steps) for s in range(n_seeds - 1) for i in range(steps)]
    return out + [(n_seeds - 2, 1.0)]


def path_images(session: Session, seeds: Sequence[int], steps: int, space: str,
                spec: TreatmentSpec | None) -> np.ndarray:
    z = session.z(seeds)
    plan = _path_steps(len(seeds), steps)
    if space == "z":
        zs = torch.cat([slerp(z[s], z[s + 1], torch.tensor([f], device=z.device)) for s, f in plan])
        return session.images(zs, spec)
    ws = session.ws(z, spec)
    path = torch.cat([lerp(ws[s], ws[s + 1], torch.tensor([f], device=ws.device)) for s, f in plan])
    return session.images_from_ws(path, spec)


def edit_images(session: Session, seed: int, direction: torch.Tensor, alphas: Sequence[float],
                spec: TreatmentSpec | None) -> np.ndarray:
    ws = session.ws(session.z([seed]), spec)[0]
    d = direction.to(ws.device, ws.dtype)
    d = d.expand_as(ws) if d.dim() == 1 or d.shape[0] == 1 else d
    path = torch.stack([ws + a * d for a in alphas])
    return session.images_from_ws(path, spec)


def load_direction(path: str, w_dim: int) -> torch.Tensor:
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"edit direction {p} not found; pass a .npy or .pt file holding a [w_dim] vector")
    d = torch.from_numpy(np.load(p)) if p.suffix == ".npy" else torch.load(p, map_location="cpu", weights_only=True)
    d = torch.as_tensor(d, dtype=torch.float32).squeeze()
    if d.shape[-1] != w_dim or d.dim() > 2:
        raise ConfigError(f"edit direction {p} has shape {tuple(d.shape)}; expected [{w_dim}] or [num_ws, {w_dim}]")
    return d


def frames(rows: Sequence[np.ndarray], labels: Sequence[str], cell: int) -> list:
    """One frame per step: the rows' images side by side, each labelled; played forth and back."""
    out = []
    for i in range(len(rows[0])):
        panels = [compose.annotate(compose.fit(compose.to_pil(r[i]), cell), lab, corner="tl")
                  for r, lab in zip(rows, labels)]
        out.append(compose.hstack(panels, pad=4))
    return out + out[-2:0:-1]


def save_mp4(frames_: Sequence, dest: Path, fps: int) -> Path:
    import imageio.v2 as imageio

    with atomic_path(dest) as tmp:
        staged = tmp.with_name(tmp.name + ".mp4")  # ffmpeg picks the container from the extension
        try:
            with imageio.get_writer(staged, fps=fps, macro_block_size=1) as w:
                for f in frames_:
                    w.append_data(np.asarray(f))
            os.replace(staged, tmp)
        finally:
            if staged.exists():
                staged.unlink()
    return dest


def add_arguments(p) -> None:
    p.add_argument("--steps", type=int, default=6, help="steps per segment between consecutive seeds (default 6)")
    p.add_argument("--space", choices=["w", "z"], default="w", help="lerp in W (default) or slerp in Z")
    p.add_argument("--direction", help="edit instead of interpolate: .npy/.pt vector [w_dim] added to w(seed)")
    p.add_argument("--alphas", default="-3,-2,-1,0,1,2,3",
                   help="edit strengths for --direction (write --alphas=-3,0,3 when the list starts with a minus)")
    p.add_argument("--gif", action="store_true", help="also write an animated GIF")
    p.add_argument("--mp4", action="store_true", help="also write an MP4 (needs imageio-ffmpeg)")
    p.add_argument("--fps", type=int, default=12)


def validate(args) -> dict:
    seeds = parse_seeds(args.seeds)
    if args.direction is None and len(seeds) < 2:
        raise ConfigError("interpolation needs at least two seeds, e.g. --seeds 3,7")
    if args.steps < 1 or args.fps < 1:
        raise ConfigError("--steps and --fps must be >= 1")
    if args.mp4:
        try:
            import imageio  # noqa: F401
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise ConfigError("--mp4 needs imageio and imageio-ffmpeg (pip install imageio-ffmpeg); "
                              "or use --gif") from None
    specs = parse_treatments(args.treatments or ["rescale:t=2,p=2"])
    alphas = parse_floats(args.alphas, "--alphas") if args.direction else None
    return {"seeds": seeds, "specs": specs, "alphas": alphas}


def run(session: Session, args, plan: dict, out_dir: Path, name: str) -> list[FigureOutput]:
    specs: list = [None, *plan["specs"]]
    labels = ["untreated"] + [s.label for s in plan["specs"]]
    seeds = plan["seeds"]
    if args.direction:
        direction = load_direction(args.direction, session.G.w_dim)
        rows = [edit_images(session, seeds[0], direction, plan["alphas"], s) for s in specs]
        col_labels = [f"α={a:g}" for a in plan["alphas"]]
        what = f"edit of seed {seeds[0]} along {Path(args.direction).name}"
    else:
        rows = [path_images(session, seeds, args.steps, args.space, s) for s in specs]
        col_labels = [f"seed {seeds[s]}" if f == 0 else f"seed {seeds[s + 1]}" if f == 1 else ""
                      for s, f in _path_steps(len(seeds), args.steps)]
        what = f"{args.space}-interpolation through seeds {', '.join(map(str, seeds))}"
    cell = compose.default_cell(rows[0].shape[1], args.cell)
    cells = [[compose.fit(compose.to_pil(img), cell) for img in r] for r in rows]
    image, layout = compose.grid(cells, cell=cell, pad=args.pad, col_labels=col_labels, row_labels=labels,
                                 title=f"{session.title}: {what}")
    meta = {"model": session.model, "seeds": seeds, "space": args.space, "steps": args.steps,
            "treatments": labels[1:], "direction": args.direction, "alphas": plan["alphas"]}
    out = write_grid(KIND, image, layout, out_dir, name, meta, f"{session.title}: {what}")
    if args.gif or args.mp4:
        seq = frames(rows, labels, cell)
        if args.gif:
            out.extra.append(compose.save_gif(seq, Path(out_dir) / f"{name}.gif", duration_ms=1000 // args.fps))
        if args.mp4:
            out.extra.append(save_mp4(seq, Path(out_dir) / f"{name}.mp4", args.fps))
    return [out]
