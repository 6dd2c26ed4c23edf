"""load_generator end to end: NVIDIA parity from every source, kwargs inference, zoo, bad inputs."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from fpbench.errors import CheckpointError, ConfigError, FpbenchError, MissingFileError, UnsafeCheckpointError
from fpbench.generators import ZOO, StyleGAN2Generator, StyleGAN3Generator, load_generator, seeds_to_z
from fpbench.generators.loading import build_generator
from fpbench.generators.state_dict_infer import infer_init_kwargs, stylegan3_layer_names
from fpbench.generators.zoo import zoo_path

NAMES = ["sg2_a", "sg3_t"]
TOL = 1e-4


def _source(fixtures_dir, tmp_path, name, kind):
    if kind == "pkl":
        return fixtures_dir / f"{name}.pkl"
    if kind == "safetensors":  # NAME.safetensors + NAME.json sidecar, as shipped
        return fixtures_dir / f"{name}.safetensors"
    path = tmp_path / f"{name}_bare.pth"  # a bare state dict without kwargs: they are inferred
    torch.save(load_file(fixtures_dir / f"{name}.safetensors"), path)
    return path


@pytest.mark.parametrize("kind", ["pkl", "safetensors", "pth"])
@pytest.mark.parametrize("name", NAMES)
@torch.no_grad()
def test_parity_with_nvidia(fixtures_dir, tmp_path, name, kind):
    G = load_generator(_source(fixtures_dir, tmp_path, name, kind))
    exp = load_file(fixtures_dir / f"{name}_expected.safetensors")
    assert not G.training and not any(p.requires_grad for p in G.parameters())
    z, c = exp["z"], exp["c"]
    assert torch.equal(seeds_to_z(range(6), G.z_dim), z)

    acts = {}
    act_names = [k[len("act."):] for k in exp if k.startswith("act.")]
    assert set(act_names) <= set(G.feature_layers) | {"synthesis.input"}
    hooked = list(dict.fromkeys([*G.feature_layers, *act_names]))
    handles = [G.get_submodule(n).register_forward_hook(
        lambda m, i, o, n=n: acts.__setitem__(n, o.detach().clone())) for n in hooked]
    try:
        img = G(z, c, truncation_psi=1.0, noise_mode="const")
    finally:
        for h in handles:
            h.remove()
    got = {
        "img": img,
        "img_psi07": G(z, c, truncation_psi=0.7, noise_mode="const"),
        "ws": G.mapping(z, c, truncation_psi=1.0),
        "ws_psi07": G.mapping(z, c, truncation_psi=0.7),
        **{f"act.{n}": acts[n][:2] for n in act_names},
    }
    for key, value in got.items():
        assert value.shape == exp[key].shape, key
        err = (value - exp[key]).abs().max().item()
        assert err <= TOL, f"{name}/{kind}: {key} differs by {err:.2e}"


@pytest.mark.parametrize("name", NAMES)
def test_inferred_kwargs_match_json(fixtures_dir, name):
    meta = json.loads((fixtures_dir / f"{name}.json").read_text())
    family, kwargs = infer_init_kwargs(load_file(fixtures_dir / f"{name}.safetensors"), name)
    assert family == meta["class"]
    # Everything the shapes determine equals the real kwargs; conv_clamp / num_fp16_res get NVIDIA's defaults.
    for k, v in meta["init_kwargs"].items():
        if k not in ("num_fp16_res", "fused_modconv_default"):
            assert kwargs[k] == v, k
    assert kwargs["conv_clamp"] == 256 and kwargs["num_fp16_res"] == 4


def test_stylegan3_layer_names_of_official_configs():
    t = stylegan3_layer_names(1024, 3, 32768, 512)
    r = stylegan3_layer_names(1024, 3, 65536, 1024)
    assert t[0] == "L0_36_512" and t[7] == "L7_276_323" and t[10] == "L10_1044_81" and t[-1] == "L14_1024_3"
    assert r[7] == "L7_276_645" and r[-2] == "L13_1024_64"


def _fake_sg2(res=64, channels=None, z_dim=16, w_dim=16, c_dim=0, architecture="skip"):
    """Shapes-only StyleGAN2 state dict (what infer_init_kwargs reads)."""
    channels = channels or {4: 64, 8: 64, 16: 32, 32: 16, 64: 8}
    sd = {"mapping.w_avg": torch.zeros(w_dim), "mapping.fc0.weight": torch.zeros(w_dim, z_dim + (w_dim if c_dim else 0)),
          "mapping.fc1.weight": torch.zeros(w_dim, w_dim), "synthesis.b4.const": torch.zeros(channels[4], 4, 4)}
    if c_dim:
        sd["mapping.embed.weight"] = torch.zeros(w_dim, c_dim)
    r = 8
    while r <= res:
        sd[f"synthesis.b{r}.conv1.weight"] = torch.zeros(channels[r], channels[r], 3, 3)
        if architecture == "resnet":
            sd[f"synthesis.b{r}.skip.weight"] = torch.zeros(channels[r], channels[r // 2], 1, 1)
        r *= 2
    for r in channels:
        if architecture == "skip" or r == res:
            sd[f"synthesis.b{r}.torgb.weight"] = torch.zeros(3, channels[r], 1, 1)
    return sd


@pytest.mark.parametrize("architecture", ["skip", "resnet", "orig"])
def test_infer_stylegan2_variants(architecture):
    family, kw = infer_init_kwargs(_fake_sg2(c_dim=5, architecture=architecture), "fake")
    assert family == "stylegan2" and kw["architecture"] == architecture
    assert (kw["z_dim"], kw["c_dim"], kw["w_dim"], kw["img_resolution"]) == (16, 5, 16, 64)
    assert (kw["channel_base"], kw["channel_max"]) == (512, 64)  # 512 // 16 = 32, 512 // 64 = 8


def test_uninferrable_channels_message():
    sd = _fake_sg2(channels={4: 64, 8: 8, 16: 32, 32: 16, 64: 8})  # not min(base // res, max)
    with pytest.raises(CheckpointError, match=r"^cannot infer the architecture of odd\.pth: per-resolution "
                                              r"channels .*; provide a \.json sidecar with init_kwargs$"):
        infer_init_kwargs(sd, "odd.pth")


_ROUND_TRIP = [
    ("stylegan2", dict(z_dim=8, c_dim=3, w_dim=16, img_resolution=64, img_channels=3, mapping_kwargs={"num_layers": 3},
                       channel_base=1024, channel_max=64, architecture="resnet")),
    ("stylegan2", dict(z_dim=8, c_dim=0, w_dim=16, img_resolution=32, img_channels=1, channel_base=256,
                       channel_max=16, architecture="orig")),
    ("stylegan3", dict(z_dim=8, c_dim=4, w_dim=16, img_resolution=32, img_channels=3, channel_base=512,
                       channel_max=32, num_layers=6, conv_kernel=1, use_radial_filters=True)),
    ("stylegan3", dict(z_dim=8, c_dim=0, w_dim=16, img_resolution=64, img_channels=3, channel_base=256,
                       channel_max=16, num_layers=8)),
]
_OFFICIAL = [  # NVIDIA's published configurations (random weights; only shapes matter here)
    ("stylegan2", dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=1024, img_channels=3,
                       mapping_kwargs={"num_layers": 8}, channel_base=32768, channel_max=512)),
    ("stylegan2", dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=512, img_channels=3,
                       mapping_kwargs={"num_layers": 2}, channel_base=16384, channel_max=512)),
    ("stylegan3", dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=1024, img_channels=3,
                       channel_base=32768, channel_max=512)),
    ("stylegan3", dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=512, img_channels=3, channel_base=65536,
                       channel_max=1024, conv_kernel=1, use_radial_filters=True)),
]


def _generator_class(family):
    return {"stylegan2": StyleGAN2Generator, "stylegan3": StyleGAN3Generator}[family]


@pytest.mark.parametrize("family,kwargs", _ROUND_TRIP + _OFFICIAL,
                         ids=[f"{f}-{k['img_resolution']}-{k['channel_base']}" for f, k in _ROUND_TRIP + _OFFICIAL])
def test_inferred_kwargs_round_trip(tmp_path, family, kwargs):
    # Every kwarg that shapes the weights is recovered from the bare state dict, and it strict-loads.
    torch.manual_seed(0)
    G0 = _generator_class(family)(**kwargs)
    sd = G0.state_dict()
    got_family, inferred = infer_init_kwargs(sd, "x.pth")
    assert got_family == family
    for k, v in kwargs.items():
        assert inferred[k] == v, k
    if kwargs["img_resolution"] <= 64:
        torch.save(sd, tmp_path / "x.pth")
        G = load_generator(tmp_path / "x.pth")
        assert type(G) is type(G0)
        assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), sd.values()))


def test_stylegan2_ada_nested_kwargs(fixtures_dir):
    # stylegan2-ada-pytorch snapshots nest the synthesis kwargs; same network either way.
    meta = json.loads((fixtures_dir / "sg2_a.json").read_text())["init_kwargs"]
    nested = {k: meta[k] for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs")}
    nested["synthesis_kwargs"] = {k: v for k, v in meta.items() if k not in nested}
    sd = load_file(fixtures_dir / "sg2_a.safetensors")
    G = build_generator("stylegan2", nested, sd, "ada.pkl").eval()
    exp = load_file(fixtures_dir / "sg2_a_expected.safetensors")
    with torch.no_grad():
        assert (G(exp["z"], exp["c"], noise_mode="const") - exp["img"]).abs().max() <= TOL


# ---------------------------------------------------------------- sources and sidecars

@pytest.mark.parametrize("name", NAMES)
def test_pt_wrapped_state_dicts(fixtures_dir, tmp_path, name):
    sd = load_file(fixtures_dir / f"{name}.safetensors")
    ref = load_generator(fixtures_dir / f"{name}.pkl")
    for wrapper in ("G_ema", "state_dict"):
        path = tmp_path / f"{wrapper}.pt"
        torch.save({wrapper: sd, "step": torch.tensor(3)}, path)
        G = load_generator(path)
        assert type(G) is type(ref)
        assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), ref.state_dict().values()))


def test_safetensors_without_sidecar_is_inferred(fixtures_dir, tmp_path):
    path = tmp_path / "copy.safetensors"
    shutil.copy(fixtures_dir / "sg2_a.safetensors", path)
    G = load_generator(path)
    assert G.img_resolution == 32 and G.z_dim == 64


def test_tiny_source():
    G = load_generator("tiny")
    assert not G.training and not any(p.requires_grad for p in G.parameters())


def test_sidecar_wrong_kwargs_message(fixtures_dir, tmp_path):
    shutil.copy(fixtures_dir / "sg2_a.safetensors", tmp_path / "m.safetensors")
    meta = json.loads((fixtures_dir / "sg2_a.json").read_text())
    meta["init_kwargs"]["channel_max"] = 64
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"^the weights in m\.safetensors do not match its init kwargs \("):
        load_generator(tmp_path / "m.safetensors")
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"^cannot read m\.json: .*fix or delete the sidecar$"):
        load_generator(tmp_path / "m.safetensors")


# ---------------------------------------------------------------- bad inputs

@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """A cache of this test's own: other tests share the session cache and leave files in it."""
    root = tmp_path / "own-cache"
    monkeypatch.setenv("FPBENCH_CACHE", str(root))
    return root


