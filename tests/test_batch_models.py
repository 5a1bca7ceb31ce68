"""Batch invariance on real models: an MLP, a CNN, an attention LM, GPT-2 from a config, and their traps."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import full_state

torch = pytest.importorskip("torch")
nn = torch.nn

from deterministic import batch_divergence, deterministic, seeded

pytestmark = pytest.mark.torch

SIZES = (1, 3, 8, 17)


@seeded(0)
def build(factory: Callable[[], Any]) -> Any:
    """Build a model from the same seeded stream every time, leaving the global generator alone."""
    return factory()


def make(*shape: int, seed: int = 0) -> Any:
    """A seeded random tensor, drawn without touching the global generator."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def tokens(*shape: int, vocab: int, seed: int = 0) -> Any:
    """Seeded token ids."""
    return torch.randint(vocab, shape, generator=torch.Generator().manual_seed(seed))


def line_of(text: str) -> str:
    """``test_batch_models.py:N`` for the line holding ``text``."""
    for number, line in enumerate(Path(__file__).read_text().splitlines(), start=1):
        if text in line:
            return f"test_batch_models.py:{number}"
    raise AssertionError(text)


class MLP(nn.Module):
    """Two layers, as in a classifier head."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(48, 128)
        self.head = nn.Linear(128, 10)

    def forward(self, x: Any) -> Any:
        h = torch.relu(self.hidden(x))  # MLP hidden
        return self.head(h)


class CNN(nn.Module):
    """Conv, batch norm, pooling and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.norm = nn.BatchNorm2d(16)
        self.head = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: Any) -> Any:
        h = self.conv(x)  # CNN conv
        h = self.norm(h)
        h = nn.functional.adaptive_avg_pool2d(torch.relu(h), 4)
        return self.head(h.flatten(1))


class OneHeadLM(nn.Module):
    """A one-head causal attention LM from linear, baddbmm, softmax, bmm and matmul."""

    def __init__(self, vocab: int = 61, width: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, vocab)

    def forward(self, ids: Any) -> Any:
        h = self.embed(ids)
        q, k, v = self.qkv(h).chunk(3, dim=-1)  # LM qkv
        length = ids.shape[1]
        mask = torch.full((length, length), float("-inf")).triu(1).expand(ids.shape[0], length, length)
        scores = torch.baddbmm(mask, q, k.transpose(1, 2), alpha=1 / math.sqrt(q.shape[-1]))
        context = torch.bmm(torch.softmax(scores, dim=-1), v)
        return torch.matmul(context, self.out.weight.t()) + self.out.bias


def gpt2(attention: str = "eager") -> Any:
    """A 2-layer GPT-2 from a config, randomly initialised (no download)."""
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(
        n_layer=2,
        n_head=2,
        n_embd=64,
        vocab_size=101,
        n_positions=32,
        bos_token_id=0,
        eos_token_id=0,
        attn_implementation=attention,
    )
    return build(lambda: transformers.GPT2LMHeadModel(config)).eval()


CASES: dict[str, tuple[Callable[[], Any], Callable[[int], Any], str, str]] = {
    # name: (model, batch of B rows, module of the first divergence, its line or file)
    "mlp": (lambda: build(MLP).eval(), lambda b: make(b, 48), "MLP.hidden", line_of("# MLP hidden")),
    "cnn": (lambda: build(CNN).eval(), lambda b: make(b, 3, 8, 8), "CNN.conv", line_of("# CNN conv")),
    "lm": (
        lambda: build(OneHeadLM).eval(),
        lambda b: tokens(b, 10, vocab=61),
        "OneHeadLM.qkv",
        line_of("# LM qkv"),
    ),
    "gpt2": (
        gpt2,
        lambda b: tokens(b, 10, vocab=101),
        "GPT2LMHeadModel.transformer.h.0.attn.c_attn",
        "transformers/pytorch_utils.py:",
    ),
}


def logits(model: Any, batch: Any) -> Any:
    """The model's logits (a transformers output's ``.logits``)."""
    with torch.no_grad():
        output = model(batch)
    return getattr(output, "logits", output)


@pytest.mark.parametrize("name", sorted(CASES))
def test_model_shows_a_batch_variant_op_at_its_module_and_line(name: str) -> None:
    """Without the flag each model's first divergence is a batch-variant-op at the right module and line."""
    factory, batch, module, where = CASES[name]
    model = factory()
    before = full_state()
    found = batch_divergence(lambda x: logits(model, x), batch(8))
    assert full_state() == before
    assert found is not None, f"{name}: no divergence"
    assert (found.kind, found.module, found.phase) == ("batch-variant-op", module, "forward"), str(found)
    assert where in found.location, str(found)


