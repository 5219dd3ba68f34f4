"""DDIM sampling of one LMDM window with Ditto's randomness (reference §5.1).

eta = 1; the per-step noises z are drawn once per session and reused for every window, the initial
x is drawn fresh per window. The network predicts x0 (classifier-free guided inside the graph) and
returns the matching epsilon, so one guided call per step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ditto_triton.diffusion_schedule import cosine_alphas_cumprod, ddim_time_pairs

# denoise(x, t) -> (pred_noise, x_start), both shaped like x
Denoiser = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class _Step:
    t: int
    alpha_next_sqrt: float
    c: float
    sigma: float
    last: bool


class DDIMSampler:
    def __init__(
        self, steps: int, shape: tuple[int, ...], rng: np.random.Generator, n_timestep: int = 1000, eta: float = 1.0
    ):
        if steps < 1 or steps > n_timestep:
            raise ValueError(f"sampling steps must be in 1..{n_timestep}, got {steps}")
        alphas = cosine_alphas_cumprod(n_timestep).astype(np.float32)
        self.shape = shape
        self._rng = rng
        self._steps: list[_Step] = []
        self._noise: list[np.ndarray] = []
        for t, t_next in ddim_time_pairs(steps, n_timestep):
            if t_next < 0:
                self._steps.append(_Step(t, 0.0, 0.0, 0.0, True))
                continue
            a, an = float(alphas[t]), float(alphas[t_next])
            sigma = eta * np.sqrt((1 - a / an) * (1 - an) / (1 - a))
            self._steps.append(_Step(t, float(np.sqrt(an)), float(np.sqrt(1 - an - sigma**2)), float(sigma), False))
            self._noise.append(rng.standard_normal(shape).astype(np.float32))

    @property
    def timesteps(self) -> list[int]:
        return [s.t for s in self._steps]

    def sample(self, denoise: Denoiser) -> np.ndarray:
        """Run every step from fresh Gaussian noise; returns the x0 estimate of the last step."""
        x = self._rng.standard_normal(self.shape).astype(np.float32)
        for i, step in enumerate(self._steps):
            pred_noise, x_start = denoise(x, step.t)
            if step.last:
                return x_start
            x = (x_start * step.alpha_next_sqrt + step.c * pred_noise + step.sigma * self._noise[i]).astype(np.float32)
        return x