def _cache_files(root):
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def _one_line_error(exc_info, cls):
    assert isinstance(exc_info.value, cls) and isinstance(exc_info.value, FpbenchError)
    msg = str(exc_info.value)
    assert "\n" not in msg and len(msg) < 400
    return msg


def test_missing_file(tmp_path):
    with pytest.raises(MissingFileError) as e:
        load_generator(tmp_path / "nope.pkl")
    assert _one_line_error(e, MissingFileError).startswith(f"checkpoint {tmp_path / 'nope.pkl'} does not exist")


def test_empty_file(tmp_path):
    (tmp_path / "empty.pkl").write_bytes(b"")
    with pytest.raises(CheckpointError) as e:
        load_generator(tmp_path / "empty.pkl")
    assert "is empty (0 bytes)" in _one_line_error(e, CheckpointError)


def test_truncated_pickle(fixtures_dir, tmp_path):
    data = (fixtures_dir / "sg3_t.pkl").read_bytes()
    (tmp_path / "cut.pkl").write_bytes(data[: int(len(data) * 0.7)])
    with pytest.raises(CheckpointError) as e:
        load_generator(tmp_path / "cut.pkl")
    msg = _one_line_error(e, CheckpointError)
    assert msg.startswith("cannot read cut.pkl:") and "truncated" in msg and "re-download" in msg


