"""Argument validation for every public op, in one place.

Each check raises TypeError (wrong type or dtype), ValueError (wrong shape or
value) or IndexError (class target out of range) with a message that names
the argument, what was expected and what was given.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import _C

REDUCTIONS = ("none", "mean", "sum")


def _describe(x) -> str:
    if isinstance(x, np.ndarray):
        return f"ndarray of {x.dtype} with shape {x.shape}"
    return type(x).__name__


def _reject_device_arrays(name: str, x) -> None:
    """For the ops without CUDA kernels yet."""
    if isinstance(x, _C.cuda.Array) or hasattr(x, "__cuda_array_interface__") or (
        hasattr(x, "__dlpack_device__") and not isinstance(x, np.ndarray)
    ):
        raise TypeError(
            f"{name}: expected a NumPy array (this op runs on the CPU only so far), got {type(x).__name__}"
        )


# Where other libraries' CUDA arrays (__cuda_array_interface__, or
# __dlpack__ on kDLCUDA) live: the GPU; inside the tests'
# minidnn.cuda._emulated_interop(), the emulated device, so that a stand-in
# for such a library pointing at emulated arrays takes the same path.
_interop_device = "cuda"

_DLPACK_CPU = 1
_DLPACK_CUDA = (2, 13)  # kDLCUDA, kDLCUDAManaged
_CUDA_DEVICES = ("cuda", "emulated")


def _device_of(x) -> str:
    if type(x) is np.ndarray:  # the common case, first and cheap
        return "cpu"
    if isinstance(x, _C.cuda.Array):
        return x.device
    if hasattr(x, "__cuda_array_interface__"):
        return _interop_device
    if hasattr(x, "__dlpack_device__") and not isinstance(x, np.ndarray):
        device_type = int(x.__dlpack_device__()[0])
        if device_type in _DLPACK_CUDA:
            return _interop_device
        if device_type != _DLPACK_CPU:
            return f"DLPack device type {device_type}"
    return "cpu"


def on_cuda(*named) -> bool:
    """Where an op runs, decided in one place for every op: True when its
    arrays, given as (name, value) pairs, live on a CUDA device (a
    minidnn.cuda.Array, or another library's array exposing
    __cuda_array_interface__ or __dlpack__ on kDLCUDA), False when none does
    (NumPy and anything else: the CPU path validates it). A mix of devices
    (host and device, or the GPU and the emulated device) is a ValueError
    naming the argument."""
    first_name, first = named[0]
    device = _device_of(first)
    for name, x in named[1:]:
        other = _device_of(x)
        if other != device:
            raise ValueError(
                f"{name}: expected an array on the device of {first_name} ({device}), got one on {other}; "
                "move arrays with minidnn.cuda.to_device() or Array.numpy()"
            )
    if device == "cpu":
        return False
    if device not in _CUDA_DEVICES:
        raise ValueError(f"{first_name}: expected a NumPy array or an array on a CUDA device, got one on {device}")
    return True


_TYPESTRS = {"<f4": "float32", "<i8": "int64"}


def _interface_view(name: str, x):
    """A zero-copy minidnn.cuda.Array viewing x through its
    __cuda_array_interface__ (version 2 or 3)."""
    cai = x.__cuda_array_interface__
    if not isinstance(cai, dict):
        raise TypeError(f"{name}: expected __cuda_array_interface__ to be a dict, got {type(cai).__name__}")
    where = f"in the __cuda_array_interface__ of {name}"
    if cai.get("version") not in (2, 3):
        raise ValueError(f"{name}: expected __cuda_array_interface__ version 2 or 3, got {cai.get('version')!r}")
    typestr = cai.get("typestr")
    if typestr not in _TYPESTRS:
        raise TypeError(f"{name}: expected dtype float32 or int64 (typestr '<f4' or '<i8'), got typestr {typestr!r}")
    shape = cai.get("shape")
    if not isinstance(shape, tuple) or not all(isinstance(n, int) for n in shape):
        raise ValueError(f"{name}: expected a tuple of ints as shape {where}, got {shape!r}")
    data = cai.get("data")
    if not (isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], int) and data[0] >= 0):
        raise ValueError(f"{name}: expected (address, read_only) as data {where}, got {data!r}")
    strides = cai.get("strides")
    if strides is not None and not (isinstance(strides, tuple) and all(isinstance(n, int) for n in strides)):
        raise ValueError(f"{name}: expected None or a tuple of ints as strides {where}, got {strides!r}")
    if cai.get("mask") is not None:
        raise ValueError(f"{name}: expected no mask {where} (masked arrays are not supported), got one")
    stream = cai.get("stream")
    if stream is not None and (type(stream) is not int or stream < 1):
        # 0 is ambiguous between the default streams, and the protocol forbids it.
        raise ValueError(f"{name}: expected None, 1, 2 or a cudaStream_t as stream {where}, got {stream!r}")
    return _C.cuda._view_of(x, data[0], shape, _TYPESTRS[typestr], strides, stream, name, _interop_device)


def device_array(name: str, x):
    """x as a minidnn.cuda.Array (on_cuda() said it lives on a CUDA device):
    itself, or a zero-copy view of another library's array, through
    __cuda_array_interface__ if it has one, else through DLPack with our
    stream (the legacy default, 1) passed to x.__dlpack__."""
    if isinstance(x, _C.cuda.Array):
        return x
    if hasattr(x, "__cuda_array_interface__"):
        return _interface_view(name, x)
    return _C.cuda._from_dlpack(x.__dlpack__(stream=1), name, _interop_device)


def cuda_float_array(name: str, x):
    """x as a minidnn.cuda.Array of float32 (see device_array)."""
    x = device_array(name, x)
    if x.dtype != np.float32:
        raise TypeError(f"{name}: expected dtype float32, got {x.dtype}")
    return x


def cuda_index_array(name: str, x):
    """x as a minidnn.cuda.Array of int64 class indices (see device_array;
    device arrays are not widened from int32)."""
    x = device_array(name, x)
    if x.dtype != np.int64:
        raise TypeError(f"{name}: expected dtype int64 (class indices on a CUDA device), got {x.dtype}")
    return x


def _as_ndarray(x):
    """NumPy scalars (np.float32(1.0)) count as 0-d arrays."""
    return np.asarray(x) if isinstance(x, np.generic) else x


def _contiguous(x: np.ndarray) -> np.ndarray:
    """x itself if the kernels can read it in place, else a C-contiguous,
    aligned copy (not np.ascontiguousarray: it turns a 0-d array into shape (1,))."""
    flags = x.flags
    return x if flags.c_contiguous and flags.aligned else x.copy(order="C")


def float_array(name: str, x) -> np.ndarray:
    """A C-contiguous, aligned float32 ndarray (other layouts are copied once)."""
    _reject_device_arrays(name, x)
    x = _as_ndarray(x)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray of float32, got {_describe(x)}")
    if x.dtype != np.float32:
        raise TypeError(f"{name}: expected dtype float32, got {x.dtype}")
    return _contiguous(x)


def index_array(name: str, x) -> np.ndarray:
    """A C-contiguous, aligned int64 ndarray; int32 is widened."""
    _reject_device_arrays(name, x)
    x = _as_ndarray(x)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray of int64 or int32, got {_describe(x)}")
    if x.dtype not in (np.int64, np.int32):
        raise TypeError(f"{name}: expected dtype int64 or int32, got {x.dtype}")
    return _contiguous(x.astype(np.int64, copy=False))


def integer(name: str, value) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    return int(value)


def plain_int(name: str, value) -> int:
    """integer(), with no detour for an exact int (the common, cheap case)."""
    if type(value) is int:
        return value
    return integer(name, value)


def int_pair(name: str, value, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints, each >= minimum (a kernel size, stride,
    dilation of a 2-D op)."""
    if type(value) is int:
        a = b = value
    elif isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name}: expected an int or a pair of ints, got {value!r}")
        a, b = plain_int(name, value[0]), plain_int(name, value[1])
    else:
        a = b = plain_int(name, value)
    if a < minimum or b < minimum:
        raise ValueError(f"{name}: expected ints >= {minimum}, got {value!r}")
    return a, b


