"""examples/train_cnn.py: its first SGD steps beside PyTorch from the same
initial weights on the same batches, and that it trains."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_close, import_example

STEPS = 8
BATCH_SIZE = 32
LR, MOMENTUM = 0.1, 0.9


@pytest.fixture(scope="module")
def train_cnn():
    pytest.importorskip("sklearn")
    return import_example("train_cnn")


@pytest.fixture(scope="module")
def data(train_cnn):
    return train_cnn.load_digits_split(seed=0)


def _first_batches(train_cnn, data):
    x_train, y_train = data[0], data[1]
    batches = train_cnn.batch_order(len(y_train), BATCH_SIZE, train_cnn.seeded(train_cnn.BATCHES, 0))[:STEPS]
    return [(x_train[b], y_train[b]) for b in batches]


def _copy(params):
    return {name: p.copy() for name, p in params.items()}


def test_first_steps_match_torch(train_cnn, data, isa, threads):
    """The loss of each of the first steps agrees with PyTorch's to 1e-4:
    after the first, each loss depends on every backward and on the
    optimizer. The logits of the trained networks on the test set, which
    depend on every weight, agree as well."""
    pytest.importorskip("torch")
    initial = train_cnn.init_params(seed=0)
    batches = _first_batches(train_cnn, data)

    params = _copy(initial)
    step, predict = train_cnn.minidnn_trainer(params, LR, MOMENTUM)
    initial_logits = predict(data[2])
    losses = [step(x, y) for x, y in batches]
    torch_step, torch_predict = train_cnn.torch_trainer(_copy(initial), LR, MOMENTUM)
    torch_losses = [torch_step(x, y) for x, y in batches]

    np.testing.assert_allclose(losses, torch_losses, rtol=1e-4)
    logits = predict(data[2])
    assert_close(logits, torch_predict(data[2]), tol=1e-4)
    # The steps move the logits well away from where they started, so the
    # agreement is not that of the initial weights with themselves.
    assert np.linalg.norm(logits - initial_logits) > 0.1 * np.linalg.norm(initial_logits)


def test_trains(train_cnn, data):
    """Five epochs take the test accuracy from chance to above 90%."""
    params = train_cnn.init_params(seed=0)
    step, predict = train_cnn.minidnn_trainer(params, LR, MOMENTUM)
    before = train_cnn.accuracy(predict(data[2]), data[3])
    log = []
    accuracies = train_cnn.run_epochs(step, predict, data, epochs=5, batch_size=BATCH_SIZE, seed=0, log=log.append)
    assert before < 0.2
    assert accuracies[-1] > 0.9, log
    assert len(log) == 5 and all("test accuracy" in line for line in log)


def test_split_and_init_are_seeded(train_cnn, data):
    again = train_cnn.load_digits_split(seed=0)
    for a, b in zip(data, again):
        np.testing.assert_array_equal(a, b)
    x_train, y_train, x_test, y_test = data
    assert x_train.shape[1:] == (1, 8, 8) and x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert len(y_train) + len(y_test) == 1797
    other = train_cnn.load_digits_split(seed=1)
    assert not np.array_equal(other[1], y_train)
    a, b = train_cnn.init_params(seed=0), train_cnn.init_params(seed=0)
    assert all(np.array_equal(a[n], b[n]) for n in a)
