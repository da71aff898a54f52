"""What a plan is judged by: registered objectives (`cross_entropy`, `accuracy`, `kl`, `mse`, `sqnr`;
for language models `perplexity`, `kl_p999`, `top1_agreement`)."""

from . import classification, language, reference  # noqa: F401  (register the built-in objectives)
from ._base import (
    Objective,
    as_loss,
    better,
    default_objective,
    get_objective,
    measure,
    objective_names,
    register_objective,
    sign,
)

__all__ = ["Objective", "as_loss", "better", "default_objective", "get_objective", "measure", "objective_names",
           "register_objective", "sign"]
