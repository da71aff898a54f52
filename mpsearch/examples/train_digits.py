"""Train a bundled digits model deterministically and write its weights (and, for the CNN, the data split).

    python -m mpsearch.examples.train_digits [--model cnn|seq] [--out DIR]

Split of the 1,797 digits (fixed permutation, seed 0): 500 test (held out), the remaining 1,297 train;
the calibration split is 256 samples of the training part (a planner sees only training data).
"""

from __future__ import annotations

import argparse
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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--model", choices=sorted(MODELS), default="cnn",
                    help="cnn (the bundled example) or seq (1-D conv over rows; the split is the CNN's)")
    args = ap.parse_args(argv)

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
    for _ in range(args.epochs):
        model.train()
        order = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), 64):
            idx = order[i : i + 64]
            # small random shifts: a little augmentation keeps the 1.3k-sample model from memorizing
            xb = torch.roll(xt[idx], shifts=tuple(torch.randint(-1, 2, (2,), generator=g).tolist()), dims=(2, 3))
            loss = F.cross_entropy(model(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        acc = (model(torch.from_numpy(x[test])).argmax(1).numpy() == y[test]).mean()
    args.out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(args.out / weights))
    if args.model == "cnn":  # the split is shared: written once, with the CNN
        np.savez(args.out / "digits_split.npz", test=np.sort(test).astype(np.int16), calibration=cal.astype(np.int16))
    print(f"test accuracy {acc:.4f}; wrote {args.out}")


if __name__ == "__main__":
    main()
