"""Label-free objectives: how far the quantized model's outputs move from the FP model's."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mpsearch.data import Batch

from ._base import Objective, register_objective


@register_objective
class KLToReference(Objective):
    """KL(p_FP || p_Q) per position, averaged. Its Hessian at the FP weights is the model's Fisher (a GGN)."""

    name = "kl"
    needs_reference = True

    def batch(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        c = out.shape[-1]
        logq = F.log_softmax(out.float().reshape(-1, c), dim=-1)
        logp = F.log_softmax(batch.ref.float().reshape(-1, c), dim=-1)
        return F.kl_div(logq, logp, log_target=True, reduction="batchmean")


@register_objective
class MSEToReference(Objective):
    """Mean squared output error, for models whose outputs are not logits (embeddings, regression)."""

    name = "mse"
    needs_reference = True

    def batch(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.mse_loss(out.float(), batch.ref.float())


@register_objective
class OutputSQNR(Objective):
    """Signal-to-quantization-noise ratio of the outputs, in dB."""

    name = "sqnr"
    higher_is_better = True
    needs_reference = True

    def batch(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        ref = batch.ref.float()
        noise = (out.float() - ref).pow(2).sum().clamp_min(1e-30)
        return 10 * torch.log10(ref.pow(2).sum().clamp_min(1e-30) / noise)
