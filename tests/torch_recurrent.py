"""torch.nn.LSTM / GRU / RNN as the oracle of the recurrent layers: a module
built from our params list (its weights copied in), run forward and
backward with autograd, its results in our layout."""

from __future__ import annotations

import numpy as np

# kind -> (torch module name, number of states, keyword arguments)
KINDS = {
    "lstm": ("LSTM", 2, {}),
    "gru": ("GRU", 1, {}),
    "rnn_tanh": ("RNN", 1, {"nonlinearity": "tanh"}),
    "rnn_relu": ("RNN", 1, {"nonlinearity": "relu"}),
}


def run_torch(torch, kind, x, params, initial, bidirectional, batch_first, grad_y, grad_finals):
    """(y, finals, grad_x, grad_params, grad_initial) of PyTorch's module with
    `params` copied in, dtype that of x; grad_finals entries may be None."""
    module_name, count, kw = KINDS[kind]
    dirs = 2 if bidirectional else 1
    dtype = torch.float64 if x.dtype == np.float64 else torch.float32
    hidden = params[0][1].shape[1]
    bias = params[0][2] is not None
    module = getattr(torch.nn, module_name)(
        x.shape[2], hidden, num_layers=len(params) // dirs, bias=bias, batch_first=batch_first,
        bidirectional=bidirectional, dtype=dtype, **kw)
    with torch.no_grad():
        for tensors, ours in zip(module.all_weights, params):
            for t, a in zip(tensors, [p for p in ours if p is not None]):
                t.copy_(torch.from_numpy(np.asarray(a)))
    tx = torch.from_numpy(x.copy()).requires_grad_()
    states = [torch.from_numpy(s.copy()).requires_grad_() for s in initial]
    y, finals = module(tx, tuple(states) if count == 2 else states[0])
    finals = finals if count == 2 else (finals,)
    outs, grads = [y], [torch.from_numpy(grad_y)]
    for f, g in zip(finals, grad_finals):
        if g is not None:
            outs.append(f)
            grads.append(torch.from_numpy(g))
    torch.autograd.backward(outs, grads)
    grad_params = [tuple(t.grad.numpy() for t in tensors) + (() if bias else (None, None))
                   for tensors in module.all_weights]
    return (y.detach().numpy(), [f.detach().numpy() for f in finals], tx.grad.numpy(), grad_params,
            [s.grad.numpy() for s in states])