def int_single(name: str, value, minimum: int, op: str) -> int:
    """An int or a 1-tuple (as torch accepts for 1-D ops), >= minimum; `op`
    names the 1-D op in the message ("a 1-D convolution")."""
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            raise ValueError(f"{name}: expected an int or a 1-tuple for {op}, got {value!r}")
        value = value[0]
    v = plain_int(name, value)
    if v < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {v}")
    return v


def int64(name: str, value) -> int:
    value = integer(name, value)
    if not -(2**63) <= value < 2**63:
        raise ValueError(f"{name}: expected an int in the int64 range, got {value}")
    return value


def positive_int(name: str, value) -> int:
    value = integer(name, value)
    if value < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {value}")
    return value


def real(name: str, value) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a float, got {type(value).__name__}")
    return float(value)


def axis(name: str, value, ndim: int) -> int:
    """A normalized axis in [0, max(ndim, 1)); a 0-d array has the one axis 0 / -1."""
    value = integer(name, value)
    rank = max(ndim, 1)
    if not -rank <= value < rank:
        raise ValueError(f"{name}: expected an axis in [{-rank}, {rank - 1}] for a {ndim}-d array, got {value}")
    return value % rank


def same_shape(name: str, x: np.ndarray, ref_name: str, ref: np.ndarray) -> None:
    if x.shape != ref.shape:
        raise ValueError(f"{name}: expected shape {ref.shape} (the shape of {ref_name}), got {x.shape}")


