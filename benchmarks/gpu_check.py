"""GPU check: fast path vs reference, plain vs treated throughput, one 2,000-image setting end to end.

    bash benchmarks/gpu_check.sh                    # one GPU, no network, < 8 minutes on an H200
    FPBENCH_GPU_CHECK_TINY=1 bash benchmarks/gpu_check.sh    # logic dry-run at toy size (CPU is fine)

Random-weight networks (`fpbench.timing.BENCH_MODELS`; compute cost equals the released models'):
StyleGAN2 config F 1024x1024 and StyleGAN3-R 512x512. Sections, each guarded (a failure is
recorded and the next section runs):
 1. parity: fp16 blocks + channels_last and CUDA graphs vs. the float32 eager reference, plain
    and treated (max |diff| of images in [-1, 1]), and the treated forward traced with fullgraph=True
    (no host sync);
 2. throughput: best batch size for plain generation, then plain vs. treated images/s at it
    (interleaved, median of paired ratios; target <= 1.05), eager fp16 and with CUDA graphs;
 3. extractors: InceptionV3 / VGG16 / LPIPS features in fp16 autocast vs. float32 (relative error,
    and FID of fp16 vs. fp32 features of the same images);
 4. end to end: one setting (StyleGAN2 1024, rescale, all paper metrics with random weights,
    labelled uncalibrated, generated reference) of 2,000 images through the app's runner;
 5. compile: torch.compile (+ CUDA graphs) of the StyleGAN2 model vs. the reference (last: minutes of
    compilation; GPU_CHECK_COMPILE=0 skips it).
The report is rewritten after every section, so a timeout keeps what finished.
Writes `$OUT/gpu_check.md` and `.json` (or `results/bench/gpu_check_<device>.md` without $OUT).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fpbench import timing  # noqa: E402

TINY = os.environ.get("FPBENCH_GPU_CHECK_TINY", "") not in ("", "0")
COMPILE = os.environ.get("GPU_CHECK_COMPILE", "1") not in ("", "0")
DEVICE = torch.device(os.environ.get("GPU_CHECK_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu"))
SG2, SG3 = ("tiny", "sg3-small-32") if TINY else ("sg2-f-1024", "sg3-r-512")
E2E_N = int(os.environ.get("GPU_CHECK_N", 16 if TINY else 2000))
BATCHES = [1, 2, 4, 8] if TINY else [4, 8, 16, 32, 64]
PARITY_ATOL_FP16 = 0.05      # images in [-1, 1]: fp16 blocks vs float32 reference
PARITY_ATOL_EXACT = 1e-3     # same precision, different execution (graphs, compile)
REPORT: dict = {"tiny": TINY, "device": str(DEVICE), "sections": {}}


def section(name):
    def wrap(fn):
        def run(*a, **k):
            tic = time.perf_counter()
            try:
                out = fn(*a, **k)
                REPORT["sections"][name] = {"ok": True, "seconds": round(time.perf_counter() - tic, 1), **out}
            except Exception as err:  # noqa: BLE001 - record and go on to the next section
                REPORT["sections"][name] = {"ok": False, "seconds": round(time.perf_counter() - tic, 1),
                                            "error": f"{type(err).__name__}: {err}"[:500],
                                            "traceback": traceback.format_exc()[-2000:]}
            print(f"[gpu_check] {name}: " + json.dumps(REPORT["sections"][name], default=str)[:800], flush=True)
            save()
        return run
    return wrap


def setup(name):
    from fpbench.stats import estimate_feature_stats
    from fpbench.treatments import FeatureRescaling

    G = timing.bench_generator(name, device=DEVICE)
    stats = estimate_feature_stats(G, n=16, batch_size=8, progress=False, use_cache=False)
    return G, FeatureRescaling(stats)


def maxdiff(a, b) -> float:
    return float((a.float() - b.float()).abs().max())


@section("parity")
def parity(models):
    from fpbench.generators import seeds_to_z
    from fpbench.generators.fast import FastGenerator, FastOptions, no_host_sync_check, set_channels_last

    out = {}
    for name, (G, tr) in models.items():
        z = seeds_to_z(list(range(4)), G.z_dim, device=DEVICE)
        with torch.no_grad():
            ref = G(z, force_fp32=True)
            with tr.applied(G):
                ref_t = G(z, force_fp32=True)
        res = {"treatment_changes_image": maxdiff(ref, ref_t)}
        variants = {"fp16+channels_last": FastOptions()}
        if DEVICE.type == "cuda":
            variants["fp16+cuda_graphs"] = FastOptions(cuda_graphs=True)
        for label, opts in variants.items():
            fast = FastGenerator(G, opts)
            for _ in range(2):
                d_plain, d_treated = maxdiff(fast(z), ref), maxdiff(fast(z, treatment=tr), ref_t)
            res[label] = {"plain_maxdiff": d_plain, "treated_maxdiff": d_treated}
            set_channels_last(G, False)
        eager16 = FastGenerator(G, FastOptions(channels_last=False))
        res["fp16_vs_fp16_graphs_or_compile_tolerance"] = PARITY_ATOL_EXACT
        res["fp16_tolerance"] = PARITY_ATOL_FP16
        res["fp16_eager_plain_maxdiff"] = maxdiff(eager16(z), ref)
        res["no_host_sync_fullgraph"] = maxdiff(no_host_sync_check(G, z, treatment=tr), ref_t) < PARITY_ATOL_FP16
        res["pass"] = all(v["plain_maxdiff"] < PARITY_ATOL_FP16 and v["treated_maxdiff"] < PARITY_ATOL_FP16
                          for k, v in res.items() if isinstance(v, dict)) and res["no_host_sync_fullgraph"]
        out[name] = res
    return out


@section("compile")
def compiled(models):
    """torch.compile (inductor; eager tracing in the tiny dry-run) of the StyleGAN2 model, plain and
    treated, against the float32 eager reference. Last, because compiling a 1024 network takes minutes."""
    from fpbench.generators import seeds_to_z
    from fpbench.generators.fast import FastGenerator, FastOptions

    G, tr = models[SG2]
    z = seeds_to_z(list(range(4)), G.z_dim, device=DEVICE)
    with torch.no_grad():
        ref = G(z, force_fp32=True)
        with tr.applied(G):
            ref_t = G(z, force_fp32=True)
    out = {}
    variants = {"fp16+compile": FastOptions(compile=True, backend="eager" if TINY else "inductor")}
    if DEVICE.type == "cuda":
        variants["fp16+compile+cuda_graphs"] = FastOptions(compile=True, cuda_graphs=True)
    for label, opts in variants.items():
        tic = time.perf_counter()
        fast = FastGenerator(G, opts)
        first = maxdiff(fast(z), ref), maxdiff(fast(z, treatment=tr), ref_t)
        out[label] = {"plain_maxdiff": first[0], "treated_maxdiff": first[1],
                      "compile_seconds": round(time.perf_counter() - tic, 1)}
        if DEVICE.type == "cuda":
            times = timing.interleaved({"plain": lambda: fast(z), "treated": lambda: fast(z, treatment=tr)},
                                       repeats=5, warmup=1, device=DEVICE)
            out[label]["treated_over_plain_b4"] = timing.ratio(times, "treated", "plain")
            out[label]["plain_images_per_s_b4"] = 4 / timing.median(times["plain"])
        save()
    out["pass"] = all(v["plain_maxdiff"] < PARITY_ATOL_FP16 and v["treated_maxdiff"] < PARITY_ATOL_FP16
                      for v in out.values() if isinstance(v, dict))
    return out


@section("throughput")
def throughput(models):
    from fpbench.generators import seeds_to_z
    from fpbench.generators.fast import FastGenerator, FastOptions

    out = {}
    for name, (G, tr) in models.items():
        fast = FastGenerator(G, FastOptions())

        def plain(b):
            return fast(seeds_to_z(list(range(b)), G.z_dim, device=DEVICE))
        best, speeds = timing.best_batch_size(plain, BATCHES, device=DEVICE, repeats=3,
                                              time_budget_s=20 if TINY else 60)
        z = seeds_to_z(list(range(best)), G.z_dim, device=DEVICE)
        res = {"best_batch": best, "plain_images_per_s_by_batch": speeds}
        variants = {"eager_fp16": FastOptions()}
        if DEVICE.type == "cuda":
            variants["cuda_graphs_fp16"] = FastOptions(cuda_graphs=True)
        for label, opts in variants.items():
            f = FastGenerator(G, opts)
            times = timing.interleaved({"plain": lambda: f(z), "treated": lambda: f(z, treatment=tr)},
                                       repeats=5 if TINY else 9, warmup=2, device=DEVICE)
            res[label] = {"plain_images_per_s": best / timing.median(times["plain"]),
                          "treated_images_per_s": best / timing.median(times["treated"]),
                          "treated_over_plain": timing.ratio(times, "treated", "plain")}
        res["target_ratio"] = 1.05 if DEVICE.type == "cuda" else 1.10
        res["pass"] = all(v["treated_over_plain"] <= res["target_ratio"] for k, v in res.items()
                          if isinstance(v, dict) and "treated_over_plain" in v)
        if DEVICE.type == "cuda":
            res["peak_device_mb"] = torch.cuda.max_memory_allocated(DEVICE) / 2 ** 20
        out[name] = res
    return out


@section("extractors")
def extractors(G):
    from fpbench import metrics as M
    from fpbench.generators import seeds_to_z

    n = 8 if TINY else 256
    with torch.no_grad():
        imgs = torch.cat([G(seeds_to_z(list(range(s, s + 8)), G.z_dim, device=DEVICE)).clamp(-1, 1)
                          for s in range(0, n, 8)])
    amp = torch.float16 if DEVICE.type == "cuda" else torch.bfloat16
    # bfloat16 convolutions are emulated (minutes) on CPUs without AMX/avx512_bf16: there the
    # dry-run runs the comparison with autocast disabled, to exercise the logic only
    use_amp = DEVICE.type == "cuda" or os.environ.get("GPU_CHECK_CPU_AMP") == "1"
    out = {"autocast_dtype": str(amp) if use_amp else "disabled (CPU dry-run)", "images": n}
    bank = M.FeatureBank()
    for label, (name, layer) in {"inception": ("inception-v3-compat", "2048"), "vgg16": ("vgg16", "fc2_relu")}.items():
        ex = bank.extractor(name, layer, device=DEVICE, pretrained=False)
        ref = ex(imgs)
        with torch.autocast(DEVICE.type, dtype=amp, enabled=use_amp):
            low = ex(imgs)
        rel = float((low.float() - ref).norm(dim=1).div(ref.norm(dim=1).clamp_min(1e-12)).max())
        out[label] = {"max_relative_l2_error": rel}
        if label == "inception" and n >= 4:
            from fpbench.metrics.distribution import frechet_distance_eigh
            half = n // 2
            out[label]["fid_fp32"] = frechet_distance_eigh(ref[:half], ref[half:], device=DEVICE)
            out[label]["fid_low_precision"] = frechet_distance_eigh(low.float()[:half], low.float()[half:],
                                                                    device=DEVICE)
    # ArcFace runtimes: onnxruntime (CPU provider unless its CUDA build is installed; crops cross to the
    # host) vs. the same graph replayed in torch on the images' device. Random small stand-in network.
    ort_id = M.create("id", device=DEVICE, pretrained=False)
    providers = ort_id.model.session.get_providers()
    if "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers():
        ort_id = M.create("id", device=DEVICE, pretrained=False, providers=["CUDAExecutionProvider"])
        providers = ort_id.model.session.get_providers()
    torch_id = M.create("id", device=DEVICE, pretrained=False, runtime="torch")
    t = timing.interleaved({"onnxruntime": lambda: ort_id.embed(imgs), "torch": lambda: torch_id.embed(imgs)},
                           repeats=5, warmup=1, device=DEVICE)
    out["arcface_runtime"] = {"onnxruntime_providers": providers,
                              "onnxruntime_ms": timing.median(t["onnxruntime"]) * 1e3,
                              "torch_ms": timing.median(t["torch"]) * 1e3,
                              "torch_over_onnxruntime": timing.ratio(t, "torch", "onnxruntime"),
                              "max_abs_diff": float((torch_id.embed(imgs) - ort_id.embed(imgs)).abs().max())}
    lp = M.create("lpips", device=DEVICE, pretrained=False)
    a, b = imgs[: n // 2], imgs[n // 2:]
    with torch.no_grad():
        ref = lp.scores(a, b)
        with torch.autocast(DEVICE.type, dtype=amp, enabled=use_amp):
            low = lp.scores(a, b)
    out["lpips"] = {"max_abs_error": float((low.float() - ref).abs().max()), "mean_fp32": float(ref.mean())}
    return out


@section("end_to_end")
def end_to_end(batch: int):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from pipeline import end_to_end as run

    names = ["psnr", "ssim", "lpips", "id", "fid", "pr"]
    with tempfile.TemporaryDirectory() as tmp:
        r = run(SG2, DEVICE, batch, E2E_N, names, False, 64 if not TINY else 16, Path(tmp), fid_sqrtm="eigh")
    r["n"] = E2E_N
    r["label"] = "random-weight metric networks: values uncalibrated, timings real"
    return r


def save():
    """Write the report so far (a timeout keeps every finished section)."""
    out_dir = Path(os.environ.get("OUT") or "results/bench")
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "gpu_check" if os.environ.get("OUT") else f"gpu_check_{DEVICE.type}{'_tiny' if TINY else ''}"
    REPORT["all_ok"] = all(s.get("ok") and s.get("pass", True) is not False and
                           all(v.get("pass", True) for v in s.values() if isinstance(v, dict))
                           for s in REPORT["sections"].values())
    (out_dir / f"{stem}.json").write_text(json.dumps(REPORT, indent=1, default=str))
    (out_dir / f"{stem}.md").write_text(markdown(REPORT))


def main():
    t0 = time.perf_counter()
    REPORT["machine"] = timing.machine_info(DEVICE)
    models = {}
    for name in (SG2, SG3):
        models[name] = setup(name)
    REPORT["models"] = {k: timing.BENCH_MODELS[k][2] for k in models}
    parity(models)
    throughput(models)
    extractors(models[SG2][0])
    tp = REPORT["sections"].get("throughput", {})
    batch = tp.get(SG2, {}).get("best_batch", 8) if tp.get("ok") else 8
    if DEVICE.type == "cuda":
        torch.cuda.empty_cache()
    end_to_end(min(batch, 32))
    if COMPILE:
        compiled(models)
    REPORT["total_seconds"] = round(time.perf_counter() - t0, 1)
    save()
    print(markdown(REPORT))
    return 0 if REPORT["all_ok"] else 1


def markdown(r: dict) -> str:
    lines = [f"# GPU check on {r['machine'].get('gpu', r['device'])}" + (" (tiny dry-run)" if r["tiny"] else ""), "",
             "Command: `" + ("FPBENCH_GPU_CHECK_TINY=1 " if r["tiny"] else "") + "bash benchmarks/gpu_check.sh`", "",
             "Machine: " + ", ".join(f"{k}={v}" for k, v in r["machine"].items()), "",
             f"Total {r.get('total_seconds')} s; all sections ok: {r.get('all_ok')}", ""]
    for name, s in r["sections"].items():
        lines += [f"## {name} ({'ok' if s.get('ok') else 'FAILED'}, {s.get('seconds')} s)", "", "```",
                  json.dumps({k: v for k, v in s.items() if k not in ("ok", "seconds", "traceback")},
                             indent=1, default=str)[:6000], "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
