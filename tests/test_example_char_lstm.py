"""examples/train_char_lstm.py: its first Adam steps beside PyTorch from the
same initial weights on the same batches, and that it learns."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import import_example

HIDDEN, BATCH, STEPS, LR = 48, 8, 24, 3e-3


@pytest.fixture(scope="module")
def example():
    return import_example("train_char_lstm")


@pytest.fixture(scope="module")
def text(example):
    return example.load_text()


def _copy(params):
    return {name: p.copy() for name, p in params.items()}


def test_first_steps_match_torch(example, text, isa, threads):
    """The loss of each of the first steps agrees with PyTorch's to 1e-4:
    after the first, each loss depends on the LSTM's backward through time,
    the projection's and the loss's backwards, the state carried between
    steps, and Adam. The validation loss of the trained models agrees too."""
    pytest.importorskip("torch")
    train, validation, vocabulary = text
    initial = example.init_params(len(vocabulary), HIDDEN, seed=0)
    batches = [b for _, b in zip(range(6), example.batches(train, BATCH, STEPS))]

    step, evaluate, _ = example.minidnn_trainer(_copy(initial), LR, BATCH)
    before = evaluate(validation[:500])
    losses = [step(x, y) for x, y in batches]
    torch_step, torch_evaluate = example.torch_trainer(_copy(initial), LR, BATCH)
    torch_losses = [torch_step(x, y) for x, y in batches]

    np.testing.assert_allclose(losses, torch_losses, rtol=1e-4)
    after = evaluate(validation[:500])
    np.testing.assert_allclose(after, torch_evaluate(validation[:500]), rtol=1e-4)
    # Six Adam steps move the loss, so the agreement is not only that of the
    # initial weights with themselves.
    assert before - after > 0.01


def test_learns_below_unigram_entropy(example, text):
    """80 steps take the validation loss from about log(V) to well below
    the text's unigram entropy (the loss of a model that knows only how
    often each character occurs), and the sample is made of the text's
    characters."""
    train, validation, vocabulary = text
    entropy = example.unigram_entropy(train, len(vocabulary))
    params = example.init_params(len(vocabulary), 64, seed=0)
    step, evaluate, sample = example.minidnn_trainer(params, 1e-2, 32)
    before = evaluate(validation[:2000])
    assert before > 0.9 * np.log(len(vocabulary))
    for _, (x, y) in zip(range(80), example.batches(train, 32, 24)):
        step(x, y)
    after = evaluate(validation[:2000])
    assert after < entropy - 0.5, (before, after, entropy)
    ids = sample(vocabulary.index("T"), 50, np.random.default_rng(0))
    assert len(ids) == 51 and all(0 <= i < len(vocabulary) for i in ids)


def test_batches_are_shifted_streams(example):
    ids = np.arange(103, dtype=np.int64)
    batches = list(example.batches(ids, batch=4, steps=5))
    # (103 - 1) // 4 = 25 characters per stream: 5 steps of 5.
    assert len(batches) == 5
    inputs, targets = batches[1]
    assert inputs.shape == targets.shape == (5, 4)
    np.testing.assert_array_equal(inputs[:, 2], np.arange(55, 60))
    np.testing.assert_array_equal(targets, inputs + 1)