def test_png_renamed_pkl(tmp_path):
    (tmp_path / "img.pkl").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(CheckpointError) as e:
        load_generator(tmp_path / "img.pkl")
    assert _one_line_error(e, CheckpointError) == \
        "img.pkl is not a checkpoint (it looks like a PNG image); check the path or re-download it"


def test_truncated_pth_and_safetensors(fixtures_dir, tmp_path):
    torch.save(load_file(fixtures_dir / "sg2_a.safetensors"), tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"^cannot read cut\.pth: .*truncated or corrupt$"):
        load_generator(tmp_path / "cut.pth")
    data = (fixtures_dir / "sg2_a.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"^cannot read cut\.safetensors: .*truncated or corrupt$"):
        load_generator(tmp_path / "cut.safetensors")


def test_hostile_pth_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os
            return os.system, (f"touch {marker}",)

    torch.save({"mapping.w_avg": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(UnsafeCheckpointError) as e:
        load_generator(tmp_path / "evil.pth")
    assert _one_line_error(e, UnsafeCheckpointError).startswith("refusing to load evil.pth: it references ")
    assert "system" in str(e.value) and not marker.exists()


def test_uninferrable_state_dict(tmp_path):
    torch.save({"encoder.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError) as e:
        load_generator(tmp_path / "other.pth")
    assert _one_line_error(e, CheckpointError) == (
        "cannot infer the architecture of other.pth: it has neither StyleGAN2 (synthesis.b4.const) nor "
        "StyleGAN3 (synthesis.input.freqs) keys; provide a .json sidecar with init_kwargs")


def test_not_a_state_dict(tmp_path):
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="holds no generator state dict"):
        load_generator(tmp_path / "list.pt")


def test_unknown_suffix(tmp_path):
    (tmp_path / "g.onnx").write_bytes(b"\x08\x01")
    with pytest.raises(CheckpointError, match=r"unknown checkpoint format '\.onnx'"):
        load_generator(tmp_path / "g.onnx")


def test_unknown_zoo_name_offline(own_cache):
    with pytest.raises(ConfigError) as e:
        load_generator("sg2-ffhq-2048")
    msg = _one_line_error(e, ConfigError)
    assert msg.startswith("unknown model 'sg2-ffhq-2048'; valid zoo names: ")
    assert all(name in msg for name in ZOO)
    assert _cache_files(own_cache) == []


def test_known_zoo_name_offline(own_cache):
    entry = ZOO["sg3-t-ffhq-1024"]
    with pytest.raises(MissingFileError) as e:
        load_generator("sg3-t-ffhq-1024")
    msg = _one_line_error(e, MissingFileError)
    dest = own_cache / "models" / entry.filename
    assert entry.url in msg and str(dest) in msg
    assert _cache_files(own_cache) == []


def test_known_zoo_name_with_mirror_offline(own_cache):
    entry = ZOO["sg2-ffhq-1024"]
    with pytest.raises(MissingFileError) as e:
        load_generator("sg2-ffhq-1024")
    msg = _one_line_error(e, MissingFileError)
    assert entry.url in msg and entry.filename in msg and entry.mirrors[0][0] in msg
    assert _cache_files(own_cache) == []


def test_zoo_table():
    assert set(ZOO) == {"sg2-ffhq-1024", "sg2-afhqcat-512", "sg2-metfaces-1024", "sg2-afhqv2-512",
                        "sg3-t-ffhq-1024", "sg3-r-ffhq-1024", "sg3-t-afhqv2-512", "sg3-r-afhqv2-512"}
    for name, e in ZOO.items():
        url, filename, sha, family, res, dataset = e[:6]
        assert url.startswith("https://") and url.endswith(filename) and filename.endswith(".pkl")
        assert family == ("stylegan3" if name.startswith("sg3") else "stylegan2")
        assert str(res) in name and dataset in name
    assert {n for n, e in ZOO.items() if e.mirrors} == {"sg2-ffhq-1024", "sg2-afhqcat-512", "sg2-metfaces-1024"}


def test_zoo_uses_cached_file(fixtures_dir, tmp_path_factory):
    # A file already in the cache is used without network (offline here) and its digest recorded/checked.
    models = tmp_path_factory.getbasetemp() / "fpbench-cache" / "models"
    dest = models / ZOO["sg2-afhqv2-512"].filename
    models.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copy(fixtures_dir / "sg2_a.pkl", dest)
        assert zoo_path("sg2-afhqv2-512") == dest
        assert load_generator("sg2-afhqv2-512").img_resolution == 32
    finally:
        dest.unlink(missing_ok=True)


def test_seeds_to_z_known_answer(fixtures_dir):
    exp = load_file(fixtures_dir / "sg2_a_expected.safetensors")
    assert torch.equal(seeds_to_z(range(6), 64), exp["z"])
    assert torch.equal(seeds_to_z([3, 0], 64), exp["z"][[3, 0]])
    z64 = seeds_to_z([5], 64, dtype=torch.float64)
    assert z64.dtype == torch.float64 and torch.equal(z64.float(), exp["z"][5:6])
    assert seeds_to_z([], 8).shape == (0, 8)
    with pytest.raises(ConfigError, match="seed -1 is not an integer"):
        seeds_to_z([-1], 8)
    with pytest.raises(ConfigError, match="seed 1.5 is not an integer"):
        seeds_to_z([1.5], 8)
