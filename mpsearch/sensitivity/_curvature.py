"""Square-root factors of an objective's curvature at the model output, for Gauss-Newton products.

For a data-set loss L(z) of the model outputs z, the Gauss-Newton matrix is Jᵀ (∂²L/∂z²) J. With
columns u_c such that Σ_c u_c u_cᵀ = ∂²L/∂z² (per output position; positions are independent), the
GGN's block trace is Σ_x Σ_c ‖J_xᵀ u_{x,c}‖², a sum of per-sample squared gradient norms: exact with
all columns, unbiased with random ones (u = Σ_c ε_c u_c, ε Rademacher). Registered per objective name.
"""

from __future__ import annotations

import torch

from ..registry import Registry

_CURVATURES: Registry[type[OutputCurvature]] = Registry("output curvature")  # keyed by objective name
register_curvature = _CURVATURES.register  # @register_curvature("cross_entropy", "kl")


def curvature_for(objective) -> type[OutputCurvature] | None:
    """The curvature factor of an objective (by its name), or None when it has no Gauss-Newton form."""
    return _CURVATURES.get(getattr(objective, "name", objective))


def rademacher(shape, gen: torch.Generator, device) -> torch.Tensor:
    return (torch.randint(0, 2, tuple(shape), generator=gen, dtype=torch.int8) * 2 - 1).to(
        device, torch.float32
    )


class OutputCurvature:
    """∂²L/∂z² for one batch's outputs `out`, where the batch carries `share` of the data-set loss."""

    def __init__(self, out: torch.Tensor, share: float, max_exact: int = 64):
        self.out = out.detach().float()
        self.share = share
        self.max_exact = max_exact

    @property
    def exact_columns(self) -> int:
        """How many columns give the exact factor (0 when sampling is required)."""
        return 0

    def column(self, k: int) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, gen: torch.Generator) -> torch.Tensor:
        raise NotImplementedError


@register_curvature("cross_entropy", "kl")
class SoftmaxCurvature(OutputCurvature):
    """Mean over positions of a softmax loss: ∂²/∂z² = w (diag p − p pᵀ), factor columns √(w p_k)(e_k − p)."""

    def __init__(self, out, share, max_exact=64):
        super().__init__(out, share, max_exact)
        c = self.out.shape[-1]
        self.p = torch.softmax(self.out.reshape(-1, c), dim=-1).reshape(self.out.shape)
        self.w = share / (self.out.numel() // c)

    @property
    def exact_columns(self) -> int:
        c = self.out.shape[-1]
        return c if self.out.dim() == 2 and c <= self.max_exact else 0

    def column(self, k: int) -> torch.Tensor:
        e = torch.zeros_like(self.p)
        e[..., k] = 1.0
        return (self.w * self.p[..., k : k + 1]).sqrt() * (e - self.p)

    def sample(self, gen):
        eps = rademacher(self.p.shape, gen, self.p.device)
        sp = self.p.sqrt() * eps
        return self.w**0.5 * (sp - self.p * sp.sum(-1, keepdim=True))


@register_curvature("mse")
class SquaredErrorCurvature(OutputCurvature):
    """Mean of squared errors: ∂²/∂z² = 2w I, factor columns √(2w) e_d."""

    def __init__(self, out, share, max_exact=64):
        super().__init__(out, share, max_exact)
        self.scale = (2.0 * share / self.out.numel()) ** 0.5

    @property
    def exact_columns(self) -> int:
        d = self.out[0].numel()
        return d if d <= self.max_exact else 0

    def column(self, k: int) -> torch.Tensor:
        e = torch.zeros_like(self.out).reshape(self.out.shape[0], -1)
        e[:, k] = self.scale
        return e.reshape(self.out.shape)

    def sample(self, gen):
        return self.scale * rademacher(self.out.shape, gen, self.out.device)
