"""Load a model from disk safely, and write a quantized one back in the same form.

`.pt2` (torch.export) is safe to load. A whole-module `torch.save` file is a pickle: loading it runs
code from the file, so it needs an explicit `trust_pickle=True`. A state dict plus `--factory
pkg.mod:fn` (a function that builds the model) is loaded with `weights_only=True` (no code runs).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import static_batch
from .errors import ModelLoadError, UsageError
from .io import atomic_write
from .model import tie_aliases


@dataclass
class LoadedModel:
    module: nn.Module
    kind: str  # "pt2" | "pickle" | "factory" | "example" | "hf" (a Hugging Face checkpoint directory)
    source: str
    program: object | None = None  # the ExportedProgram for .pt2


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0][:200] if s else type(e).__name__


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"cannot read state dict {str(path)!r} ({_first_line(e)}); "
                             "pass a .safetensors or a torch.save(state_dict) file") from e
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModelLoadError(f"{str(path)!r} does not hold a state dict (name -> tensor)")
    return sd


def _load_state(model: nn.Module, sd: dict[str, torch.Tensor]) -> None:
    """`load_state_dict`, where a tied weight may be stored under one of its names only (as we save it)."""
    aliases = tie_aliases(model)
    sd = {k: v for k, v in sd.items() if not (k in aliases and aliases[k] in sd)}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not (k in aliases and aliases[k] in sd)]
    if missing or unexpected:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise RuntimeError(f"{what} ({len(missing)} missing, {len(unexpected)} unexpected keys)")


def _factory(spec: str) -> nn.Module:
    mod_name, sep, fn_name = spec.partition(":")
    if not sep or not mod_name or not fn_name:
        raise UsageError(f"--factory {spec!r} must look like pkg.module:function")
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as e:
        raise UsageError(f"cannot find factory {spec!r} ({_first_line(e)}); is the module importable?") from e
    if not callable(fn):
        raise UsageError(f"factory {spec!r} is a {type(fn).__name__}, not a function that builds the model")
    need = _required_args(fn)
    if need:
        raise UsageError(f"factory {spec!r} needs argument{'s' if len(need) > 1 else ''} {', '.join(need)}; "
                         "--factory calls it with none: wrap it in a function that fills them in")
    model = fn()
    if not isinstance(model, nn.Module):
        raise UsageError(f"factory {spec!r} returned {type(model).__name__}, not an nn.Module")
    return model


def _quiet_export_load(p: Path):
    """torch.export.load, without the warning and traceback torch logs before raising: the caller turns
    the error into one line."""
    logger, seen = logging.getLogger("torch.export"), []

    class _Keep(logging.Filter):
        def filter(self, record):
            seen.append(record)
            return False

    keep = _Keep()
    logger.addFilter(keep)
    try:
        return torch.export.load(str(p))
    except Exception as e:
        why = [r.exc_info[1] for r in seen if r.exc_info and r.exc_info[1] is not None]
        if why:  # torch's own message only says "check the warnings above"
            raise ModelLoadError(f"cannot read {str(p)!r} as a torch.export archive ({_first_line(why[-1])}); "
                                 "create it with torch.export.save") from e
        raise
    finally:
        logger.removeFilter(keep)


def _required_args(fn) -> list[str]:
    """Parameters without a default, which a no-argument call would not fill."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD,
             inspect.Parameter.KEYWORD_ONLY)
    return [n for n, q in sig.parameters.items() if q.kind in kinds and q.default is inspect.Parameter.empty]


def _check_zip(p: Path) -> None:
    """A `.pt2` is a zip: its CRCs catch flipped bytes that torch would load without a word."""
    try:
        with zipfile.ZipFile(p) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ModelLoadError(f"cannot read {str(p)!r} as a torch.export archive ({_first_line(e)}); "
                             "re-export it with torch.export.save") from e
    except Exception as e:  # noqa: BLE001 - zlib errors on a damaged stream
        raise ModelLoadError(f"{str(p)!r} is corrupt ({_first_line(e)}); re-export or copy it again") from e
    if bad is not None:
        raise ModelLoadError(f"{str(p)!r} is corrupt: {bad!r} fails its checksum; re-export or copy it again")


def _load_program(p: Path):
    from .pytree_types import register_for

    _check_zip(p)
    register_for(p)
    with warnings.catch_warnings():  # torch's own notices about its archive format, not the user's doing
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message=".*should end in .pt2.*")
        return _quiet_export_load(p)  # its logged traceback; our one line says what failed


