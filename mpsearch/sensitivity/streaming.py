"""``kfac``: a Fisher estimate that streams a decoder block by block, for language models of any size.

Ω(site, f) = ½ vec(ΔW)ᵀ F vec(ΔW), F the model's Fisher per token (the Hessian of the mean token KL
to the FP model at the FP weights, and the Gauss-Newton matrix of the next-token cross-entropy: one
estimate serves both, with labels and without). Labels are sampled from the model's own next-token
distribution (seeded), so the gradients are zero-mean and their squares estimate F without bias.

* A linear site's F is Kronecker-factored (K-FAC, "expand" form): F ≈ A ⊗ G with A = E[x xᵀ] over its
  input tokens and G = diag E[g²] of the gradients at its output, so Ω = ½ Σ_o G_o (ΔW A ΔWᵀ)_oo:
  two d_in × d_in / d_out accumulators per site, whatever the token count.
* Other sites (embeddings, a MoE layer's 3-D experts weights) use the diagonal Fisher from the
  micro-batch gradients: Ω = ½ Σ F_ii ΔW_i².

Streaming (Hugging Face decoders): the inputs of the first decoder block are recorded from the model
(the embeddings, position embeddings and masks it computes); then each block in turn is moved to
`device`, run on every micro-batch (its boundary activations kept on `store`), and moved back. The
head samples labels and returns the output gradient; the blocks are then revisited in reverse, each
recomputed with gradients, accumulating its sites' statistics. Peak device memory is one block's
weights, the embeddings and head, one micro-batch's activations and one block's accumulators. Only
first derivatives are taken, so every attention kernel (SDPA included) works.

Ω's standard error is half the difference of the estimates from the even and the odd micro-batches.

Several ranks (`mpsearch.distributed`, `--devices`): a pipeline over blocks. Each rank holds a contiguous
share of the blocks and rank 0 also the embeddings and the head; boundary activations go from rank to
rank (`isend`/`irecv`) and gradients come back the same way. Every statistic stays on the one rank that
owns its block and is accumulated over the micro-batches in order, so no floating-point sum is split
or reordered, and the table is bitwise the one-process table; rank 0 only concatenates the rows.
"""

from __future__ import annotations

import math
import time
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, replace

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .. import distributed, rounding
from ..data import CalibrationData, _slice, _to
from ..errors import UsageError
from ..formats import Choice
from ..model import Site, batch_size_of
from ..rounding import rounded
from ._base import Estimator, SensitivityTable, register_estimator


class _Call:
    """The arguments a block is called with besides its hidden states (masks, position embeddings)."""

    def __init__(self, args: tuple, kwargs: dict):
        self.args, self.kwargs = args, kwargs

    def __call__(self, layer: nn.Module, hidden: torch.Tensor):
        return layer(hidden, *self.args, **self.kwargs)


class _Caught(Exception):
    """Raised by the hook that records the first block's inputs, to stop the forward there."""


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def _softcap(model: nn.Module) -> float | None:
    """The cap c of a model whose forward soft-caps its logits, c·tanh(z/c) (Gemma 2 and later): the head
    pass must take the Fisher of the capped logits the model samples from, not of the head's output."""
    cap = getattr(getattr(model, "config", None), "final_logit_softcapping", None)
    return float(cap) if cap else None


