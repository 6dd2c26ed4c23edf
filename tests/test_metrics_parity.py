"""Parity with torch-fidelity: FID, KID and precision/recall of fpbench equal
`torch_fidelity.calculate_metrics` on the same two image folders, with the same random-weight
extractor files passed by path to both. Slow on a CPU (InceptionV3 and VGG16 on every image twice,
and a 528 MB VGG16 weights file), hence marked slow.
"""

import numpy as np
import pytest
import torch
from PIL import Image

import fpbench.metrics as M
from fpbench.data import ReferenceSet
from fpbench.metrics.features import random_state_dict

pytestmark = pytest.mark.slow
REL = 1e-4


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity")
    rng = np.random.RandomState(0)
    base = rng.randint(0, 256, (32, 32, 3)).astype(np.float64)
    # half of the generated images come from the real distribution, half are much noisier, so
    # precision and recall land strictly between 0 and 1
    for kind, noises in (("gen", [40.0, 90.0] * 3), ("real", [40.0] * 7)):
        (root / kind).mkdir()
        for i, noise in enumerate(noises):
            img = np.clip(base + rng.randn(32, 32, 3) * noise, 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / kind / f"{i:03d}.png")
    return root


def _fpbench(names, folders, **options):
    bank = M.FeatureBank()
    metrics = [M.create(n, bank=bank, **options.get(n, {}), **options["common"]) for n in names]
    for kind, feed in (("real", "update_real"), ("gen", "update")):
        for batch in ReferenceSet(folders / kind).batches(4):
            for m in metrics:
                getattr(m, feed)(batch)
    out = {}
    for m in metrics:
        out.update(m.compute())
    return out


def _fidelity(folders, **kw):
    import torch_fidelity

    return torch_fidelity.calculate_metrics(input1=str(folders / "gen"), input2=str(folders / "real"), cuda=False,
                                            samples_shuffle=False, cache=False, verbose=False, save_cpu_ram=True,
                                            batch_size=4, **kw)


def test_fid_kid_match_torch_fidelity(folders, tmp_path):
    weights = tmp_path / "inception-random.pth"
    torch.save(random_state_dict("inception-v3-compat", seed=1), weights)
    ours = _fpbench(["fid", "kid"], folders, common={"weights": str(weights)},
                    kid={"subsets": 10, "subset_size": 4})
    theirs = _fidelity(folders, fid=True, kid=True, kid_subsets=10, kid_subset_size=4,
                       feature_extractor_weights_path=str(weights))
    print(f"\nfpbench {ours}\ntorch-fidelity {theirs}")
    assert ours["fid"] == pytest.approx(theirs["frechet_inception_distance"], rel=REL)
    assert ours["kid"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=REL)
    assert ours["kid_std"] == pytest.approx(theirs["kernel_inception_distance_std"], rel=REL)
    assert ours["fid"] > 0


def test_precision_recall_match_torch_fidelity(folders, tmp_path):
    weights = tmp_path / "vgg16-random.pth"
    torch.save(random_state_dict("vgg16", seed=1), weights)
    ours = _fpbench(["pr"], folders, common={"weights": str(weights)})
    theirs = _fidelity(folders, prc=True, feature_extractor="vgg16", feature_extractor_weights_path=str(weights))
    print(f"\nfpbench {ours}\ntorch-fidelity {theirs}")
    assert ours["precision"] == pytest.approx(theirs["precision"], rel=REL)
    assert ours["recall"] == pytest.approx(theirs["recall"], rel=REL)
    assert 0 < ours["precision"] < 1 or 0 < ours["recall"] < 1