def load_model(path: str | Path, *, trust_pickle: bool = False, factory: str | None = None) -> LoadedModel:
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"model file {str(p)!r} does not exist")
    if factory:
        model = _factory(factory)
        try:
            _load_state(model, _state_dict(p))
        except RuntimeError as e:
            raise ModelLoadError(f"the state dict in {str(p)!r} does not fit the model from {factory!r} "
                                 f"({_first_line(e)})") from e
        return LoadedModel(model.eval(), "factory", str(p))
    if p.suffix == ".pt2":
        try:
            ep = _load_program(p)  # checks the archive first (`_check_zip`)
        except ModelLoadError:
            raise
        except Exception as e:  # noqa: BLE001
            from .pytree_types import unregistered

            types = unregistered(p)
            if types:
                raise ModelLoadError(f"{str(p)!r} returns {types[0]}, which torch cannot rebuild until that class is "
                                     "registered with torch.utils._pytree; load it from Python after importing its "
                                     "library, or export the model with plain tensor outputs") from e
            raise ModelLoadError(f"cannot read {str(p)!r} as a torch.export archive ({_first_line(e)}); "
                                 "create it with torch.export.save (a model whose outputs are custom "
                                 "classes needs them registered with torch.utils._pytree first)") from e
        gm = ep.module()
        tie_aliases(gm)  # a tied weight loads as two Parameters over one buffer: one, as in the nn.Module
        static_batch.adapt(gm)  # a static-batch export takes any number of rows (padded / chunked)
        return LoadedModel(gm, "pt2", str(p), ep)
    if p.suffix == ".safetensors":
        raise UsageError(f"{str(p)!r} holds only weights; pass --factory pkg.module:function that builds the model")
    if not zipfile.is_zipfile(p):
        raise ModelLoadError(f"{str(p)!r} is not a torch.save or torch.export file (corrupt or wrong type)")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        if not trust_pickle:
            raise ModelLoadError(
                f"{str(p)!r} is a pickled module: loading it runs code from the file. If you trust it, pass "
                "--trust-pickle; or save it with torch.export and pass the .pt2") from e
        try:
            obj = torch.load(p, map_location="cpu", weights_only=False)
        except Exception as e2:  # noqa: BLE001
            raise ModelLoadError(f"cannot load {str(p)!r} ({_first_line(e2)})") from e2
    if isinstance(obj, nn.Module):
        return LoadedModel(obj.eval(), "pickle", str(p))
    if isinstance(obj, dict):
        raise UsageError(f"{str(p)!r} holds a state dict; pass --factory pkg.module:function that builds the model")
    raise ModelLoadError(f"{str(p)!r} holds a {type(obj).__name__}, not a model")


def save_model(loaded: LoadedModel, model: nn.Module, out: str | Path) -> Path:
    """Write `model` (the quantized copy of `loaded.module`) in the form it was loaded from."""
    params = dict(model.named_parameters(remove_duplicate=False))  # every alias of a tied weight
    if loaded.kind == "hf":  # llm: a checkpoint directory in, a checkpoint directory out
        import shutil

        out = Path(out)
        tmp = out.with_name(f".{out.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(str(tmp), safe_serialization=True)
        for f in Path(loaded.source).glob("tokenizer*"):
            shutil.copy2(f, tmp / f.name)
        shutil.rmtree(out, ignore_errors=True)
        tmp.replace(out)
        return out

    def write(tmp: str) -> None:
        if loaded.kind == "pt2":
            from .activations import has_act_nodes, reexport

            ep = reexport(model, loaded.program) if has_act_nodes(model) else loaded.program
            copies: dict[int, nn.Parameter] = {}  # one copy per tensor: tied aliases stay one storage
            for name in list(ep.state_dict):
                if name in params:
                    p = params[name]
                    ep.state_dict[name] = copies.setdefault(
                        id(p), nn.Parameter(p.detach().clone(), requires_grad=False))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                torch.export.save(ep, tmp)
        elif loaded.kind == "pickle":
            torch.save(model, tmp)
        elif Path(out).suffix == ".safetensors":
            from safetensors.torch import save_file

            aliases = tie_aliases(model)  # safetensors refuses shared tensors: a tied weight is stored once
            save_file({k: v.detach().contiguous() for k, v in model.state_dict().items() if k not in aliases}, tmp)
        else:
            torch.save(model.state_dict(), tmp)

    return atomic_write(out, write)  # temp keeps the suffix (torch stays quiet), removed on failure
