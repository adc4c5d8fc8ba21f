"""Trains a character-level LSTM language model with minidnn alone.

The text is the help topics that ship with Python itself
(`pydoc_data.topics`, about 465,000 characters of English and code):
nothing is downloaded. Every layer's forward and backward is a minidnn
call; the optimizer, Adam, is a few lines of NumPy. The initial weights and
the text's split all come from one seed, so a run repeats exactly.

    python examples/train_char_lstm.py            # minidnn
    python examples/train_char_lstm.py --torch    # the same model, weights and batches in PyTorch

The model, per time step, over a vocabulary of V characters:

    one-hot character (V)  ->  LSTM, H hidden units  ->  linear H -> V  ->  cross-entropy with the next character

Training is truncated backpropagation through time: the text is cut into
`batch` parallel streams, each step reads the next `steps` characters of
every stream, and the LSTM's state carries from one step to the next (with
no gradient across steps). It prints the training loss, the validation
loss on the held-out end of the text, and a sample generated from the
model, against the unigram entropy of the text: the loss of a model that
knows only how often each character occurs.

tests/test_examples.py imports this file and runs its first steps beside
PyTorch from the same initial weights on the same batches.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import minidnn


def load_text(validation_fraction: float = 0.05):
    """(train ids, validation ids, vocabulary): the help topics as int64
    character ids, the last validation_fraction held out."""
    from pydoc_data.topics import topics

    text = "\n".join(topics[name] for name in sorted(topics))
    vocabulary = sorted(set(text))
    index = {ch: i for i, ch in enumerate(vocabulary)}
    ids = np.fromiter((index[ch] for ch in text), dtype=np.int64, count=len(text))
    split = int(len(ids) * (1 - validation_fraction))
    return ids[:split], ids[split:], vocabulary


def unigram_entropy(ids: np.ndarray, vocab_size: int) -> float:
    """The entropy, in nats, of the characters' frequencies."""
    p = np.bincount(ids, minlength=vocab_size) / len(ids)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def init_params(vocab_size: int, hidden: int, seed: int) -> dict[str, np.ndarray]:
    """Uniform in +-1/sqrt(hidden) for the LSTM (torch.nn.LSTM's default)
    and +-1/sqrt(fan_in) for the projection (torch.nn.Linear's)."""
    rng = np.random.default_rng(seed)
    shapes = {
        "w_ih": ((4 * hidden, vocab_size), hidden),
        "w_hh": ((4 * hidden, hidden), hidden),
        "b_ih": ((4 * hidden,), hidden),
        "b_hh": ((4 * hidden,), hidden),
        "proj.weight": ((vocab_size, hidden), hidden),
        "proj.bias": ((vocab_size,), hidden),
    }
    return {
        name: rng.uniform(-1 / np.sqrt(fan), 1 / np.sqrt(fan), size=shape).astype(np.float32)
        for name, (shape, fan) in shapes.items()
    }


def one_hot(ids: np.ndarray, vocab_size: int) -> np.ndarray:
    out = np.zeros(ids.shape + (vocab_size,), dtype=np.float32)
    np.put_along_axis(out, ids[..., None], 1.0, axis=-1)
    return out


def batches(ids: np.ndarray, batch: int, steps: int):
    """Yields (inputs, targets), both (steps, batch) int64: `batch` streams,
    each a contiguous stretch of the text, read `steps` characters at a
    time; the targets are the inputs shifted by one character."""
    stream_len = (len(ids) - 1) // batch
    streams = ids[: stream_len * batch + 1]
    starts = np.arange(batch) * stream_len
    for t0 in range(0, stream_len - steps + 1, steps):
        cols = starts[None, :] + t0 + np.arange(steps)[:, None]
        yield streams[cols], streams[cols + 1]


def lstm_params(params):
    return [(params["w_ih"], params["w_hh"], params["b_ih"], params["b_hh"])]


def loss_and_grads(params, inputs, targets, state):
    """(mean cross-entropy over the batch's characters, gradient of each
    parameter, the LSTM state after the batch)."""
    steps, batch = inputs.shape
    vocab_size, hidden = params["proj.weight"].shape
    x = one_hot(inputs, vocab_size)
    y, h_n, c_n, cache = minidnn.lstm(x, lstm_params(params), *state, return_cache=True)
    features = y.reshape(steps * batch, hidden)
    logits = minidnn.linear(features, params["proj.weight"], params["proj.bias"])
    flat_targets = targets.reshape(-1)
    loss = minidnn.cross_entropy(logits, flat_targets)
    grads = {}
    g_logits = minidnn.cross_entropy_backward(1.0, logits, flat_targets)
    g_features, grads["proj.weight"], grads["proj.bias"] = minidnn.linear_backward(
        g_logits, features, params["proj.weight"]
    )
    _, grad_params, _, _ = minidnn.lstm_backward(cache, g_features.reshape(steps, batch, hidden))
    grads["w_ih"], grads["w_hh"], grads["b_ih"], grads["b_hh"] = grad_params[0]
    return float(loss), grads, (h_n, c_n)


