"""Language-model objectives over tokens: perplexity, tail token KL, and top-1 agreement with the FP model.

`kl` (reference.py) is the mean token KL; `kl_p999` is its 99.9th percentile over every token of the
data set, the figure GGUF producers publish next to perplexity. Both, and `perplexity` (exp of the mean
token cross-entropy, not the mean of per-batch perplexities), are pooled over all tokens by `measure`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mpsearch.data import Batch

from ._base import Objective, register_objective


def token_kl(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """KL(p_FP || p_Q) at every position: shape (tokens,)."""
    c = out.shape[-1]
    logq = F.log_softmax(out.float().reshape(-1, c), dim=-1)
    logp = F.log_softmax(ref.float().reshape(-1, c), dim=-1)
    return (logp.exp() * (logp - logq)).sum(-1)


@register_objective
class Perplexity(Objective):
    name = "perplexity"
    needs_labels = True
    pooled = True

    def values(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(out.float().reshape(-1, out.shape[-1]), batch.y.reshape(-1), reduction="none")

    def batch(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.values(out, batch).mean().exp()

    def pool(self, values: torch.Tensor) -> float:
        return float(values.double().mean().exp())


@register_objective
class TokenKLQuantile(Objective):
    """99.9th-percentile token KL to the FP model: the worst tokens, which a mean hides."""

    name = "kl_p999"
    needs_reference = True
    pooled = True
    q = 0.999

    def values(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        return token_kl(out, batch.ref)

    def batch(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        v = self.values(out, batch)
        k = max(1, min(v.numel(), int(np.ceil(self.q * v.numel()))))
        return v.kthvalue(k).values

    def pool(self, values: torch.Tensor) -> float:
        return float(np.quantile(values.double().numpy(), self.q)) if values.numel() else 0.0


@register_objective
class TopOneAgreement(Objective):
    """Fraction of tokens where the quantized model's most likely next token is the FP model's."""

    name = "top1_agreement"
    higher_is_better = True
    needs_reference = True
    pooled = True

    def values(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        c = out.shape[-1]
        return (out.reshape(-1, c).argmax(-1) == batch.ref.reshape(-1, c).argmax(-1)).float()

    def batch(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.values(out, batch).mean()
