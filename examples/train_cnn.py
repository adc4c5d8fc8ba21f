"""Trains a small convolutional network with minidnn alone.

The data are scikit-learn's bundled 8x8 handwritten digits (1797 images,
shipped inside the package: nothing is downloaded). Every layer's forward
and backward is a minidnn call; the optimizer, SGD with momentum, is a few
lines of NumPy. The split, the initial weights and the batch order all come
from one seed, so a run repeats exactly.

    python examples/train_cnn.py             # minidnn
    python examples/train_cnn.py --torch     # the same network, weights and batches in PyTorch

The network (N, 1, 8, 8) -> 10 logits:

    conv 3x3, 1 -> 16, pad 1, relu      (N, 16, 8, 8)
    max pool 2x2                        (N, 16, 4, 4)
    conv 3x3, 16 -> 32, pad 1, relu     (N, 32, 4, 4)
    average pool 2x2                    (N, 32, 2, 2)
    linear 128 -> 64, relu
    linear 64 -> 10, cross-entropy

tests/test_examples.py imports this file and runs its first steps beside
PyTorch from the same initial weights on the same batches.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import minidnn

# (name, shape) of each parameter, in the order of the layers.
PARAMETER_SHAPES = (
    ("conv1.weight", (16, 1, 3, 3)),
    ("conv1.bias", (16,)),
    ("conv2.weight", (32, 16, 3, 3)),
    ("conv2.bias", (32,)),
    ("fc1.weight", (64, 128)),
    ("fc1.bias", (64,)),
    ("fc2.weight", (10, 64)),
    ("fc2.bias", (10,)),
)
# The fan-in of each layer, which sets the range of its initial weights.
FAN_IN = {"conv1": 1 * 3 * 3, "conv2": 16 * 3 * 3, "fc1": 128, "fc2": 64}

# What each random stream is for: one seed gives the split, the initial
# weights and the batch order, each from its own stream.
SPLIT, INIT, BATCHES = 0, 1, 2


def seeded(purpose: int, seed: int) -> np.random.Generator:
    return np.random.default_rng((purpose, seed))


def load_digits_split(seed: int, test_fraction: float = 0.2):
    """(x_train, y_train, x_test, y_test): the digits as float32
    (N, 1, 8, 8) in [0, 1] and int64 labels, split by a seeded permutation."""
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    x = (images / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = labels.astype(np.int64)
    order = seeded(SPLIT, seed).permutation(len(y))
    n_test = int(round(len(y) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def init_params(seed: int) -> dict[str, np.ndarray]:
    """Uniform in +-1/sqrt(fan_in), weights and biases alike: PyTorch's
    default for Conv2d and Linear, drawn here from a seeded NumPy generator."""
    rng = seeded(INIT, seed)
    params = {}
    for name, shape in PARAMETER_SHAPES:
        bound = 1.0 / np.sqrt(FAN_IN[name.split(".")[0]])
        params[name] = rng.uniform(-bound, bound, size=shape).astype(np.float32)
    return params


def forward(params: dict[str, np.ndarray], x: np.ndarray):
    """(logits, saved): saved holds what the backward needs."""
    a1 = minidnn.conv2d(x, params["conv1.weight"], params["conv1.bias"], padding=1, activation="relu")
    p1, p1_indices = minidnn.max_pool2d(a1, 2, return_indices=True)
    a2 = minidnn.conv2d(p1, params["conv2.weight"], params["conv2.bias"], padding=1, activation="relu")
    p2 = minidnn.avg_pool2d(a2, 2)
    features = p2.reshape(len(x), -1)
    hidden = minidnn.relu(minidnn.linear(features, params["fc1.weight"], params["fc1.bias"]))
    logits = minidnn.linear(hidden, params["fc2.weight"], params["fc2.bias"])
    saved = (x, a1, p1, p1_indices, a2, p2, features, hidden)
    return logits, saved


def loss_and_grads(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray):
    """(mean cross-entropy loss as a float, gradient of each parameter)."""
    logits, (x, a1, p1, p1_indices, a2, p2, features, hidden) = forward(params, x)
    loss = minidnn.cross_entropy(logits, y)
    grads = {}
    g_logits = minidnn.cross_entropy_backward(1.0, logits, y)
    g_hidden, grads["fc2.weight"], grads["fc2.bias"] = minidnn.linear_backward(g_logits, hidden, params["fc2.weight"])
    # relu's output is > 0 exactly where its input is, so the saved outputs
    # stand in for the inputs the backwards take.
    g_hidden = minidnn.relu_backward(g_hidden, hidden)
    g_features, grads["fc1.weight"], grads["fc1.bias"] = minidnn.linear_backward(
        g_hidden, features, params["fc1.weight"]
    )
    g_a2 = minidnn.avg_pool2d_backward(g_features.reshape(p2.shape), a2.shape, 2)
    g_a2 = minidnn.relu_backward(g_a2, a2)
    g_p1, grads["conv2.weight"], grads["conv2.bias"] = minidnn.conv2d_backward(
        g_a2, p1, params["conv2.weight"], padding=1
    )
    g_a1 = minidnn.max_pool2d_backward(g_p1, p1_indices, a1.shape)
    g_a1 = minidnn.relu_backward(g_a1, a1)
    _, grads["conv1.weight"], grads["conv1.bias"] = minidnn.conv2d_backward(g_a1, x, params["conv1.weight"], padding=1)
    return float(loss), grads


def sgd_momentum_step(params, grads, velocity, lr: float, momentum: float) -> None:
    """In place, as torch.optim.SGD (dampening 0, no Nesterov): v = momentum
    * v + g, p -= lr * v, with v starting at 0 (so the first v is g)."""
    for name, p in params.items():
        v = velocity[name]
        v *= momentum
        v += grads[name]
        p -= lr * v


def batch_order(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch's batches: the indices 0..n-1 shuffled, cut into batches
    (the last one shorter when batch_size does not divide n)."""
    order = rng.permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == y))


