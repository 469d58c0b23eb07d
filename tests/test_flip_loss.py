"""The differentiable FLIP used as a training loss must be the benchmark's FLIP (``flip-evaluator``), and its
gradients must lower that metric."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neural_renderer.evaluate import flip
from neural_renderer.flip import FlipLoss


def _blocky(rng: np.random.Generator, h: int, w: int, block: int = 8) -> np.ndarray:
    """An image with hard edges (blocks) and fine noise: both FLIP pipelines (colour and features) matter."""
    x = rng.random((h // block, w // block, 3)).astype(np.float32)
    img = np.kron(x, np.ones((block, block, 1), np.float32))
    return np.clip(img + 0.03 * rng.standard_normal(img.shape), 0, 1).astype(np.float32)


def _chw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]


@pytest.mark.parametrize("shape", [(128, 128), (96, 160)])
def test_error_map_matches_flip_evaluator_pixel_for_pixel(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    ref = _blocky(rng, *shape)
    test = np.clip(0.8 * ref + 0.1 + 0.05 * rng.standard_normal(ref.shape), 0, 1).astype(np.float32)
    mean, emap = flip(ref, test)
    ours = FlipLoss().error_map(_chw(test), _chw(ref))[0, 0].numpy()
    assert ours.shape == emap.shape
    assert abs(float(ours.mean()) - mean) < 1e-4
    assert float(np.abs(ours - emap).max()) < 1e-3


def test_identical_images_have_no_error() -> None:
    img = _chw(_blocky(np.random.default_rng(2), 64, 64))
    assert float(FlipLoss()(img, img)) < 1e-3


def test_gradient_descent_on_the_loss_lowers_the_benchmark_flip() -> None:
    rng = np.random.default_rng(3)
    ref = _blocky(rng, 64, 64)
    start = np.clip(ref[::-1] * 0.5 + 0.2, 0, 1).astype(np.float32)  # wrong edges and wrong colours
    x = _chw(start).clone().requires_grad_(True)
    loss_fn = FlipLoss()
    opt = torch.optim.Adam([x], lr=0.02)
    for _ in range(60):
        loss = loss_fn(x, _chw(ref))
        opt.zero_grad()
        loss.backward()
        assert torch.isfinite(x.grad).all()
        opt.step()
    before, _ = flip(ref, start)
    after, _ = flip(ref, x.detach().clamp(0, 1)[0].permute(1, 2, 0).numpy())
    assert after < 0.5 * before


def test_nrb_train_flip_weight_adds_the_weighted_flip_term_to_the_image_loss() -> None:
    from neural_renderer.train import image_loss, make_criterion

    rng = np.random.default_rng(4)
    ref, test = _chw(_blocky(rng, 32, 32)), _chw(_blocky(rng, 32, 32))
    assert make_criterion(0.0, torch.device("cpu")) is image_loss
    combined = make_criterion(0.5, torch.device("cpu"))(test, ref)
    expected = image_loss(test, ref) + 0.5 * FlipLoss()(test, ref)
    assert torch.allclose(combined, expected)
    assert float(combined) > float(image_loss(test, ref)) + 0.05