def _head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(final norm, LM head) of a Hugging Face decoder."""
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    if head is None:
        raise UsageError(f"estimator 'kfac' streams a Hugging Face causal LM (a PreTrainedModel with an LM head); "
                         f"{type(model).__name__} is not one: pass the PreTrainedModel itself, or use 'fisher'")
    base = model.base_model
    for name in ("norm", "ln_f", "final_layernorm", "final_layer_norm"):
        norm = getattr(base, name, None)
        if isinstance(norm, nn.Module):
            return norm, head
    raise UsageError(f"cannot find the final norm of {type(model).__name__}; use estimator 'fisher' for this model")


class _Linear:
    """K-FAC statistics of one linear use of a site: input second moment and output gradient squares,
    kept separately for even and odd micro-batches (for the error bar)."""

    def __init__(self, module: nn.Module, transposed: bool):
        self.module, self.transposed = module, transposed
        self.A = [None, None]
        self.G = [None, None]
        self.n = [0, 0]
        self.half = 0
        self.handles = []

    def attach(self) -> None:
        def fwd(mod, inp, out):
            if _Block.replaying:
                return
            x = inp[0].detach().reshape(-1, inp[0].shape[-1]).float()
            h = self.half
            a = x.T @ x
            self.A[h] = a if self.A[h] is None else self.A[h] + a
            self.n[h] += x.shape[0]
            if out.requires_grad:
                def bwd(g, h=h):
                    s = g.detach().reshape(-1, g.shape[-1]).float().pow(2).sum(0)
                    self.G[h] = s if self.G[h] is None else self.G[h] + s
                out.register_hook(bwd)

        self.handles.append(self.module.register_forward_hook(fwd))

    def detach(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def omega(self, dw: torch.Tensor) -> tuple[float, float]:
        """(Ω, se) for weight perturbation `dw` (in the module's own layout)."""
        d = dw.float().reshape(dw.shape[0], -1)
        if self.transposed:
            d = d.T
        r = [None if a is None else ((d @ a) * d).sum(1) for a in self.A]
        halves = [0.5 * float((g * ri).sum()) / n ** 2 for g, ri, n in zip(self.G, r, self.n) if g is not None]
        gs = sum(g for g in self.G if g is not None)
        rs = sum(ri for ri in r if ri is not None)
        full = 0.5 * float((gs * rs).sum()) / sum(self.n) ** 2
        return full, (abs(halves[0] - halves[1]) / 2 if len(halves) == 2 else abs(full))


class _Diagonal:
    """Diagonal Fisher of one parameter from micro-batch gradients (even/odd halves)."""

    def __init__(self, param: nn.Parameter):
        self.param = param
        self.F = [None, None]

    def add(self, grad: torch.Tensor, half: int) -> None:
        g2 = grad.detach().float().pow(2)
        self.F[half] = g2 if self.F[half] is None else self.F[half] + g2

    def omega(self, dw: torch.Tensor, n_tokens: list[int]) -> tuple[float, float]:
        d2 = dw.float().pow(2)
        halves = [0.5 * float((f * d2).sum()) / n for f, n in zip(self.F, n_tokens) if f is not None and n]
        fs = sum(f for f in self.F if f is not None)
        full = 0.5 * float((fs * d2).sum()) / max(sum(n_tokens), 1)
        return full, (abs(halves[0] - halves[1]) / 2 if len(halves) == 2 else abs(full))


class _Block:
    """Block-output statistics of one group of sites (fused q/k/v or gate/up, or one MoE experts weight),
    taken at the output of the module that encloses them (the attention, the MLP, the experts block).

    For each candidate c, S_c = Σ_t Δy_t² per output feature, Δy the module's output change when the
    group's weights are rounded to c (all of them together, the module's inputs those of the 16-bit
    model); G = Σ_t g_t², the output gradient squares. Ω = ½ Σ_o G_o S_o / n²: kfac's form with ΔW·x
    replaced by the module's actual output change, so the cross terms between the group's members, the
    attention softmax, the SwiGLU gate and the routing are inside it."""

    replaying = False  # while a replay runs, no hook takes statistics

    def __init__(self, module: nn.Module, prefix: str, sites: list[Site]):
        self.module, self.prefix, self.sites = module, prefix, sites
        self.weights: dict[str, dict[str, torch.Tensor]] = {}
        self.S: dict[str, list] = {}
        self.G = [None, None]
        self.n = [0, 0]
        self.half = 0
        self.handles = []

    def attach(self, params: dict, choices: list[Choice]) -> None:
        """Round the group's weights to every candidate (the active rounding) and hook the module."""
        local = {s.param[len(self.prefix) + 1:] if self.prefix else s.param: (params[s.param], s.layout)
                 for s in self.sites}
        with torch.no_grad():
            self.weights = {c.name: {k: rounded(p, c.weight, lay).detach().to(p.dtype) for k, (p, lay) in local.items()}
                            for c in choices}
        self.S = {c.name: [None, None] for c in choices}

        def fwd(mod, args, kwargs, out):
            if _Block.replaying:
                return
            y = _first(out)
            h = self.half
            ref = y.detach().float().reshape(-1, y.shape[-1])
            _Block.replaying = True
            try:
                with torch.no_grad():
                    for name, w in self.weights.items():
                        yq = _first(torch.func.functional_call(mod, w, args, kwargs)).float()
                        d = (yq.reshape(-1, y.shape[-1]) - ref).pow(2).sum(0)
                        self.S[name][h] = d if self.S[name][h] is None else self.S[name][h] + d
            finally:
                _Block.replaying = False
            self.n[h] += ref.shape[0]
            if y.requires_grad:
                def bwd(g, h=h):
                    s = g.detach().reshape(-1, g.shape[-1]).float().pow(2).sum(0)
                    self.G[h] = s if self.G[h] is None else self.G[h] + s
                y.register_hook(bwd)

        self.handles.append(self.module.register_forward_hook(fwd, with_kwargs=True))

    def detach(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def omega(self, choice: str) -> tuple[float, float]:
        """(Ω, se) of the whole group at `choice`; se from the even and odd micro-batches, as `_Linear`."""
        S = self.S[choice]
        halves = [0.5 * float((g * d).sum()) / n ** 2 for g, d, n in zip(self.G, S, self.n) if g is not None]
        full = 0.5 * float((sum(g for g in self.G if g is not None) * sum(d for d in S if d is not None)).sum()) \
            / sum(self.n) ** 2
        return full, (abs(halves[0] - halves[1]) / 2 if len(halves) == 2 else abs(full))

    def free(self) -> None:
        self.weights, self.S, self.G = {}, {}, [None, None]


def _groups(model: nn.Module, block: nn.Module, sites: list[Site]) -> list[_Block]:
    """The groups of one decoder block that are scored at a module output: each fused sibling group
    (`hf.fused_ties`) at its parent module, each MoE experts weight at its experts module."""
    from ..hf import fused_ties

    by_name = {s.name: s for s in sites}
    out = []
    for group in fused_ties([s.name for s in sites if s.kind != "experts"]):
        parent = group[0].rpartition(".")[0]
        out.append(_Block(model.get_submodule(parent), parent, [by_name[n] for n in group]))
    for s in sites:
        if s.kind == "experts":
            owner = s.param.rpartition(".")[0]
            out.append(_Block(model.get_submodule(owner), owner, [s]))
    inside = {id(m) for m in block.modules()}
    return [b for b in out if id(b.module) in inside]


@register_estimator("kfac")
@dataclass(eq=False)
class StreamingKFAC(Estimator):
    """Block-streamed sampled Fisher (K-FAC for linear sites, diagonal otherwise); see the module docstring.

    Settings: `micro_batch` (sequences per pass, default 4), `device` (where blocks run: default the
    model's device), `store` (where boundary activations wait: `cpu` or `device`, default `cpu` when
    `device` differs from the model's, else `device`), `schedule` (`blocks`: one block on the device at a
    time, its statistics freed once scored; `micro-batches`: all of a rank's blocks resident and the
    micro-batches flowing through the ranks concurrently, which is what makes several ranks faster, at
    the memory of all its blocks and their statistics; default `micro-batches` over several ranks, else
    `blocks`). The schedule reorders the work and changes no number. `block_output` (default off):
    score each fused group (q/k/v, gate/up) and each MoE experts weight at the output of the module that
    encloses it (`_Block`: the group rounded together, its real output change instead of the sum of its
    members' linear K-FAC terms; one extra forward of that module per candidate and micro-batch); the
    group's Ω is shared among its members in proportion to their own kfac Ω, so the sum over a tie group,
    what the search reads, is the block-output Ω. Over several ranks (`mpsearch.distributed`), rank 0
    calls `estimate` and the other ranks `serve`.
    """

    name = "kfac"
    micro_batch: int = 4
    device: str | None = None
    store: str | None = None
    schedule: str | None = None
    block_output: bool = False

    def recorded_params(self) -> dict:
        """`schedule` reorders the work without changing a number (a test checks it): not in the cache key."""
        return {k: v for k, v in super().recorded_params().items() if k != "schedule"}

    def estimate(self, model, sites: list[Site], choices: list[Choice], data: CalibrationData, objective,
                 seed: int = 0) -> SensitivityTable:
        if any(c.act is not None for c in choices):
            raise UsageError("estimator 'kfac' scores weight formats only; drop the WEIGHT:ACT choices or use 'fisher'")
        mb = int(self.micro_batch)
        if mb < 1:
            raise UsageError(f"micro_batch must be positive (got {mb})")
        if self.schedule not in (None, "blocks", "micro-batches"):
            raise UsageError(f"kfac schedule {self.schedule!r} is not one of blocks, micro-batches; pick one")
        job = _Job({k: v for k, v in self.get_params().items() if k != "progress"}, list(sites), list(choices),
                   [_slice(b.x, i, i + mb) for b in data for i in range(0, b.size, mb)], seed)
        ranks = distributed.current()
        if ranks is None:
            rows = _Pass(self, model, job, None).run()
        else:
            if self.device is not None:
                raise UsageError("kfac's device setting names one device, and with --devices every rank has its "
                                 "own; drop --set device=")
            from ..hf import decoder_layers

            _head(model)  # what would fail on every rank fails here, before the others are busy
            distributed.share(len(decoder_layers(model)), ranks.world, 0)
            ranks.submit(replace(job, micro=[_to(x, "cpu") for x in job.micro],
                                 rounding=rounding.state(rounding.current(), {s.param for s in sites})))
            parts = ranks.collect(_work(self, model, job, ranks))
            self.ranks_ = [{k: v for k, v in vars(p).items() if k != "rows"} for p in parts]
            rows = [r for p in parts for r in p.rows]
        frame = pd.DataFrame(rows)
        order = {s.name: i for i, s in enumerate(sites)}
        frame = frame.sort_values("site", key=lambda c: c.map(order), kind="stable").reset_index(drop=True)
        return SensitivityTable(frame, self.name, self.recorded_params())

    @staticmethod
    def _capture(model, layers, micro, grad: bool = False):
        """Each micro-batch's input to the first block (hidden states, other keyword arguments)."""
        got = {}

        def hook(mod, args, kwargs):
            got["h"] = args[0] if args else kwargs["hidden_states"]
            got["kw"] = _Call(tuple(args[1:]), {k: v for k, v in kwargs.items() if k != "hidden_states"})
            raise _Caught

        hs, kws = [], []
        handle = layers[0].register_forward_pre_hook(hook, with_kwargs=True)
        try:
            for x in micro:
                with torch.set_grad_enabled(grad):
                    try:
                        model(**x) if isinstance(x, dict) else model(x)
                    except _Caught:
                        pass
                hs.append(got["h"] if grad else got["h"].detach())
                kws.append(got["kw"])
        finally:
            handle.remove()
        return hs, kws


@dataclass
class _Job:
    """What rank 0 hands every rank for one estimate (the model each rank has already)."""

    settings: dict
    sites: list[Site]
    choices: list[Choice]
    micro: list
    seed: int
    rounding: dict | None = None  # rank 0's active rounding (`rounding.state`): the other ranks score the same


@dataclass
class _Result:
    """One rank's rows of a job, and what it cost there."""

    rank: int
    device: str
    blocks: tuple[int, int]
    seconds: float
    peak_gpu_GB: float
    rows: list[dict]


def _work(est: StreamingKFAC, model: nn.Module, job: _Job, ranks) -> _Result:
    """This rank's part of `job`, timed, with its peak device memory."""
    device = ranks.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t = time.perf_counter()
    run = _Pass(est, model, job, ranks)
    rows = run.run()
    peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else 0.0
    return _Result(ranks.rank, str(device), (run.mine.start, run.mine.stop), time.perf_counter() - t, peak, rows)


def serve(model: nn.Module, ranks=None) -> int:
    """Ranks other than 0: do the `kfac` jobs rank 0 hands out until it says stop; the number of jobs.
    `model` is this rank's copy (only its blocks' weights are read, and the embeddings for the masks)."""
    from ..hf import prepare

    ranks = ranks or distributed.current()
    if ranks is None or ranks.main:
        raise UsageError("serve() is for ranks other than 0; rank 0 calls the estimator")
    model = prepare(model)  # the attention kernel and mode rank 0's Planner uses
    done = 0
    while (job := ranks.next_job()) is not None:
        with rounding.from_state(model, job.rounding).active() if job.rounding else nullcontext():
            ranks.collect(_work(StreamingKFAC(**job.settings, progress=False), model, job, ranks))
        done += 1
    return done


# message tags: block outputs to the next rank, the last block's to rank 0's head, the head's gradients to
# the last rank, gradients to the previous rank
_FWD, _FINAL, _GRAD, _BACK = 1, 2, 3, 4


def _ready(tensors: list) -> list:
    """Tensors already here, in the shape of `Ranks.receive_all`'s answer."""
    return [lambda t=t: t for t in tensors]


class _Pass:
    """One rank's share of one estimate (in one process: all of it): its blocks, their statistics, the
    boundary activations; rank 0 also the embeddings, the head and the sites outside the blocks.

    Every statistic is accumulated by exactly one rank, over the micro-batches in order, with the ops one
    process would run on the same inputs: so the table does not depend on the number of ranks (bitwise,
    on devices of one kind); rank 0 only concatenates rows. No reduction crosses ranks."""

    def __init__(self, est: StreamingKFAC, model: nn.Module, job: _Job, ranks):
        from ..hf import decoder_layers

        self.model, self.sites, self.choices, self.ranks = model, job.sites, job.choices, ranks
        self.rank, self.world = (ranks.rank, ranks.world) if ranks is not None else (0, 1)
        self.layers = decoder_layers(model)
        self.mine = distributed.share(len(self.layers), self.world, self.rank)
        self.home = next(model.parameters()).device
        self.homes = {i: next(self.layers[i].parameters()).device for i in self.mine}
        self.device = ranks.device if ranks is not None else torch.device(est.device or self.home)
        store = est.store or ("cpu" if self.device != self.home else "device")
        self.store = self.device if store == "device" else torch.device(store)
        self.resident = (est.schedule or ("micro-batches" if self.world > 1 else "blocks")) == "micro-batches"
        self.norm, self.head = _head(model)
        self.cap = _softcap(model)
        self.block_output = bool(est.block_output)
        self.gen = torch.Generator(device=self.device).manual_seed(job.seed)
        self.micro = [_to(x, self.device) for x in job.micro]
        self.tokens = [0, 0]
        for i, x in enumerate(self.micro):
            self.tokens[i % 2] += int(math.prod(x["input_ids"].shape) if isinstance(x, dict) and "input_ids" in x
                                      else batch_size_of(x))
        self._statistics(job.sites)
        self.rows: list[dict] = []
        self.open: dict[int, ExitStack] = {}
        self.bar = _bar(bool(est.progress) and self.rank == 0, 2 * len(self.mine) + 2, "kfac blocks")

    def _statistics(self, sites: list[Site]) -> None:
        self.params = params = dict(self.model.named_parameters())
        site_of = {id(params[s.param]): s for s in sites}
        self.linear: dict[str, list[_Linear]] = {}
        for _, mod in self.model.named_modules():
            w = getattr(mod, "weight", None)
            if isinstance(w, torch.Tensor) and id(w) in site_of and (
                    isinstance(mod, nn.Linear) or type(mod).__name__ == "Conv1D"):
                self.linear.setdefault(site_of[id(w)].name, []).append(
                    _Linear(mod, type(mod).__name__ == "Conv1D"))
        self.diagonal = {s.name: _Diagonal(params[s.param]) for s in sites
                         if s.name not in self.linear or s.kind in ("embedding", "experts")}
        self.in_layer = [{s.name for s in sites if any(p is params[s.param] for p in layer.parameters())}
                         for layer in self.layers]
        self.blocks = {i: _groups(self.model, self.layers[i], [s for s in sites if s.name in self.in_layer[i]])
                       for i in self.mine} if self.block_output else {}

    def run(self) -> list[dict]:
        """Forward through this rank's blocks, the head (rank 0), the blocks in reverse, the embeddings
        (rank 0); every weight goes back where it was and `requires_grad` is restored, whatever fails."""
        requires = {n: p.requires_grad for n, p in self.params.items()}
        for p in self.params.values():
            p.requires_grad_(False)
        ends = () if self.rank == 0 else (self.norm, self.head)  # the other ranks need only the embeddings
        try:
            _place(self.model, self.layers, self.device, skip=ends)
            for i in self.mine if self.resident else ():
                self.layers[i].to(self.device)
            h, self.kw = StreamingKFAC._capture(self.model, self.layers, self.micro)
            finals = self.forward(h)
            grads = self.head_pass(finals, h) if self.rank == 0 else None
            grads = self.backward(grads, h)
            if self.rank == 0:
                self.embeddings(grads)
                elsewhere = set().union(*(self.in_layer[i] for i in range(len(self.layers)) if i not in self.mine))
                done = {r["site"] for r in self.rows} | elsewhere
                self.score([s for s in self.sites if s.name not in done])
                self.bar.update(1)
            self.bar.close()
        finally:
            for stack in self.open.values():
                stack.close()
            for n, p in self.params.items():
                p.requires_grad_(requires[n])
            _place(self.model, self.layers, self.home, skip=ends)
            for i in self.mine:
                self.layers[i].to(self.homes[i])
        return self.rows

    def order(self, reverse: bool) -> list[tuple[int, int]]:
        """(block, micro-batch) steps: block by block, or each micro-batch through every block in turn."""
        blocks = list(reversed(self.mine)) if reverse else list(self.mine)
        mbs = range(len(self.micro))
        return [(i, j) for j in mbs for i in blocks] if self.resident else [(i, j) for i in blocks for j in mbs]

    def _enter(self, i: int, j: int) -> nn.Module:
        if j == 0 and not self.resident:
            self.layers[i].to(self.device)
        return self.layers[i]

    def _leave(self, i: int, j: int) -> None:
        if j == len(self.micro) - 1:
            if not self.resident:
                self.layers[i].to(self.homes[i])
            self.bar.update(1)

    def forward(self, h: list) -> list:
        """Every micro-batch through this rank's blocks without gradients, each block's inputs kept on
        `store` for the backward. The last block's outputs go to the next rank (from the last rank, to
        rank 0's head); in one process they are returned."""
        n, lo, hi = len(self.micro), self.mine.start, self.mine.stop
        inbox = _ready(h) if self.rank == 0 else self.ranks.receive_all(h, self.rank - 1, _FWD)
        self.acts = {i: [None] * n for i in self.mine}
        out = [None] * n
        last = self.rank == self.world - 1
        with torch.no_grad():
            for i, j in self.order(reverse=False):
                layer = self._enter(i, j)
                if i == lo:
                    self.acts[i][j] = _to(inbox[j](), self.store)
                y = _first(self.kw[j](layer, _to(self.acts[i][j], self.device)))
                if i + 1 < hi:
                    self.acts[i + 1][j] = _to(y, self.store)
                elif self.world == 1:
                    out[j] = _to(y, self.store)
                else:
                    self.ranks.send(y, 0 if last else self.rank + 1, _FINAL if last else _FWD)
                self._leave(i, j)
        if self.ranks is not None:
            self.ranks.flush()
        return out

    def head_pass(self, finals: list, h: list) -> list | None:
        """Sample next tokens from the model and take d(Σ token losses)/d(last hidden state) per
        micro-batch, then score the head's sites. Over several ranks the last block's outputs come from
        the last rank and the gradients go back to it."""
        inbox = _ready(finals) if self.world == 1 else self.ranks.receive_all(h, self.world - 1, _FINAL)
        stats = [st for st_list in self.linear.values() for st in st_list if st.module is self.head]
        grads = []
        with ExitStack() as stack:
            for st in stats:
                st.attach()
                stack.callback(st.detach)
            for j in range(len(self.micro)):
                for st in stats:
                    st.half = j % 2
                x = _to(inbox[j](), self.device).requires_grad_(True)
                logits = self.head(self.norm(x)).float()
                if self.cap:
                    logits = self.cap * torch.tanh(logits / self.cap)
                flat = logits.reshape(-1, logits.shape[-1])
                with torch.no_grad():
                    y = torch.multinomial(flat.softmax(-1), 1, generator=self.gen).reshape(-1)
                g = torch.autograd.grad(F.cross_entropy(flat, y, reduction="sum"), x)[0]
                if self.world == 1:
                    grads.append(_to(g, self.store))
                else:
                    self.ranks.send(g, self.world - 1, _GRAD)
        self.score([s for s in self.sites if s.name in self.linear and _only_in(s, self.head, self.params)])
        self.bar.update(1)
        return grads if self.world == 1 else None

    def backward(self, grads: list | None, h: list) -> list:
        """This rank's blocks in reverse, each recomputed with gradients on the micro-batches in order,
        accumulating its sites' statistics; a block's sites are scored once its last micro-batch is done.
        Returns the gradients at the first block's input (rank 0 needs them for the embeddings)."""
        n, lo, hi = len(self.micro), self.mine.start, self.mine.stop
        last = self.rank == self.world - 1
        inbox = _ready(grads) if self.world == 1 else self.ranks.receive_all(
            h, 0 if last else self.rank + 1, _GRAD if last else _BACK)
        g = [None] * n
        for i, j in self.order(reverse=True):
            layer = self._enter(i, j)
            names = self.in_layer[i]
            diag = [self.diagonal[s] for s in names if s in self.diagonal]
            stats = [st for s in names for st in self.linear.get(s, [])]
            blocks = self.blocks.get(i, [])
            if j == 0:
                self.open[i] = self._attach(stats, diag)
                for b in blocks:
                    b.attach(self.params, self.choices)
                    self.open[i].callback(b.detach)
            if i == hi - 1:
                g[j] = inbox[j]()
            for st in stats + blocks:
                st.half = j % 2
            x = _to(self.acts[i][j], self.device).requires_grad_(True)
            self.acts[i][j] = None
            out = _first(self.kw[j](layer, x))
            got = torch.autograd.grad(out, [x] + [d.param for d in diag], _to(g[j], self.device), allow_unused=True)
            g[j] = _to(got[0], self.store)
            for d, gd in zip(diag, got[1:]):
                if gd is not None:
                    d.add(gd, j % 2)
            if i == lo and self.rank > 0:
                self.ranks.send(got[0], self.rank - 1, _BACK)
                g[j] = None
            if j == n - 1:
                self.open.pop(i).close()
                self.score([s for s in self.sites if s.name in names], blocks)
            self._leave(i, j)
        if self.ranks is not None:
            self.ranks.flush()
        return g

    @staticmethod
    def _attach(stats: list[_Linear], diag: list[_Diagonal]) -> ExitStack:
        """Hooks on a block's linear sites and gradients on its other parameters, undone on close."""
        stack = ExitStack()
        for st in stats:
            st.attach()
            stack.callback(st.detach)
        for d in diag:
            d.param.requires_grad_(True)
            stack.callback(d.param.requires_grad_, False)
        return stack

    def embeddings(self, grads: list) -> None:
        """Diagonal Fisher of the sites before the first block (token and position embeddings)."""
        inside = set().union(*self.in_layer)
        pre = [self.diagonal[s.name] for s in self.sites if s.name in self.diagonal and s.name not in inside]
        if not pre:
            return
        for d in pre:
            d.param.requires_grad_(True)
        try:
            for j, x in enumerate(self.micro):
                (h0,), _ = StreamingKFAC._capture(self.model, self.layers, [x], grad=True)
                if not h0.requires_grad:
                    continue
                got = torch.autograd.grad(h0, [d.param for d in pre], _to(grads[j], h0.device), allow_unused=True)
                for d, gd in zip(pre, got):
                    if gd is not None:
                        d.add(gd, j % 2)
        finally:
            for d in pre:
                d.param.requires_grad_(False)

    def score(self, todo: list[Site], blocks: list[_Block] = ()) -> None:
        """Ω rows for `todo` (statistics complete), then free their accumulators. A group in `blocks`
        gets its block-output Ω, shared among its members as their own Ω are."""
        cell: dict[tuple[str, str], list[float]] = {}
        for s in todo:
            p = self.model.get_parameter(s.param)
            w = p.detach()
            for c in self.choices:
                dw = (rounded(p, c.weight, s.layout) - w).float()  # the active rounding (GPTQ/AWQ): Ω for what ships
                om, se = 0.0, 0.0
                for st in self.linear.get(s.name, []):
                    if st.n[0] or st.n[1]:
                        o, e = st.omega(dw)
                        om, se = om + o, math.hypot(se, e)
                if s.name in self.diagonal and self.diagonal[s.name].F[0] is not None:
                    o, e = self.diagonal[s.name].omega(dw, self.tokens)
                    om, se = om + o, math.hypot(se, e)
                cell[s.name, c.name] = [om, se]
            for st in self.linear.get(s.name, []):
                st.A, st.G = [None, None], [None, None]
            if s.name in self.diagonal:
                self.diagonal[s.name].F = [None, None]
        for b in blocks:
            if b.n[0] or b.n[1]:
                for c in self.choices:
                    om, se = b.omega(c.name)
                    own = [cell[m.name, c.name][0] for m in b.sites]
                    total = sum(own)
                    for m, o in zip(b.sites, own):
                        share = o / total if total > 0 else 1 / len(b.sites)
                        cell[m.name, c.name] = [om * share, se * share]
            b.free()
        self.rows.extend({"site": s.name, "format": c.name, "omega": cell[s.name, c.name][0],
                          "omega_se": cell[s.name, c.name][1]} for s in todo for c in self.choices)


def _only_in(site: Site, module: nn.Module, params: dict) -> bool:
    """Whether `site`'s weight belongs to `module` and to no decoder block (the LM head, unless tied)."""
    return any(p is params[site.param] for p in module.parameters()) and not site.kind == "embedding"


def _place(model: nn.Module, layers: nn.Module, device, skip: tuple = ()) -> None:
    """Move every parameter and buffer outside `layers` (and the modules `skip`) to `device` (the blocks
    stay where they are)."""
    inside = {id(m) for m in layers.modules()} | {id(m) for s in skip for m in s.modules()}
    for mod in model.modules():
        if id(mod) in inside:
            continue
        for p in mod._parameters.values():
            if p is not None and p.device != torch.device(device):
                p.data = p.data.to(device)
        for name, b in mod._buffers.items():
            if b is not None:
                mod._buffers[name] = b.to(device)


def _bar(progress: bool, total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not progress, leave=False)