def reduction(value) -> str:
    if not isinstance(value, str) or value not in REDUCTIONS:
        raise ValueError(f"reduction: expected one of 'none', 'mean', 'sum', got {value!r}")
    return value


def label_smoothing(value) -> float:
    value = real("label_smoothing", value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"label_smoothing: expected a float in [0.0, 1.0], got {value}")
    return value


class LossInputs:
    """Validated inputs of a classification loss, viewed as (outer, classes,
    inner) with the class axis 1 (0 for unbatched (C,) input)."""

    def __init__(self, input_name, x, target, weight, ignore_index, allow_prob):
        self.x = float_array(input_name, x)
        if self.x.ndim == 0:
            raise ValueError(f"{input_name}: expected shape (C,), (N, C) or (N, C, d1, ..., dk), got ()")
        self.unbatched = self.x.ndim == 1
        class_axis = 0 if self.unbatched else 1
        self.classes = int(self.x.shape[class_axis])
        if self.classes < 1:
            raise ValueError(f"{input_name}: expected at least one class on axis {class_axis}, got shape {self.x.shape}")
        self.ignore_index = int64("ignore_index", ignore_index)

        _reject_device_arrays("target", target)
        target = _as_ndarray(target)
        if not isinstance(target, np.ndarray):
            raise TypeError(f"target: expected a numpy.ndarray, got {_describe(target)}")
        self.prob = None
        self.index = None
        if target.dtype.kind == "f":
            if not allow_prob:
                raise TypeError(f"target: expected dtype int64 or int32 (class indices), got {target.dtype}")
            self.prob = float_array("target", target)
            same_shape("target", self.prob, input_name, self.x)
            self.target_shape = self.x.shape[:class_axis] + self.x.shape[class_axis + 1 :]
        else:
            self.index = index_array("target", target)
            expected = self.x.shape[:class_axis] + self.x.shape[class_axis + 1 :]
            if self.index.shape != expected:
                raise ValueError(
                    f"target: expected class indices of shape {expected} for {input_name} of shape "
                    f"{self.x.shape}, got {self.index.shape}"
                )
            self.target_shape = expected
            bad = (self.index != self.ignore_index) & ((self.index < 0) | (self.index >= self.classes))
            if bad.any():
                first = int(self.index[bad].flat[0])
                raise IndexError(
                    f"target: expected class indices in [0, {self.classes - 1}] or ignore_index="
                    f"{self.ignore_index}, got {first}"
                )

        self.weight = None
        if weight is not None:
            self.weight = float_array("weight", weight)
            if self.weight.shape != (self.classes,):
                raise ValueError(f"weight: expected shape ({self.classes},), got {self.weight.shape}")


def grad_loss(value, reduction_: str, target_shape: tuple):
    """(per_element float32 array or None, scalar float) for a loss backward."""
    if reduction_ == "none":
        _reject_device_arrays("grad_loss", value)
        g = float_array("grad_loss", value)
        if g.shape != tuple(target_shape):
            raise ValueError(f"grad_loss: expected shape {tuple(target_shape)} for reduction='none', got {g.shape}")
        return g, 1.0
    if isinstance(value, np.ndarray):
        if value.shape != ():
            raise ValueError(f"grad_loss: expected a float or 0-d array for reduction={reduction_!r}, got shape {value.shape}")
        if value.dtype.kind != "f":
            raise TypeError(f"grad_loss: expected a floating dtype, got {value.dtype}")
        return None, float(value)
    return None, real("grad_loss", value)
