"""(a) Every zoo model's sites, as a module and as a `.pt2` (static and dynamic batch), equal an
independent count from its exported graph: every weight (≥ 2-D parameter) that feeds a linear, conv,
embedding or matmul op through view-like ops, with a tensor shared by two names one site under the
nn.Module's name. Weights no op of those kinds uses (LSTM's) are named by the coverage report."""

from __future__ import annotations

import pytest
import torch

import mpsearch
from mpsearch.coverage import unquantized

from .conftest import FORMS, model_in
from .models import NAMES

_OPS = {"linear", "conv1d", "conv2d", "conv3d", "convolution", "embedding", "addmm", "mm", "bmm", "matmul",
        "einsum", "baddbmm", "_grouped_mm"}
_THROUGH = {"t", "transpose", "permute", "view", "reshape", "_unsafe_view", "expand", "select", "index", "slice",
            "unsqueeze", "squeeze", "contiguous", "clone", "_to_copy", "to", "alias", "getitem", "split",
            "split_with_sizes", "unbind", "chunk", "detach", "numpy_T", "mT"}


def _name(target) -> str:
    return getattr(target, "__name__", str(target)).split(".")[0]


def graph_weights(ep) -> set[str]:
    """Canonical FQNs of the parameters that feed a matmul-like op in the lifted exported graph."""
    sig = ep.graph_signature
    canon, first = {}, {}
    for fqn in sig.parameters:
        t = ep.state_dict[fqn]
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()))
        canon[fqn] = first.setdefault(key, fqn)
    param_of = {n: sig.inputs_to_parameters[n] for n in sig.inputs_to_parameters}

    def sources(node, seen):
        if not isinstance(node, torch.fx.Node) or node in seen:
            return
        seen.add(node)
        if node.op == "placeholder" and node.name in param_of:
            yield param_of[node.name]
        elif node.op == "call_function" and _name(node.target) in _THROUGH:
            for a in node.all_input_nodes:
                yield from sources(a, seen)

    found = set()
    for node in ep.graph.nodes:
        if node.op == "call_function" and _name(node.target) in _OPS:
            for a in node.all_input_nodes:
                found |= {canon[p] for p in sources(a, set()) if ep.state_dict[p].dim() >= 2}
    return found


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", NAMES)
def test_sites_equal_the_exported_graphs_weights(zoo, name, form):
    entry = zoo(name)
    expected = graph_weights(entry.programs["static"])
    assert expected == graph_weights(entry.programs["dynamic"])
    model = model_in(entry, form)
    got = mpsearch.sites(model, entry.zoo.x)
    assert [s.param for s in got if s.param in expected] == [s.param for s in got]  # no extra site
    assert {s.param for s in got} == expected
    assert len(got) == len({s.param for s in got})  # a shared tensor is one site
    assert mpsearch.fingerprint(model) == mpsearch.fingerprint(entry.zoo.model)
    if entry.zoo.tied:
        canon, *aliases = entry.zoo.tied
        assert canon in expected and not set(aliases) & {s.param for s in got}
    _, largest = unquantized(model, got, top=50)
    for weight in entry.zoo.unsupported:  # not a site: stated as 16-bit by every plan
        assert weight in {r["name"] for r in largest}
