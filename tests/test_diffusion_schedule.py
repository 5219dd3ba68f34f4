"""Cosine schedule and DDIM step pairs against the architecture reference §5.1."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ditto_triton.diffusion_schedule import cosine_alphas_cumprod, cosine_betas, ddim_time_pairs

T = 1000


def _f(t: float, s: float = 8e-3) -> float:
    return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2


def test_alphas_cumprod_shape_dtype_and_monotone() -> None:
    a = cosine_alphas_cumprod(T)
    assert a.shape == (T,) and a.dtype == np.float64
    assert np.all(np.diff(a) < 0) and 0 < a[-1] < a[0] < 1


def test_alphas_cumprod_closed_form() -> None:
    # Unclipped steps telescope: ᾱ_t = f(t+1)/f(0). Only the last β hits the 0.999 clip.
    a = cosine_alphas_cumprod(T)
    expected = np.array([_f(t + 1) / _f(0) for t in range(T - 1)])
    np.testing.assert_allclose(a[:-1], expected, rtol=1e-12)
    betas = cosine_betas(T)
    assert betas.min() >= 0 and betas[-1] == 0.999 and np.all(betas[:-1] < 0.999)
    assert a[-1] == pytest.approx(a[-2] * 0.001, rel=1e-12)


def test_alphas_cumprod_reference_numbers() -> None:
    a = cosine_alphas_cumprod(T)
    assert a[0] == pytest.approx(0.99995872, abs=1e-8)
    # export-probe §2: the ε-from-x0 factor at t=0 is ≈155.
    assert math.sqrt(1 / (1 - a[0])) == pytest.approx(155.6, abs=0.1)
    assert a[500] == pytest.approx(0.4922852, abs=1e-6)


def test_alphas_cumprod_matches_dittos_float32_pipeline() -> None:
    # Ditto casts the float64 betas to float32 before the cumprod.
    ditto = torch.cumprod(1.0 - torch.tensor(cosine_betas(T), dtype=torch.float32), dim=0).numpy()
    np.testing.assert_allclose(cosine_alphas_cumprod(T), ditto, rtol=2e-5)


def test_ddim_pairs_50_steps() -> None:
    pairs = ddim_time_pairs(50, T)
    assert len(pairs) == 50
    assert pairs[0] == (999, 979) and pairs[1] == (979, 959) and pairs[-1] == (19, -1)
    assert all(t - n == 20 for t, n in pairs)


def test_ddim_pairs_10_steps() -> None:
    assert ddim_time_pairs(10, T) == [
        (999, 899),
        (899, 799),
        (799, 699),
        (699, 599),
        (599, 499),
        (499, 399),
        (399, 299),
        (299, 199),
        (199, 99),
        (99, -1),
    ]


def test_ddim_pairs_edge_cases() -> None:
    assert ddim_time_pairs(1, T) == [(999, -1)]
    full = ddim_time_pairs(T, T)
    assert full[0] == (999, 998) and full[-1] == (0, -1) and len(full) == T
    with pytest.raises(ValueError):
        ddim_time_pairs(0, T)


@pytest.mark.parametrize("steps", [1, 2, 4, 5, 8, 10, 20, 25, 40, 50, 100, 125, 200, 250, 500, 1000])
def test_ddim_pairs_match_torch_linspace_where_exact(steps: int) -> None:
    times = list(reversed(torch.linspace(-1, T - 1, steps=steps + 1).int().tolist()))
    assert ddim_time_pairs(steps, T) == list(zip(times[:-1], times[1:]))
