"""KeyPointNet: our implementation loads checkpoints with the official KP2D structure and refuses others."""

import numpy as np
import pytest
import torch

from _feature_pairs import textured_image, write_random_keypointnet_checkpoint
from dfbvs.features import get_extractor
from dfbvs.features.keypointnet import (
    INPUT_MEAN,
    INPUT_SCALE,
    KeyPointNetCheckpointError,
    build_keypointnet,
    load_keypointnet,
)

OFFICIAL_KEYS = ["conv1a.0.weight", "conv1a.1.running_var", "conv4b.0.weight", "convDb.weight", "convDb.bias",
                 "convPb.weight", "convFb.0.weight", "convFaa.1.weight", "convFbb.weight", "convFbb.bias"]


def test_official_key_names_and_shapes():
    state = build_keypointnet().state_dict()
    for key in OFFICIAL_KEYS:
        assert key in state
    assert tuple(state["conv1a.0.weight"].shape) == (32, 3, 3, 3)
    assert tuple(state["convFb.0.weight"].shape) == (512, 256, 3, 3)
    assert tuple(state["convFbb.weight"].shape) == (256, 256, 3, 3)
    assert "conv1a.0.bias" not in state  # official convs before BatchNorm have no bias
    assert (INPUT_MEAN, INPUT_SCALE) == (0.5, 0.225)


def test_loads_official_structure_and_extracts(tmp_path):
    path = tmp_path / "v4.ckpt"
    write_random_keypointnet_checkpoint(path, seed=3)
    model, params = load_keypointnet(path)
    assert params == {"use_color": True, "do_upsample": True, "do_cross": True}
    saved = torch.load(str(path), weights_only=True)["state_dict"]
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, saved[key])
    f = get_extractor("keypointnet", checkpoint_path=str(path))(textured_image(seed=1))
    assert f.descriptor_dim == 256 and 0 < len(f) <= 500
    # one keypoint per 8x8 cell at most, inside the cell's +-2-cell reach (do_cross)
    assert len(f) <= (320 // 8 - 2) * (240 // 8 - 2)


def test_grey_model_and_wrapped_keys(tmp_path):
    path = tmp_path / "grey.ckpt"
    write_random_keypointnet_checkpoint(path, use_color=False)
    ckpt = torch.load(str(path), weights_only=True)
    ckpt["state_dict"] = {f"keypoint_net.{k}": v for k, v in ckpt["state_dict"].items()}  # KeypointNetwithIOLoss
    torch.save(ckpt, str(path))
    _, params = load_keypointnet(path)
    assert params["use_color"] is False
    f = get_extractor("keypointnet", checkpoint_path=str(path))(textured_image(seed=2))
    assert len(f) > 0


def test_refuses_missing_path_and_wrong_structures(tmp_path):
    with pytest.raises(ValueError, match="checkpoint_path"):
        get_extractor("keypointnet")
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        load_keypointnet(tmp_path / "nope.ckpt")
    good = build_keypointnet().state_dict()

    bare = tmp_path / "bare.ckpt"
    torch.save(good, str(bare))  # a bare state dict, not {'state_dict', 'config'}
    with pytest.raises(KeyPointNetCheckpointError, match="expected a KP2D checkpoint"):
        load_keypointnet(bare)

    missing = tmp_path / "missing.ckpt"
    torch.save({"state_dict": {k: v for k, v in good.items() if not k.startswith("convFbb")}, "config": {}},
               str(missing))
    with pytest.raises(KeyPointNetCheckpointError, match="missing: convFbb"):
        load_keypointnet(missing)

    shape = tmp_path / "shape.ckpt"
    bad = dict(good)
    bad["convDb.weight"] = torch.zeros(2, 256, 3, 3)
    torch.save({"state_dict": bad, "config": {}}, str(shape))
    with pytest.raises(KeyPointNetCheckpointError, match="wrong shape: convDb.weight"):
        load_keypointnet(shape)

    other = tmp_path / "superpoint.pth"
    torch.save({"state_dict": {"conv1a.weight": torch.zeros(64, 1, 3, 3)}, "config": {}}, str(other))
    with pytest.raises(KeyPointNetCheckpointError, match="not an official KeyPointNet checkpoint"):
        load_keypointnet(other)

    resnet = tmp_path / "resnet.ckpt"
    torch.save({"state_dict": good, "config": {"model": {"params": {"keypoint_net_type": "KeypointResnet"}}}},
               str(resnet))
    with pytest.raises(KeyPointNetCheckpointError, match="KeypointResnet"):
        load_keypointnet(resnet)

    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(KeyPointNetCheckpointError, match="cannot read"):
        load_keypointnet(garbage)


def test_input_normalisation_is_official(tmp_path, monkeypatch):
    path = tmp_path / "v.ckpt"
    write_random_keypointnet_checkpoint(path)
    ex = get_extractor("keypointnet", checkpoint_path=str(path))
    seen = {}
    forward = ex._model.forward

    def spy(x):
        seen["x"] = x.clone()
        return forward(x)

    monkeypatch.setattr(ex._model, "forward", spy)
    image = np.zeros((24, 32, 3), np.uint8)
    image[:, :16] = 255
    ex(image)
    x = seen["x"][0].numpy()
    np.testing.assert_allclose(x[:, :, :16], (1.0 - 0.5) * 0.225, atol=1e-6)
    np.testing.assert_allclose(x[:, :, 16:], (0.0 - 0.5) * 0.225, atol=1e-6)
