"""The warm start of issues 15 + 17: a styles-as-weights network (the shipped kind) rebuilt to take the style
*parameter* map and the engine image renders exactly what it rendered before, on every preset map and on
parameter-space mixes of presets, with or without an engine image, so a short fine-tune starts from the shipped
model's quality instead of from scratch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bridge.style.library import DEFAULT_LIBRARY, GRADING_START
from neural_renderer.models.features import GBuffers
from neural_renderer.models.net import (
    NetConfig,
    NeuralRendererNet,
    example_inputs,
    load_checkpoint,
    params_from_styles,
)

S = len(DEFAULT_LIBRARY)
TABLE = torch.from_numpy(DEFAULT_LIBRARY.table()[:, :GRADING_START].copy()).float()
H, W = 32, 48
X2 = Path(__file__).resolve().parents[1] / "neural_renderer" / "weights" / "default_x2.pt"


#: "Renders the same": float32 rounding of the solved affine maps, summed over the network, reached 1.0e-4 on one
#: machine; a wrong construction is off by 0.04 or more (exposure in the affine maps: 0.18 and 0.039 on two of the
#: mixes below). An 8-bit step is 3.9e-3.
SAME = 5e-4


def _random_styles_net() -> NeuralRendererNet:
    """The shipped model's architecture with every weight random, the FiLMs included (they start at zero, and
    a zero FiLM would make the style embedding invisible to the test)."""
    torch.manual_seed(1)
    net = NeuralRendererNet(NetConfig(styles=S, width=16, modulate=True, lighting=True))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.15)
    return net.eval()


def _nets() -> list[NeuralRendererNet]:
    nets = [_random_styles_net()]
    if X2.exists():  # a trained styles-as-weights model from this repository, when it still is one
        net, _ = load_checkpoint(X2)
        if not net.config.params:
            nets.append(net)
    return nets


def _inputs(batch: int = 2) -> tuple[GBuffers, torch.Tensor, torch.Tensor]:
    args = example_inputs(S, H, W, batch=batch, lighting=True, engine=True, seed=3)
    return GBuffers.of(args), torch.cat(args[7:10], 1), args[10]


def _param_map(weights: torch.Tensor) -> torch.Tensor:
    """What the server hands a parameter network for a weight map: Σ weight × row of the library table."""
    return torch.einsum("bshw,sp->bphw", weights, TABLE)


@pytest.mark.parametrize("net", _nets(), ids=lambda n: f"upscale{n.config.upscale}-width{n.config.width}")
def test_the_warm_start_renders_every_preset_map_as_the_old_network_did_with_or_without_an_engine_image(
    net: NeuralRendererNet,
) -> None:
    warm = params_from_styles(net, TABLE).eval()
    assert warm.config.params and warm.config.engine
    g, light, engine = _inputs()
    ids = torch.randint(0, S, (2, H, W), generator=torch.Generator().manual_seed(0))
    per_object = F.one_hot(ids, S).permute(0, 3, 1, 2).float()  # a preset per pixel: style boundaries everywhere
    with torch.no_grad():
        for s in range(S):
            whole = torch.zeros(2, S, H, W)
            whole[:, s] = 1.0
            before = net(g, whole, lighting=light)
            assert (warm(g, _param_map(whole), lighting=light) - before).abs().max() < SAME, s
        before = net(g, per_object, lighting=light)
        for image in (None, engine):  # the engine's channels start at zero: its image changes nothing yet
            after = warm(g, _param_map(per_object), lighting=light, engine=image)
            assert (after - before).abs().max() < SAME


@pytest.mark.parametrize(("a", "b"), [("identity", "golden"), ("toon", "thermal"), ("noir", "crimson")])
def test_a_half_and_half_parameter_mix_of_two_presets_renders_as_the_old_half_and_half_weight_mix(
    a: str, b: str
) -> None:
    """The guarantee for tweens: a parameter-space mix of presets (what the server makes of a weight mix) gets
    exactly the old network's image of that weight mix. identity + golden differ in exposure, the one feature
    that is not affine in the parameters: the construction must not lean on it."""
    net = _random_styles_net()
    warm = params_from_styles(net, TABLE).eval()
    g, light, _ = _inputs()
    mix = torch.zeros(2, S, H, W)
    mix[:, DEFAULT_LIBRARY.index(a)] = 0.5
    mix[:, DEFAULT_LIBRARY.index(b)] = 0.5
    with torch.no_grad():
        assert (warm(g, _param_map(mix), lighting=light) - net(g, mix, lighting=light)).abs().max() < SAME


def test_a_look_outside_the_presets_still_renders_and_training_can_move_it() -> None:
    """A random look (what training draws half the time) goes through the same network: finite, in range, and
    the parameter embedding's gradient reaches its weights."""
    warm = params_from_styles(_random_styles_net(), TABLE)
    g, light, engine = _inputs(1)
    look = torch.rand(1, 19, 1, 1, generator=torch.Generator().manual_seed(2)).expand(1, 19, H, W) * 2
    out = warm(g, look, lighting=light, engine=engine)
    assert torch.isfinite(out).all() and 0.0 <= out.min() and out.max() <= 1.0
    out.mean().backward()
    assert warm.param_embed is not None and warm.param_embed.fc1.weight.grad is not None
    assert warm.param_embed.fc1.weight.grad.abs().sum() > 0


def test_presets_whose_parameters_are_not_affinely_independent_are_refused() -> None:
    table = TABLE.clone()
    table[1] = table[0]  # two presets with the same parameters but (in the old net) different embeddings
    with pytest.raises(ValueError, match="affinely independent"):
        params_from_styles(_random_styles_net(), table)


def test_a_network_that_already_takes_parameters_is_refused() -> None:
    net = NeuralRendererNet(NetConfig(styles=S, width=8, params=True, engine=True))
    with pytest.raises(ValueError, match="already takes style parameters"):
        params_from_styles(net, TABLE)
