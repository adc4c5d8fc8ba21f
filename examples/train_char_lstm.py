"""A character-level LSTM language model trained with minidnn alone.

The text is the docstrings of a few standard-library modules (it ships with
Python; nothing is downloaded). Characters enter the LSTM as one-hot vectors
(the embedding is then the LSTM's own W_ih), a `linear` projection gives the
next character's logits, `cross_entropy` the loss; the backward runs
cross_entropy_backward, linear_backward and lstm_backward (through time),
and Adam, written in NumPy, updates the weights. It prints the loss against
the text's unigram entropy (what a model that ignores context achieves) and
a sample generated one step at a time with lstm_cell.

    python examples/train_char_lstm.py [--steps 400] [--seed 0]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import inspect
import itertools
import json
import logging
import os
import pathlib
import re
import string
import textwrap
import typing
import unittest

import numpy as np

import minidnn

SOURCES = [argparse, collections, dataclasses, functools, inspect, itertools, json, logging, os, pathlib, re,
           string, textwrap, typing, unittest]


def load_text() -> str:
    return "\n".join(m.__doc__ or "" for m in SOURCES)


@dataclasses.dataclass
class Config:
    hidden: int = 128
    steps_per_sequence: int = 32  # T: backpropagation through time over this many characters
    batch: int = 32
    learning_rate: float = 3e-3
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8


def init_params(rng: np.random.Generator, vocab: int, hidden: int) -> dict:
    """PyTorch's initialization: uniform in +-1/sqrt(H) for the LSTM, +-1/sqrt(fan-in) for the projection."""
    k = 1.0 / np.sqrt(hidden)
    u = lambda *shape: rng.uniform(-k, k, shape).astype(np.float32)  # noqa: E731
    return {"w_ih": u(4 * hidden, vocab), "w_hh": u(4 * hidden, hidden), "b_ih": u(4 * hidden),
            "b_hh": u(4 * hidden), "w_out": u(vocab, hidden), "b_out": u(vocab)}


def one_hot(indices: np.ndarray, vocab: int) -> np.ndarray:
    out = np.zeros(indices.shape + (vocab,), np.float32)
    np.put_along_axis(out, indices[..., None], 1.0, axis=-1)
    return out


def batch_at(data: np.ndarray, starts: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and next-character targets, (T, N) each, of the sequences starting at `starts`."""
    index = starts[None, :] + np.arange(steps)[:, None]
    return data[index], data[index + 1]


def loss_and_grads(params: dict, inputs: np.ndarray, targets: np.ndarray, vocab: int) -> tuple[float, dict]:
    """The mean cross-entropy of the next character over a (T, N) batch and its gradients."""
    steps, batch = inputs.shape
    x = one_hot(inputs, vocab)
    lstm_params = [(params["w_ih"], params["w_hh"], params["b_ih"], params["b_hh"])]
    y, _, _, cache = minidnn.lstm(x, lstm_params, return_cache=True)
    features = y.reshape(steps * batch, -1)
    logits = minidnn.linear(features, params["w_out"], params["b_out"])
    flat_targets = targets.reshape(-1).astype(np.int64)
    loss = minidnn.cross_entropy(logits, flat_targets)
    grad_logits = minidnn.cross_entropy_backward(np.float32(1.0), logits, flat_targets)
    grad_features, grad_w_out, grad_b_out = minidnn.linear_backward(grad_logits, features, params["w_out"])
    _, grad_lstm, _, _ = minidnn.lstm_backward(cache, grad_features.reshape(y.shape))
    grads = dict(zip(("w_ih", "w_hh", "b_ih", "b_hh"), grad_lstm[0]))
    grads.update(w_out=grad_w_out, b_out=grad_b_out)
    return float(loss), grads


class Adam:
    """Adam (Kingma and Ba) as torch.optim.Adam computes it."""

    def __init__(self, params: dict, lr: float, betas: tuple, eps: float):
        self.lr, self.betas, self.eps, self.t = lr, betas, eps, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, params: dict, grads: dict) -> None:
        self.t += 1
        b1, b2 = self.betas
        for k, g in grads.items():
            self.m[k] = b1 * self.m[k] + (1 - b1) * g
            self.v[k] = b2 * self.v[k] + (1 - b2) * g * g
            m_hat = self.m[k] / (1 - b1**self.t)
            denom = np.sqrt(self.v[k]) / np.sqrt(1 - b2**self.t) + self.eps
            params[k] -= (self.lr * m_hat / denom).astype(np.float32)


def unigram_entropy(data: np.ndarray, vocab: int) -> float:
    """The entropy of the character frequencies, in nats."""
    p = np.bincount(data, minlength=vocab) / data.size
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def sample(params: dict, chars: str, first: str, length: int, rng: np.random.Generator,
           temperature: float = 0.7) -> str:
    vocab, hidden = len(chars), params["w_hh"].shape[1]
    h = np.zeros((1, hidden), np.float32)
    c = np.zeros((1, hidden), np.float32)
    index, out = chars.index(first), [first]
    for _ in range(length):
        x = one_hot(np.array([index]), vocab)
        h, c = minidnn.lstm_cell(x, h, c, params["w_ih"], params["w_hh"], params["b_ih"], params["b_hh"])
        logits = minidnn.linear(h, params["w_out"], params["b_out"])[0].astype(np.float64) / temperature
        p = np.exp(logits - logits.max())
        index = int(rng.choice(vocab, p=p / p.sum()))
        out.append(chars[index])
    return "".join(out)


def train(steps: int, seed: int = 0, config: Config = Config(), log=print) -> tuple[dict, list[float]]:
    """Trains for `steps` batches; returns the weights and every step's loss."""
    text = load_text()
    chars = "".join(sorted(set(text)))
    data = np.array([chars.index(ch) for ch in text], np.int64)
    rng = np.random.default_rng(seed)
    params = init_params(rng, len(chars), config.hidden)
    adam = Adam(params, config.learning_rate, config.betas, config.eps)
    losses = []
    for step in range(steps):
        starts = rng.integers(0, data.size - config.steps_per_sequence - 1, config.batch)
        loss, grads = loss_and_grads(params, *batch_at(data, starts, config.steps_per_sequence), len(chars))
        adam.step(params, grads)
        losses.append(loss)
        if log and (step % 50 == 0 or step == steps - 1):
            log(f"step {step:4d}  loss {loss:.3f} nats/char")
    return params, losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    text = load_text()
    chars = "".join(sorted(set(text)))
    data = np.array([chars.index(ch) for ch in text], np.int64)
    print(f"text: {len(text)} characters, {len(chars)} distinct; "
          f"unigram entropy {unigram_entropy(data, len(chars)):.3f} nats/char")
    params, losses = train(args.steps, args.seed)
    print(f"mean loss of the last 20 steps: {np.mean(losses[-20:]):.3f} nats/char")
    print("sample:")
    print(sample(params, chars, "T", 300, np.random.default_rng(args.seed)))


if __name__ == "__main__":
    main()
