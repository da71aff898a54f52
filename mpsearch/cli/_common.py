"""Flags and loaders shared by the verbs: where the model and the data come from."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from .. import distributed
from ..data import as_data
from ..errors import MpsearchError, UsageError
from ..examples import EXAMPLES, load_example
from ..hf import is_checkpoint_dir, load_pretrained, load_tokenizer
from ..loading import LoadedModel, load_model
from ..rounding import AUTO, ROUNDINGS
from ..sensitivity import zeroq
from ..text import load_lm_data

# what a language model's plan is reported by on held-out text
LM_METRICS = ["cross_entropy", "perplexity", "kl", "kl_p999", "top1_agreement"]


def add_model_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("model", nargs="?" if not required else None, metavar="MODEL",
                   help="a .pt2 (torch.export), a .pt module (needs --trust-pickle), or a state dict with --factory")
    p.add_argument("--example", choices=sorted(EXAMPLES),
                   help="use a bundled example's model and data (with MODEL: only its data)")
    p.add_argument("--factory", metavar="PKG.MOD:FN", help="function that builds the model for a state-dict MODEL")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow loading a pickled torch.save model (this runs code from the file)")
    p.add_argument("--trust-remote-code", action="store_true",  # llm: Hugging Face checkpoint directories
                   help="allow a Hugging Face checkpoint directory's own model code to run")


def add_plan_args(p: argparse.ArgumentParser, output_help: str, data: bool = True) -> None:
    """MODEL (or --example) PLAN -o OUTPUT: the arguments of the verbs that realize a plan (`data=False`
    when the verb adds the full data arguments itself)."""
    add_model_args(p, required=False)
    p.add_argument("plan", metavar="PLAN", help="plan JSON from `mpsearch plan`")
    p.add_argument("-o", "--output", required=True, help=output_help)
    if data:
        p.add_argument("--data", metavar="FILE", help="the calibration data the plan was made with (needed for "
                       "--rounding gptq plans; --example uses its own)")


def model_and_plan(args: argparse.Namespace):
    """(Inputs, Plan) for `add_plan_args` verbs; with --example the one positional is the plan."""
    from ..plan import Plan

    if args.example and args.model and not args.plan:
        args.plan, args.model = args.model, None
    plan = Plan.load(args.plan)
    return Inputs(args, need_data=False), plan


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="FILE", help="calibration data: .pt or .npz holding {'x', 'y'?}; "
                   "or zeroq[:CxHxW] for data-free distilled inputs (models with BatchNorm)")
    p.add_argument("--batch-size", type=int, default=256, help="batch size for calibration passes")
    # >>> llm: text / token ids for language models
    p.add_argument("--seq-len", type=int, default=512, help="tokens per sequence for text or token-id --data")
    p.add_argument("--samples", type=int, default=32,
                   help="calibration sequences from text --data (the next as many are held out)")
    # <<< llm


class Inputs:
    """The model (and, for an example, its calibration and test splits) named on the command line."""

    def __init__(self, args: argparse.Namespace, need_data: bool = True):
        # MODEL and --example together: the model from the file, the data from the example
        # (e.g. to evaluate an applied copy of the example on its held-out split).
        self.example = load_example(args.example) if getattr(args, "example", None) else None
        self.ties: list[list[str]] = []  # llm: fused projections of a language model
        self.test_metrics: list[str] | None = None
        if getattr(args, "model", None) and is_checkpoint_dir(args.model):
            self.loaded = LoadedModel(load_pretrained(args.model, trust_remote_code=args.trust_remote_code),
                                      "hf", args.model)
        elif getattr(args, "model", None):
            self.loaded = load_model(args.model, trust_pickle=args.trust_pickle, factory=args.factory)
        elif self.example is not None:
            self.loaded = LoadedModel(self.example.model, "example", args.example)
        else:
            raise UsageError("name a MODEL file or pass --example digits-cnn")
        self.model = self.loaded.module
        data = getattr(args, "data", None)
        bs = getattr(args, "batch_size", 256)
        self.zeroq = zeroq.is_zeroq(data)
        if self.zeroq:
            shape_from = self.example.calibration["x"] if self.example else None
            self.data = zeroq.from_spec(self.model, data, shape_from, bs)
        elif data and self.loaded.kind == "hf" and self._lm_data(args, data, bs):
            pass
        elif data:
            self.data = as_data(data, bs)
        elif self.example is not None:
            self.data = as_data(self.example.calibration, bs)
        elif need_data:
            raise UsageError("pass --data FILE with calibration inputs (.pt or .npz holding x and optionally y)")
        else:
            self.data = None
        self.test_metrics = self.test_metrics or getattr(self.example, "metrics", None)
        if not hasattr(self, "test"):
            self.test = as_data(self.example.test, bs) if self.example is not None else None
        self.objective = getattr(self.example, "objective", None)  # an example may name its own loss

    def _lm_data(self, args: argparse.Namespace, data: str, bs: int) -> bool:
        """Text or token ids for a checkpoint directory: windows with next-token labels, the rest held out."""
        try:
            tok = load_tokenizer(args.model, trust_remote_code=args.trust_remote_code)
        except MpsearchError:
            tok = None
        lm = load_lm_data(data, tok, args.seq_len, args.samples, self.model.config.vocab_size)
        if lm is None:
            return False
        self.data = as_data(lm.calibration, bs)
        self.test = None if lm.test is None else as_data(lm.test, bs)
        self.test_metrics = LM_METRICS
        return True


def info(msg: str) -> None:
    """Status lines go to stderr (stdout carries the tables); flush stdout first to keep the order."""
    sys.stdout.flush()
    print(msg, file=sys.stderr)


def add_scope_args(p: argparse.ArgumentParser) -> None:
    """--exclude / --pin (mpsearch.scope): sites kept out of the search or fixed to one format."""
    p.add_argument("--exclude", action="append", metavar="PATTERN",
                   help="keep matching sites 16-bit (fnmatch, e.g. 'embeddings.*', or re:REGEX); repeat for several")
    p.add_argument("--pin", action="append", metavar="PATTERN=FORMAT",
                   help="give matching sites exactly FORMAT, e.g. 'classifier*=int8'; repeat for several")


def scope_kwargs(args: argparse.Namespace) -> dict:
    return {"exclude": getattr(args, "exclude", None), "pin": getattr(args, "pin", None)}


# -- several processes for kfac (mpsearch.distributed) ------------------------------------------------
def add_rounding_arg(p: argparse.ArgumentParser, what: str) -> None:
    """`--rounding`, shared by the commands that round weights (`what`: when they are rounded)."""
    p.add_argument("--rounding", default=AUTO, choices=[AUTO, *ROUNDINGS],
                   help=f"how weights are rounded {what}: auto (default: gptq when every quantized layer is a "
                        "Linear, else rtn), rtn (round to nearest), gptq (Hessian error feedback on the "
                        "calibration inputs), awq (activation-aware input-channel scales, stored as FP16 per "
                        "input channel) or awq+gptq")


def add_device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--devices", metavar="LIST",
                   help="spread kfac's decoder blocks over these devices, one process each: cuda:0,cuda:1 (NCCL), "
                        "cuda (every GPU) or cpu,cpu (gloo); one device: run the blocks there. Under torchrun the "
                        "ranks come from RANK/WORLD_SIZE")
    p.add_argument("--world-size", type=int, metavar="N",
                   help="N processes on --devices' one device (default: N GPUs, or N CPU processes without a GPU)")


def _decoder(args: argparse.Namespace) -> bool:
    """Whether the default estimator of the named model is kfac (a Hugging Face decoder)."""
    model = getattr(args, "model", None)
    return is_checkpoint_dir(model) if model else getattr(args, "example", None) == "tiny-decoder"


@contextmanager
def rank_session(args: argparse.Namespace, estimator: str | None, load) -> Iterator[tuple]:
    """(this process's ranks or None, `load()`) for `--devices` / `--world-size` / torchrun; the other ranks
    run this same command line. Only `kfac` is spread, so anything else fails before a process starts, and
    rank 0 loads the model and data before it starts the others, so a bad input is one line, not N."""
    devices = distributed.parse_devices(getattr(args, "devices", None), getattr(args, "world_size", None))
    if devices is not None or distributed.launched():
        name = estimator or ("kfac" if _decoder(args) else None)
        if name != "kfac":
            what = f"estimator {name!r}" if name else "the default estimator of a model that is not a decoder"
            raise UsageError(f"{what} runs in one process; --devices spreads only 'kfac' over devices: pass "
                             "--estimator kfac (a Hugging Face decoder) or drop --devices")
    got = []
    command = [sys.executable, "-m", "mpsearch", *getattr(args, "_argv", sys.argv[1:])]
    with distributed.session(devices, command, before=lambda: got.append(load())) as ranks:
        yield ranks, (got[0] if got else load())


def device_settings(args: argparse.Namespace, settings: dict) -> dict:
    """`settings` with kfac's `device` set when --devices names one device."""
    devices = distributed.parse_devices(getattr(args, "devices", None), getattr(args, "world_size", None))
    if devices is not None and len(devices) == 1 and not distributed.launched():
        return {**settings, "device": devices[0]}
    return settings


def run_on_ranks(args: argparse.Namespace, run) -> int:
    """`run(args, inputs)` in the only process or on rank 0; the other ranks serve their blocks of rank 0's
    kfac estimate and write nothing."""
    from ..sensitivity.streaming import serve

    with rank_session(args, args.estimator, lambda: Inputs(args)) as (ranks, inp):
        if ranks is not None and not ranks.main:
            serve(inp.model)
            return 0
        return run(args, inp)
