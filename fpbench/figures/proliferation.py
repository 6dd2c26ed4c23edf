"""Proliferation pictures (paper Fig. 4): one channel's map followed through the layers, with eta.

Rows (first seed = the "cancer" sample A, second seed = a normal sample B):
  cancer (A)      A's channel `channel` of `layer`, then downstream maps, then the image
  cured (A)       the same with that channel set to 0 (`fpbench.analysis.cure_experiment`)
  normal (B)      B untreated
  inserted (B)    B with A's map inserted as that channel (`insert_experiment`)
  inserted + T    the same with a treatment applied (first --treatments spec), when given
Each downstream column shows, for its layer, the channel whose map correlates most with the
tracked map in the proliferating row (cancer / inserted); the paired row shows the same channel.
Maps are multiplied by the sign of that correlation (so patterns line up) and scaled to their own
range; eta (fraction of the layer's channels dominated by the tracked map) is written in red.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import ConfigError
from . import compose
from .common import FigureOutput, Session, TreatmentSpec, check_specs, parse_seeds, write_grid

DEFAULT_SEEDS = "0,1"
KIND = "proliferation"
HELP = "a proliferating channel's maps across layers with eta per layer: cure and insert experiments (Fig 4)"
CMAP = "RdBu_r"


def default_layer(G) -> str:
    """The paper's "Layer 3": the third synthesis layer that is not a ToRGB."""
    convs = [n for n in G.feature_layers if not n.endswith("torgb")
             and not getattr(G.get_submodule(n), "is_torgb", False)]
    if len(convs) < 2:
        raise ConfigError("the generator has too few synthesis layers for a proliferation figure")
    return convs[min(2, len(convs) - 2)]


def riskiest_channel(session: Session, seed: int, layer: str) -> int:
    """The channel of `layer` with the largest Eq. 3 risk for `seed` (what feature rescaling would hit first)."""
    from ..analysis.features import record_features
    from ..treatments import functional as TF

    stats = session.stats()
    rec = record_features(session.G, session.z([seed]), [layer], c=session.labels(1))
    r = TF.risk(rec.features[layer], stats.mean[layer].to(session.device), stats.std[layer].to(session.device))
    return int(r[0].argmax())


def map_panel(m: torch.Tensor, cell: int) -> "compose.Image.Image":
    """A 2-D map as a colour image (diverging colormap, symmetric about 0 over the map's own range)."""
    import matplotlib

    a = m.detach().float().cpu().numpy()
    scale = float(np.abs(a).max()) or 1.0
    rgba = matplotlib.colormaps[CMAP]((a / scale + 1) / 2)
    return compose.fit(compose.to_pil((rgba[..., :3] * 255).round().astype(np.uint8)), cell)


def _short(layer: str) -> str:
    return layer.removeprefix("synthesis.")


def _traced(features: dict, source: torch.Tensor, layers: Sequence[str]) -> dict[str, tuple[int, float]]:
    """Per layer, the channel of sample 0 most correlated with `source` and the sign of that correlation."""
    from ..analysis.proliferation import map_correlation

    out = {}
    for layer in layers:
        corr = map_correlation(features[layer][:1], source[:1])[0]
        j = int(corr.abs().argmax())
        out[layer] = (j, 1.0 if float(corr[j]) >= 0 else -1.0)
    return out


