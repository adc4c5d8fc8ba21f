"""examples/train_char_lstm.py: its first training steps beside the same
model in PyTorch (torch.nn.LSTM, torch.nn.Linear, cross_entropy and
torch.optim.Adam) from the same weights and batches: the losses agree."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "train_char_lstm.py"


def _example():
    spec = importlib.util.spec_from_file_location("train_char_lstm", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_first_steps_match_pytorch():
    torch = pytest.importorskip("torch")
    ex = _example()
    steps, seed, config = 6, 3, ex.Config()
    _, ours = ex.train(steps, seed, config, log=None)

    # The same run in PyTorch: train()'s random stream, weights and batches.
    text = ex.load_text()
    chars = "".join(sorted(set(text)))
    vocab = len(chars)
    data = np.array([chars.index(ch) for ch in text], np.int64)
    rng = np.random.default_rng(seed)
    params = ex.init_params(rng, vocab, config.hidden)
    lstm = torch.nn.LSTM(vocab, config.hidden)
    proj = torch.nn.Linear(config.hidden, vocab)
    with torch.no_grad():
        for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
            getattr(lstm, f"{name.replace('w_', 'weight_').replace('b_', 'bias_')}_l0").copy_(
                torch.from_numpy(params[name]))
        proj.weight.copy_(torch.from_numpy(params["w_out"]))
        proj.bias.copy_(torch.from_numpy(params["b_out"]))
    optimizer = torch.optim.Adam([*lstm.parameters(), *proj.parameters()], lr=config.learning_rate,
                                 betas=config.betas, eps=config.eps)
    theirs = []
    for _ in range(steps):
        starts = rng.integers(0, data.size - config.steps_per_sequence - 1, config.batch)
        inputs, targets = ex.batch_at(data, starts, config.steps_per_sequence)
        y, _ = lstm(torch.from_numpy(ex.one_hot(inputs, vocab)))
        loss = torch.nn.functional.cross_entropy(proj(y.reshape(-1, config.hidden)),
                                                 torch.from_numpy(targets.reshape(-1)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        theirs.append(loss.item())
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)
    assert ours[-1] < ours[0]  # it learns
