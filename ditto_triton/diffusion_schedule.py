"""LMDM diffusion schedule (paper: LMDM, Ditto's latent motion diffusion model): cosine ᾱ and DDIM step pairs.

numpy only: the exported LMDM stage (`LMDMStep`) bakes ᾱ into its graph and the streaming sampler
needs the same numbers on the host. Architecture reference §5.1:

- cosine schedule, s = 8e-3, T = `n_timestep` (1000): ᾱ(t) = cos²((t/T + s)/(1 + s)·π/2) / ᾱ(0),
  β_t = 1 − ᾱ(t+1)/ᾱ(t) clipped to [0, 0.999], alphas_cumprod = cumprod(1 − β)  -> shape (T,);
- DDIM: `steps` guided network calls at the time pairs (t, t_next) taken from a float32
  linspace(−1, T−1, steps+1) truncated to int and reversed; the last pair has t_next = −1.
"""

from __future__ import annotations

import numpy as np

COSINE_S = 8e-3
MAX_BETA = 0.999


def cosine_betas(n_timestep: int, s: float = COSINE_S) -> np.ndarray:
    """β_1..β_T of the cosine schedule, float64, shape (T,)."""
    steps = np.arange(n_timestep + 1, dtype=np.float64) / n_timestep + s
    alpha_bar = np.cos(steps / (1 + s) * np.pi / 2) ** 2
    alpha_bar = alpha_bar / alpha_bar[0]
    return np.clip(1 - alpha_bar[1:] / alpha_bar[:-1], 0.0, MAX_BETA)


def cosine_alphas_cumprod(n_timestep: int, s: float = COSINE_S) -> np.ndarray:
    """ᾱ_t for t = 0..T−1, float64, shape (T,)."""
    return np.cumprod(1.0 - cosine_betas(n_timestep, s))


def ddim_time_pairs(steps: int, n_timestep: int) -> list[tuple[int, int]]:
    """(t, t_next) for each of the `steps` DDIM calls, from t = T−1 down to t_next = −1.

    Ditto truncates a float32 linspace; steps that divide T (10, 50, ...) give exact integers.
    For other step counts torch's own float32 linspace can round a value just below an integer
    (platform dependent), so rare pairs may differ by one from Ditto's run there.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    times = np.linspace(-1, n_timestep - 1, steps + 1, dtype=np.float32).astype(np.int64)
    times = [int(t) for t in times[::-1]]
    return list(zip(times[:-1], times[1:]))