def render(session: Session, seeds: Sequence[int], layer: str, channel: int, *, spec: TreatmentSpec | None = None,
           tau: float = 0.5, layers: Sequence[str] | None = None, cell: int | None = None, pad: int = 4):
    from ..analysis import proliferation as P
    from ..analysis.features import record_features

    G, c1 = session.G, session.labels(1)
    za = session.z(seeds[:1])
    cure = P.cure_experiment(G, za, layer, channel, mode="zero", tau=tau, layers=layers, c=c1)
    measured = cure.layers
    source = cure.source
    zero = {layer: lambda x: x.index_fill(1, torch.tensor([channel], device=x.device), 0)}
    feats = {"cancer": record_features(G, za, [layer] + measured, c=c1),
             "cured": record_features(G, za, [layer] + measured, c=c1, edits=zero)}
    rows = [("cancer", f"cancer (seed {seeds[0]})", cure, "original", "cancer"),
            ("cured", f"cured (seed {seeds[0]})", cure, "cured", "cancer")]
    results = {"cure": cure}
    if len(seeds) > 1:
        zb = session.z(seeds[1:2])
        treatment = session.treatment(spec) if spec is not None else None
        ins = P.insert_experiment(G, zb, layer, channel, source, treatment=treatment, tau=tau, layers=layers, c=c1)
        results["insert"] = ins

        def put(x):
            x = x.clone()
            x[:, channel] = source.to(x.device, x.dtype)
            return x

        feats["normal"] = record_features(G, zb, [layer] + measured, c=c1)
        feats["inserted"] = record_features(G, zb, [layer] + measured, c=c1, edits={layer: put})
        rows += [("normal", f"normal (seed {seeds[1]})", ins, "original", "inserted"),
                 ("inserted", f"inserted (seed {seeds[1]})", ins, "inserted", "inserted")]
        if treatment is not None:
            feats["treated"] = record_features(G, zb, [layer] + measured, c=c1, edits={layer: put},
                                               treatment=treatment)
            rows.append(("treated", f"inserted + {spec.label}", ins, "treated", "inserted"))
    traced = {key: _traced(feats[key].features, source, measured) for key in ("cancer", "inserted") if key in feats}
    cell = cell or min(compose.default_cell(G.img_resolution), 256)  # many columns: keep the default modest
    grid_rows = []
    for key, _, result, cond, driver in rows:
        panels = [map_panel(feats[key].features[layer][0, channel], cell)]
        for l in measured:
            j, sign = traced[driver][l]
            panel = map_panel(sign * feats[key].features[l][0, j], cell)
            eta = float(result.eta[cond][l][0])
            panels.append(compose.annotate(panel, f"η={eta:.2f}", corner="br", color=(255, 70, 70)))
        img = compose.to_uint8(result.images[cond][:1])[0]
        panels.append(compose.fit(compose.to_pil(img), cell))
        grid_rows.append(panels)
    col_labels = [f"{_short(layer)} ch {channel}"] + [_short(l) for l in measured] + ["image"]
    title = (f"{session.title}: channel {channel} of {_short(layer)} through the layers; "
             f"η = share of a layer's channels with |corr| > {tau:g}")
    image, layout = compose.grid(grid_rows, cell=cell, pad=pad, col_labels=col_labels,
                                 row_labels=[r[1] for r in rows], title=title)
    eta = {f"{r[0]}": {l: float(r[2].eta[r[3]][l][0]) for l in measured} for r in rows}
    return image, layout, eta


def add_arguments(p) -> None:
    p.add_argument("--layer", help="layer whose channel is cured/inserted (default: the third synthesis layer)")
    p.add_argument("--channel", type=int, help="channel of --layer (default: the highest-risk channel for seed A)")
    p.add_argument("--tau", type=float, default=0.5, help="|correlation| above which a channel counts as dominated")
    p.add_argument("--layers", help="comma-separated downstream layers to show (default: all after --layer)")


def validate(args) -> dict:
    seeds = parse_seeds(args.seeds)
    if len(seeds) > 2:
        raise ConfigError("proliferation takes one or two seeds: the cancer sample A and the normal sample B")
    if not 0 <= args.tau <= 1:
        raise ConfigError(f"--tau must be in [0, 1], got {args.tau:g}")
    if args.channel is not None and args.channel < 0:
        raise ConfigError(f"--channel must be >= 0, got {args.channel}")
    specs = []
    if args.treatments:
        from .common import parse_treatments

        specs = parse_treatments(args.treatments)
    else:
        specs = [TreatmentSpec("rescale", (("t", 2), ("p", 2)))]
        check_specs(specs)
    layers = [s.strip() for s in args.layers.split(",") if s.strip()] if args.layers else None
    return {"seeds": seeds, "spec": specs[0] if specs else None, "layers": layers}


def run(session: Session, args, plan: dict, out_dir: Path, name: str) -> list[FigureOutput]:
    from ..treatments.hooks import resolve_layers

    layer = args.layer or default_layer(session.G)
    resolve_layers(session.G, [layer])
    if plan["layers"] is not None:
        resolve_layers(session.G, plan["layers"])
    seeds = plan["seeds"]
    channel = args.channel if args.channel is not None else riskiest_channel(session, seeds[0], layer)
    spec = plan["spec"] if plan["spec"] is not None and plan["spec"].name != "none" else None
    image, layout, eta = render(session, seeds, layer, channel, spec=spec, tau=args.tau, layers=plan["layers"],
                                cell=args.cell, pad=args.pad)
    meta = {"model": session.model, "seeds": seeds, "layer": layer, "channel": channel, "tau": args.tau,
            "eta": eta, "treatment": spec.label if spec else None}
    caption = f"{session.title}: feature proliferation of channel {channel} of {layer}"
    return [write_grid(KIND, image, layout, out_dir, name, meta, caption)]