class Adam:
    """torch.optim.Adam's update (no weight decay, no amsgrad), in place."""

    def __init__(self, params, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps
        self.m = {name: np.zeros_like(p) for name, p in params.items()}
        self.v = {name: np.zeros_like(p) for name, p in params.items()}
        self.t = 0

    def step(self, params, grads) -> None:
        self.t += 1
        correction1 = 1 - self.beta1**self.t
        correction2 = 1 - self.beta2**self.t
        for name, p in params.items():
            g, m, v = grads[name], self.m[name], self.v[name]
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * g * g
            denom = np.sqrt(v) / np.sqrt(correction2) + self.eps
            p -= (self.lr / correction1) * m / denom


def minidnn_trainer(params, lr: float, batch: int):
    """(step, evaluate, sample): step(inputs, targets) -> loss trains
    params in place by one Adam step, carrying the LSTM state; evaluate(ids)
    -> mean loss; sample(start, length, rng) -> ids."""
    hidden = params["w_hh"].shape[1]
    vocab_size = params["proj.weight"].shape[0]
    optimizer = Adam(params, lr)
    state = [np.zeros((1, batch, hidden), np.float32) for _ in range(2)]

    def step(inputs, targets):
        loss, grads, new_state = loss_and_grads(params, inputs, targets, state)
        state[:] = new_state
        optimizer.step(params, grads)
        return loss

    def evaluate(ids):
        x = one_hot(ids[:-1, None], vocab_size)
        y, _, _ = minidnn.lstm(x, lstm_params(params))
        logits = minidnn.linear(y.reshape(len(ids) - 1, hidden), params["proj.weight"], params["proj.bias"])
        return float(minidnn.cross_entropy(logits, ids[1:]))

    def sample(start, length, rng):
        h = c = np.zeros((1, hidden), np.float32)
        ids = [start]
        for _ in range(length):
            x = one_hot(np.array([ids[-1]]), vocab_size)
            h, c = minidnn.lstm_cell(x, h, c, *lstm_params(params)[0])
            p = minidnn.softmax(minidnn.linear(h, params["proj.weight"], params["proj.bias"]))[0].astype(np.float64)
            ids.append(int(rng.choice(vocab_size, p=p / p.sum())))
        return ids

    return step, evaluate, sample


def torch_trainer(params, lr: float, batch: int):
    """(step, evaluate) of minidnn_trainer in PyTorch: torch.nn.LSTM and
    Linear holding copies of the same initial params, torch.optim.Adam."""
    import torch

    vocab_size, hidden = params["proj.weight"].shape
    lstm = torch.nn.LSTM(vocab_size, hidden)
    proj = torch.nn.Linear(hidden, vocab_size)
    with torch.no_grad():
        for ours, theirs in (("w_ih", lstm.weight_ih_l0), ("w_hh", lstm.weight_hh_l0), ("b_ih", lstm.bias_ih_l0),
                             ("b_hh", lstm.bias_hh_l0), ("proj.weight", proj.weight), ("proj.bias", proj.bias)):
            theirs.copy_(torch.from_numpy(params[ours]))
    optimizer = torch.optim.Adam([*lstm.parameters(), *proj.parameters()], lr=lr)
    state = [torch.zeros(1, batch, hidden) for _ in range(2)]

    def evaluate(ids):
        with torch.no_grad():
            y, _ = lstm(torch.from_numpy(one_hot(ids[:-1, None], vocab_size)))
            return torch.nn.functional.cross_entropy(proj(y.reshape(-1, hidden)), torch.from_numpy(ids[1:])).item()

    def step(inputs, targets):
        y, new_state = lstm(torch.from_numpy(one_hot(inputs, vocab_size)), tuple(state))
        logits = proj(y.reshape(-1, hidden))
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(targets.reshape(-1)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        state[:] = [s.detach() for s in new_state]
        return loss.item()

    return step, evaluate


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--steps", type=int, default=64, help="characters per stream per training step")
    parser.add_argument("--batch", type=int, default=32, help="parallel streams")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch", action="store_true", help="train the same model in PyTorch instead")
    args = parser.parse_args(argv)

    train, validation, vocabulary = load_text()
    params = init_params(len(vocabulary), args.hidden, args.seed)
    print(f"text: {len(train)} training, {len(validation)} validation characters, {len(vocabulary)} distinct; "
          f"unigram entropy {unigram_entropy(train, len(vocabulary)):.3f} nats")
    if args.torch:
        (step, evaluate), sample = torch_trainer(params, args.lr, args.batch), None
    else:
        step, evaluate, sample = minidnn_trainer(params, args.lr, args.batch)
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        losses = []
        for i, (inputs, targets) in enumerate(batches(train, args.batch, args.steps), 1):
            losses.append(step(inputs, targets))
            if i % 50 == 0:
                print(f"epoch {epoch} step {i:4d}  loss {np.mean(losses[-50:]):.3f}  ({time.perf_counter() - start:.1f} s)")
        print(f"epoch {epoch}: validation loss {evaluate(validation):.3f} nats per character")
    if sample is not None:
        ids = sample(vocabulary.index("T"), 300, np.random.default_rng(args.seed))
        print("sample:\n" + "".join(vocabulary[i] for i in ids))
    print(f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
