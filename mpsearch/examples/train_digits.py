"""Train a bundled digits model deterministically and write its weights (and, for the CNN, the data split).

    python -m mpsearch.examples.train_digits [--model cnn|seq] [--out DIR] [--check]

Split of the 1,797 digits (fixed permutation, seed 0): 500 test (held out), the remaining 1,297 train;
the calibration split is 256 samples of the training part (a planner sees only training data).

Bit-for-bit: seeds, one thread and deterministic algorithms are not enough, because torch, oneDNN and
MKL pick kernels by the CPU's instruction set (AVX-512 vs AVX2 changed every weight by up to 0.86 after
40 epochs). Training therefore runs in a child process with the kernels pinned to baseline x86-64
(`PINNED`), which is slower (~2 min) but gives the same bytes on any x86-64 CPU with this torch; `--check`
retrains into a temporary folder and compares the files' sha256 with the shipped ones (`SHIPPED`).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .digits import HERE, DigitsCNN, digits_arrays
from .digits_seq import DigitsSeq

MODELS = {"cnn": (DigitsCNN, "digits_cnn.safetensors"), "seq": (DigitsSeq, "digits_seq.safetensors")}

SEED = 0
N_TEST = 500
N_CAL = 256
# read when torch / oneDNN / MKL first pick a kernel, so set for a fresh process: baseline x86-64 kernels
PINNED = {"ATEN_CPU_CAPABILITY": "default", "DNNL_MAX_CPU_ISA": "SSE41", "MKL_CBWR": "COMPATIBLE",
          "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# sha256 of the shipped files, which `--check` reproduces (the 40-epoch defaults)
SHIPPED = {
    "digits_cnn.safetensors": "8c100cd8fce654c0aa2e7c9ea0eb2b66cf8a641877e3398be878a91094ecf7ea",
    "digits_seq.safetensors": "963067b2265770f6b8c38fa2e8a80359ec93b0fb74505ec2311c55bb2138441d",
    "digits_split.npz": "3edaf8a2636dc5c1a25a76318a4b9109a49e8b1676b949cc867e03e30f6a84be",
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--steps", type=int, default=None,
                    help="stop after this many optimizer steps (a test-size run of the same code)")
    ap.add_argument("--model", choices=sorted(MODELS), default="cnn",
                    help="cnn (the bundled example) or seq (1-D conv over rows; the split is the CNN's)")
    ap.add_argument("--check", action="store_true",
                    help="retrain into a temporary folder and compare with the shipped files (exit 1 if they differ)")
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    if args.check:
        return _check(args)
    if any(os.environ.get(k) != v for k, v in PINNED.items()):  # this process may already have picked kernels
        code = "import sys; from mpsearch.examples.train_digits import main; sys.exit(main(sys.argv[1:]))"
        root = str(Path(__file__).resolve().parents[2])  # the child imports this very mpsearch
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, **PINNED, "PYTHONPATH": path}
        return subprocess.run([sys.executable, "-c", code, *argv], env=env, check=False).returncode
    train(args)
    return 0


def _check(args) -> int:
    """Retrain with the defaults into a temporary folder; 0 when every written file is the shipped one."""
    with tempfile.TemporaryDirectory() as tmp:
        rc = main(["--model", args.model, "--out", tmp, "--epochs", str(args.epochs),
                   *(["--steps", str(args.steps)] if args.steps is not None else [])])
        if rc:
            return rc
        bad = [f.name for f in sorted(Path(tmp).iterdir()) if sha256(f) != SHIPPED.get(f.name)]
    print(f"differs from the shipped {', '.join(bad)}" if bad else "identical to the shipped files")
    return 1 if bad else 0


def _epoch(model, opt, xt: torch.Tensor, yt: torch.Tensor, g: torch.Generator, left: int) -> int:
    """One pass over the training part in batches of 64, or its first `left` steps; returns the steps left."""
    model.train()
    order = torch.randperm(len(xt), generator=g)
    for i in range(0, len(xt), 64):
        if left == 0:
            break
        idx = order[i : i + 64]
        # small random shifts: a little augmentation keeps the 1.3k-sample model from memorizing
        xb = torch.roll(xt[idx], shifts=tuple(torch.randint(-1, 2, (2,), generator=g).tolist()), dims=(2, 3))
        loss = F.cross_entropy(model(xb), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        left -= 1
    return left


def train(args) -> None:
    """The training run itself (in a process whose kernels are pinned: see `main`)."""
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    x, y = digits_arrays()
    perm = np.random.RandomState(SEED).permutation(len(x))
    test, train = perm[:N_TEST], perm[N_TEST:]
    cal = np.sort(train[:N_CAL])
    xt, yt = torch.from_numpy(x[train]), torch.from_numpy(y[train])

    cls, weights = MODELS[args.model]
    model = cls()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
    g = torch.Generator().manual_seed(SEED)
    left = args.steps if args.steps is not None else -1  # -1: every step of every epoch
    for _ in range(args.epochs):
        left = _epoch(model, opt, xt, yt, g, left)
        sched.step()
        if left == 0:
            break
    model.eval()
    with torch.no_grad():
        acc = (model(torch.from_numpy(x[test])).argmax(1).numpy() == y[test]).mean()
    args.out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(args.out / weights))
    if args.model == "cnn":  # the split is shared: written once, with the CNN
        np.savez(args.out / "digits_split.npz", test=np.sort(test).astype(np.int16), calibration=cal.astype(np.int16))
    print(f"test accuracy {acc:.4f} (kernels: {torch.backends.cpu.get_cpu_capability()}); wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