def minidnn_trainer(params, lr: float, momentum: float):
    """(step, predict) for run_epochs: step(x, y) -> loss trains params in
    place by one SGD step; predict(x) -> logits."""
    velocity = {name: np.zeros_like(p) for name, p in params.items()}

    def step(x, y):
        loss, grads = loss_and_grads(params, x, y)
        sgd_momentum_step(params, grads, velocity, lr, momentum)
        return loss

    return step, lambda x: forward(params, x)[0]


def torch_model(params):
    """The same network in PyTorch (torch.nn), holding copies of params."""
    import torch
    from torch import nn

    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10),
    )
    layers = {"conv1": model[0], "conv2": model[3], "fc1": model[7], "fc2": model[9]}
    with torch.no_grad():
        for name, value in params.items():
            layer, kind = name.split(".")
            getattr(layers[layer], kind).copy_(torch.from_numpy(value))
    return model


def torch_trainer(params, lr: float, momentum: float):
    """minidnn_trainer's (step, predict) in PyTorch: torch.nn layers and
    torch.optim.SGD from copies of the same initial params."""
    import torch

    model = torch_model(params)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)

    def step(x, y):
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    def predict(x):
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    return step, predict


def run_epochs(step, predict, data, epochs: int, batch_size: int, seed: int, log=print) -> list[float]:
    """Trains with step over seeded batches of the training set; logs the
    mean loss and test accuracy of each epoch and returns the accuracies."""
    x_train, y_train, x_test, y_test = data
    rng = seeded(BATCHES, seed)
    accuracies = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        losses = [step(x_train[b], y_train[b]) for b in batch_order(len(y_train), batch_size, rng)]
        accuracies.append(accuracy(predict(x_test), y_test))
        log(f"epoch {epoch:2d}  loss {np.mean(losses):.4f}  test accuracy {accuracies[-1]:.4f}"
            f"  ({time.perf_counter() - start:.2f} s)")
    return accuracies


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch", action="store_true", help="train the same network in PyTorch instead")
    args = parser.parse_args(argv)

    data = load_digits_split(args.seed)
    params = init_params(args.seed)
    print(f"digits: {len(data[1])} training, {len(data[3])} test images; "
          f"{'PyTorch ' + __import__('torch').__version__ if args.torch else 'minidnn ' + minidnn.__version__}")
    trainer = torch_trainer if args.torch else minidnn_trainer
    step, predict = trainer(params, args.lr, args.momentum)
    start = time.perf_counter()
    accuracies = run_epochs(step, predict, data, args.epochs, args.batch_size, args.seed)
    print(f"final test accuracy {accuracies[-1]:.4f} after {args.epochs} epochs, "
          f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
