"""The 2x model's starting point: a trained 1x network turned into a 2x one that renders the same image, nearest-
upscaled, so that training it (docs/model.md, "2x upscaling model") only has to learn the detail."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neural_renderer.models.features import GBuffers
from neural_renderer.models.net import NetConfig, NeuralRendererNet, example_inputs
from neural_renderer.upscale_init import upscaled_copy


@pytest.mark.parametrize("modulate", [False, True])
def test_upscaled_copy_starts_as_the_1x_image_nearest_upscaled(modulate: bool) -> None:
    torch.manual_seed(0)
    x1 = NeuralRendererNet(NetConfig(styles=7, modulate=modulate, lighting=True)).eval()
    with torch.no_grad():  # a head far from its initialisation, so that every sub-pixel channel differs
        for p in x1.head.parameters():
            p.normal_(0.0, 0.3)
    x2 = upscaled_copy(x1)
    assert x2.config.upscale == 2 and x2.config.modulate == modulate and x2.config.lighting
    args = example_inputs(7, 32, 48)
    with torch.no_grad():
        g = GBuffers.of(args)
        small, big = x1(g, args[6]), x2(g, args[6])
    assert big.shape == (1, 3, 64, 96)
    assert small.std() > 0.05  # not a flat image: the test could tell a wrong sub-pixel mapping
    torch.testing.assert_close(big, F.interpolate(small, scale_factor=2, mode="nearest"), rtol=0, atol=0)
    # only the head differs from the 1x network
    same = {k for k, v in x2.state_dict().items() if torch.equal(v, x1.state_dict()[k])}
    assert set(x2.state_dict()) - same == {"head.weight", "head.bias"}


def test_upscaled_copy_refuses_a_network_that_already_upscales() -> None:
    with pytest.raises(ValueError, match="1x"):
        upscaled_copy(NeuralRendererNet(NetConfig(styles=7, upscale=2)))