@pytest.mark.parametrize("name", sorted(CASES))
def test_model_under_the_flag_has_no_divergence_and_identical_logits(name: str) -> None:
    """With the flag no row diverges, and each row's logits are bit-identical at B = 1, 3, 8 and 17."""
    factory, batch, _, _ = CASES[name]
    model = factory()
    inputs = batch(17)
    before = full_state()
    with deterministic(0, batch_invariant=True):
        assert batch_divergence(lambda x: logits(model, x), inputs[:8]) is None
        results = {size: logits(model, inputs[:size].clone()) for size in SIZES}
    assert full_state() == before
    for size in SIZES:
        assert torch.equal(results[size], results[17][:size]), f"{name}: B={size}"
    plain = logits(model, inputs)
    assert not torch.equal(plain, results[17]) or name == "cnn"  # the flag really changed the kernels
    torch.testing.assert_close(plain, results[17], rtol=1e-4, atol=1e-5)


class NormFirst(nn.Module):
    """Batch norm on the input, then a convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(3)
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x: Any) -> Any:
        return self.conv(self.norm(x))  # NormFirst norm


@pytest.mark.parametrize("flag", [None, True])
def test_batch_norm_in_training_mode_is_cross_row(flag: bool | None) -> None:
    """Batch norm in training mode makes each row depend on the others: cross-row at its line, flag or not."""
    model = build(NormFirst).train()
    stats = [buffer.clone() for buffer in model.buffers()]
    with deterministic(0, batch_invariant=flag):
        found = batch_divergence(model, make(6, 3, 8, 8), rows=[0, 3])
    assert found is not None
    assert (found.kind, found.module, found.phase) == ("cross-row", "NormFirst.norm", "forward")
    assert found.location.endswith(line_of("# NormFirst norm")), str(found)
    assert all(
        torch.equal(a, b) for a, b in zip(stats, model.buffers(), strict=True)
    )  # running stats put back
    # In the CNN, the convolution before its norm is found first without the flag; with it, the norm.
    cnn = build(CNN).train()
    with deterministic(0, batch_invariant=flag):
        found = batch_divergence(cnn, make(6, 3, 8, 8), rows=[0])
    assert found is not None
    expected = ("cross-row", "CNN.norm") if flag else ("batch-variant-op", "CNN.conv")
    assert (found.kind, found.module) == expected


class TimeMajor(nn.Module):
    """A word_language_model-style decoder over time-major ``(T, B)`` token ids."""

    def __init__(self, vocab: int = 53, width: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.mix = nn.Linear(width, width)
        self.decoder = nn.Linear(width, vocab)

    def forward(self, ids: Any) -> Any:
        h = torch.tanh(self.mix(self.embed(ids)))  # time-major mix
        return self.decoder(h)


def test_time_major_inputs_with_dim_1() -> None:
    """Time-major (T, B) inputs are sliced along dim=1 and merged (T*B, C) rows compared per row."""
    model = build(TimeMajor).eval()
    ids = tokens(9, 6, vocab=53)
    found = batch_divergence(model, ids, dim=1)
    assert found is not None and (found.kind, found.op, found.module) == (
        "batch-variant-op",
        "aten::addmm",
        "TimeMajor.mix",
    )
    with deterministic(0, batch_invariant=True):
        assert batch_divergence(model, ids, dim=1) is None


def test_an_lstm_is_reported_and_is_not_covered() -> None:
    """nn.LSTM's fused CPU kernel varies with the batch size: reported, and not covered by the flag."""
    model = build(lambda: nn.LSTM(32, 32))
    x = make(7, 5, 32)
    found = batch_divergence(lambda x: model(x)[0], x, dim=1)
    assert found is not None and (found.kind, found.op) == ("batch-variant-op", "aten::mkldnn_rnn_layer")
    assert "does not cover mkldnn_rnn_layer" in str(found)


class MixingBackward(torch.autograd.Function):
    """The identity forward; a backward that adds the batch's mean gradient to every row."""

    @staticmethod
    def forward(ctx: Any, x: Any) -> Any:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Any) -> Any:
        return grad + grad.mean(0, keepdim=True)  # the mixing line


def test_a_custom_backward_that_mixes_rows_is_cross_row_in_backward() -> None:
    """A backward that averages over the batch is cross-row, in the backward phase, at the mixing line."""
    model = build(MLP).eval()

    def input_gradient(x: Any) -> Any:
        x = x.detach().requires_grad_()
        out = MixingBackward.apply(model(x))
        (gradient,) = torch.autograd.grad(out, x, grad_outputs=out.detach())
        return gradient

    with deterministic(0, batch_invariant=True):
        found = batch_divergence(input_gradient, make(8, 48))
    assert found is not None
    assert (found.kind, found.op, found.phase) == ("cross-row", "aten::mean.dim", "backward")
    assert found.location.endswith(line_of("# the mixing line"))


def test_gpt2_with_sdpa_attention() -> None:
    """GPT-2 with its default SDPA attention: no divergence under the flag either (a per-entry kernel)."""
    model = gpt2("sdpa")
    ids = tokens(17, 10, vocab=101)
    with deterministic(0, batch_invariant=True):
        assert batch_divergence(lambda x: logits(model, x), ids[:8]) is None
        assert torch.equal(logits(model, ids[:3].clone()), logits(model, ids)[:3])
