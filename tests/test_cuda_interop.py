"""Other libraries' CUDA arrays in the ops that have CUDA kernels
(__cuda_array_interface__ and DLPack, zero-copy; README "Interop and
streams"), tested on the emulated device: inside the private
minidnn.cuda._emulated_interop() arrays exposing those protocols are taken
to live on the emulated device, and the stand-ins for other libraries below
(`Producer`) describe emulated arrays the way CuPy, Numba or PyTorch
describe theirs. The ingestion, its checks and the lifetime of the views are
the code a real device runs; only the pointer check (the emulated device's
arrays instead of cudaPointerGetAttributes) and the stream events (no
streams on the emulator) differ. The last tests need a GPU and run only
where one is present (bench/gpu_validate.sh)."""

from __future__ import annotations

import gc
import sys

import numpy as np
import pytest

import minidnn
import minidnn.reference as ref
from minidnn import _C, _validate, cuda
from conftest import assert_close

ON_GPU = cuda.is_built() and _C.cuda.device_count() > 0

FLOAT_OPS = {
    "softmax": lambda x: minidnn.softmax(x, axis=-1),
    "log_softmax": lambda x: minidnn.log_softmax(x, axis=1),
    "relu": minidnn.relu,
    "leaky_relu": lambda x: minidnn.leaky_relu(x, negative_slope=0.2),
    "sigmoid": minidnn.sigmoid,
    "tanh": minidnn.tanh,
}
BACKWARD_OPS = {
    "softmax_backward": lambda g, y: minidnn.softmax_backward(g, y, axis=-1),
    "log_softmax_backward": lambda g, y: minidnn.log_softmax_backward(g, y, axis=0),
    "relu_backward": minidnn.relu_backward,
    "sigmoid_backward": minidnn.sigmoid_backward,
}


class Producer:
    """Another library's device array: exposes `interface` as its
    __cuda_array_interface__ and keeps `backing` (the emulated array whose
    memory it describes) alive, as a library keeps its allocation."""

    def __init__(self, backing, **changes):
        self.backing = backing
        self.interface = {
            "shape": backing.shape,
            "typestr": "<f4" if backing.dtype == np.float32 else "<i8",
            "data": (backing._address, False),
            "strides": None,
            "version": 3,
            "stream": 1,
        }
        self.interface.update(changes)

    @property
    def __cuda_array_interface__(self):
        return self.interface


class DLPackProducer:
    """Another library's device array seen only through DLPack (no
    __cuda_array_interface__), exporting the emulated array `backing` as a
    kDLCUDA tensor; records the streams it was asked for."""

    def __init__(self, backing):
        self.backing = backing
        self.streams = []

    def __dlpack_device__(self):
        return (2, 0)  # kDLCUDA, device 0

    def __dlpack__(self, *, stream=None):
        self.streams.append(stream)
        return self.backing._dlpack(stream=stream)


@pytest.fixture
def interop():
    with cuda._emulated(), cuda._emulated_interop():
        yield


def device_values(rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    return x, cuda.to_device(x)


@pytest.mark.parametrize("op", list(FLOAT_OPS))
@pytest.mark.parametrize("wrap", ["interface", "dlpack"])
def test_every_op_takes_other_libraries_arrays(interop, rng, op, wrap):
    x, backing = device_values(rng, (3, 37))
    producer = Producer(backing) if wrap == "interface" else DLPackProducer(backing)
    y = FLOAT_OPS[op](producer)
    assert isinstance(y, cuda.Array) and y.device == "emulated" and y.shape == x.shape
    assert np.array_equal(y.numpy(), FLOAT_OPS[op](backing).numpy())
    if op == "softmax":
        assert_close(y.numpy(), ref.softmax(x, axis=-1))
    if wrap == "dlpack":
        assert producer.streams == [1]  # our stream, the legacy default one, handed to the producer


@pytest.mark.parametrize("op", list(BACKWARD_OPS))
def test_backwards_take_a_mix_of_our_arrays_and_others(interop, rng, op):
    (g, dg), (s, ds) = device_values(rng, (4, 6)), device_values(rng, (4, 6))
    expected = BACKWARD_OPS[op](dg, ds).numpy()
    for grad_y, saved in [(Producer(dg), ds), (dg, DLPackProducer(ds)), (Producer(dg), Producer(ds))]:
        assert np.array_equal(BACKWARD_OPS[op](grad_y, saved).numpy(), expected)


@pytest.mark.parametrize("wrap", ["interface", "dlpack"])
def test_losses_take_other_libraries_logits_and_targets(interop, rng, wrap):
    wrapper = Producer if wrap == "interface" else DLPackProducer
    x, logits = device_values(rng, (5, 7))
    classes = np.array([0, 6, 3, -100, 2], dtype=np.int64)
    probs = rng.random((5, 7)).astype(np.float32)
    for target_host in (classes, probs):
        target = cuda.to_device(target_host)
        for fn in (minidnn.cross_entropy, minidnn.nll_loss):
            if fn is minidnn.nll_loss and target_host is probs:
                continue
            expected = fn(logits, target, reduction="none").numpy()
            got = fn(wrapper(logits), wrapper(target), reduction="none")
            assert isinstance(got, cuda.Array) and np.array_equal(got.numpy(), expected)
        grad = minidnn.cross_entropy_backward(1.0, wrapper(logits), wrapper(target))
        assert np.array_equal(grad.numpy(), minidnn.cross_entropy_backward(1.0, logits, target).numpy())
    assert_close(minidnn.cross_entropy(wrapper(logits), wrapper(cuda.to_device(classes))).numpy(),
                 ref.cross_entropy(x, classes))


def test_the_view_is_zero_copy_and_keeps_the_producer_alive(interop, rng):
    x, backing = device_values(rng, (2, 5))
    producer = Producer(backing)
    view = _validate.cuda_float_array("x", producer)
    assert view._address == backing._address and view.shape == (2, 5)
    assert sys.getrefcount(producer) > 2  # held by the view
    del producer, backing
    gc.collect()
    # The producer, and with it the memory, lives as long as the view.
    assert np.array_equal(view.numpy(), x)


def test_a_dlpack_view_calls_the_deleter_when_it_goes(interop, rng):
    x, backing = device_values(rng, (7,))
    capsule = backing._dlpack()
    view = _C.cuda._from_dlpack(capsule, "x", "emulated")
    with pytest.raises(ValueError, match=r'x: expected __dlpack__\(\) to return an unconsumed "dltensor" capsule, '
                                         r'got a capsule named "used_dltensor"'):
        _C.cuda._from_dlpack(capsule, "x", "emulated")
    del backing, capsule
    gc.collect()
    assert np.array_equal(view.numpy(), x)  # the capsule's storage is alive in the view
    cuda.empty_cache()
    cached = _C.cuda.cached_bytes("emulated")
    del view  # the deleter returns the block to the allocator
    assert _C.cuda.cached_bytes("emulated") == cached + 512


def test_an_unconsumed_export_frees_its_array(interop):
    backing = cuda.to_device(np.ones(3, np.float32))
    cuda.empty_cache()
    capsule = backing._dlpack()
    del backing
    assert _C.cuda.cached_bytes("emulated") == 0  # the capsule holds the block
    del capsule
    assert _C.cuda.cached_bytes("emulated") == 512


def test_shapes_empty_and_zero_d(interop, rng):
    for shape in [(0,), (3, 0), ()]:
        x, backing = device_values(rng, shape)
        for producer in (Producer(backing), DLPackProducer(backing)):
            y = minidnn.relu(producer)
            assert y.shape == shape and np.array_equal(y.numpy(), np.maximum(x, 0))


def test_contiguous_strides_are_accepted(interop, rng):
    x, backing = device_values(rng, (3, 1, 4))
    # C-order byte strides, and any stride along an extent of 1 (no index steps over it).
    for strides in [(16, 16, 4), (16, 999, 4)]:
        assert np.array_equal(minidnn.relu(Producer(backing, strides=strides)).numpy(), np.maximum(x, 0))


def test_bad_interfaces(interop, rng):
    _, backing = device_values(rng, (3, 4))
    cases = [
        (TypeError, r"x: expected dtype float32 or int64 \(typestr '<f4' or '<i8'\), got typestr '<f8'",
         {"typestr": "<f8"}),
        (ValueError, r"x: expected a C-contiguous array \(minidnn does not copy device arrays; make it contiguous "
                     r"first\), got byte strides \(4, 12\)", {"strides": (4, 12)}),
        (ValueError, r"x: expected 2 strides \(one per axis\), got 1", {"strides": (4,)}),
        (ValueError, r"x: expected __cuda_array_interface__ version 2 or 3, got 1", {"version": 1}),
        (ValueError, r"x: expected None, 1, 2 or a cudaStream_t as stream in the __cuda_array_interface__ of x, "
                     r"got 0", {"stream": 0}),
        (ValueError, r"x: expected no mask", {"mask": (0, False)}),
        (ValueError, r"x: expected \(address, read_only\) as data", {"data": None}),
        (ValueError, r"x: expected a tuple of ints as shape", {"shape": [3, 4]}),
        (ValueError, r"x: expected a shape of extents >= 0, got extent -1", {"shape": (-1, 4)}),
        (ValueError, r"x: expected data aligned to 4 bytes, got address 0x", {"data": (backing._address + 2, False)}),
        (ValueError, r"x: expected a device address, got a null pointer", {"data": (0, False)}),
        # Past the end of the array: not memory of the device.
        (ValueError, r"x: expected memory of the emulated device, got address 0x[0-9a-f]+, outside its arrays",
         {"shape": (3, 5)}),
    ]
    for error, message, changes in cases:
        with pytest.raises(error, match=message):
            minidnn.relu(Producer(backing, **changes))
    with pytest.raises(TypeError, match="x: expected dtype float32, got int64"):
        minidnn.sigmoid(Producer(cuda.to_device(np.arange(12).reshape(3, 4))))


def test_a_host_pointer_is_a_value_error_naming_the_argument(interop):
    """The mixed-device case a protocol can hide: an interface that points at
    host memory (here a NumPy array's), which a kernel must never read as
    device memory."""
    host = np.ones((2, 3), np.float32)
    device = cuda.to_device(host)
    lying = Producer(device, data=(host.ctypes.data, False))
    with pytest.raises(ValueError, match=r"y: expected memory of the emulated device, got address 0x[0-9a-f]+, "
                                         r"outside its arrays \(host memory\?\)"):
        minidnn.sigmoid_backward(device, lying)


def test_mixed_devices_with_other_libraries_arrays(interop, rng):
    host, backing = device_values(rng, (2, 3))
    with pytest.raises(ValueError, match=r"y: expected an array on the device of grad_y \(emulated\), got one on cpu"):
        minidnn.softmax_backward(Producer(backing), host)
    with pytest.raises(ValueError, match=r"x: expected an array on the device of grad_y \(cpu\), got one on emulated"):
        minidnn.relu_backward(host, DLPackProducer(backing))


class OtherDLPackDevice:
    def __init__(self, device_type):
        self.device_type = device_type

    def __dlpack_device__(self):
        return (self.device_type, 0)

    def __dlpack__(self, *, stream=None):
        raise AssertionError("never asked for")


def test_dlpack_arrays_on_other_devices(interop, rng):
    _, backing = device_values(rng, (2, 3))
    # kDLCUDAHost (pinned host memory) is not device memory.
    with pytest.raises(ValueError, match=r"x: expected a NumPy array or an array on a CUDA device, "
                                         r"got one on DLPack device type 3"):
        minidnn.relu(OtherDLPackDevice(3))
    with pytest.raises(ValueError, match=r"y: expected an array on the device of grad_y \(emulated\), "
                                         r"got one on DLPack device type 3"):
        minidnn.tanh_backward(backing, OtherDLPackDevice(3))
    # kDLCPU arrays other than NumPy's go to the CPU path, which takes NumPy arrays only.
    with pytest.raises(TypeError, match="x: expected a NumPy array"):
        minidnn.relu(OtherDLPackDevice(1))


def test_without_the_interop_flag_other_arrays_are_cuda_arrays(rng):
    """Outside _emulated_interop() a producer's array is a GPU array: with the
    emulated device, a mix of devices."""
    with cuda._emulated():
        x, backing = device_values(rng, (2, 3))
        with pytest.raises(ValueError, match=r"y: expected an array on the device of grad_y \(emulated\), got one on cuda"):
            minidnn.sigmoid_backward(backing, Producer(backing))


def test_a_bad_dlpack_capsule(interop, rng):
    _, backing = device_values(rng, (2, 3))

    class NotACapsule(DLPackProducer):
        def __dlpack__(self, *, stream=None):
            return 42

    with pytest.raises(ValueError, match=r'x: expected __dlpack__\(\) to return an unconsumed "dltensor" capsule, got int'):
        minidnn.relu(NotACapsule(backing))
    with pytest.raises(ValueError, match="stream: expected None, -1, 1, 2 or a cudaStream_t"):
        backing._dlpack(stream=0)


def test_the_real_device_protocols_are_absent_on_the_emulated_device():
    with cuda._emulated():
        a = cuda.to_device(np.ones(3, np.float32))
        for protocol in ("__cuda_array_interface__", "__dlpack__", "__dlpack_device__"):
            assert not hasattr(a, protocol)


# ---- On a real GPU (bench/gpu_validate.sh; absent here, so not collected as passing) ----

gpu = pytest.mark.skipif(not ON_GPU, reason="needs an NVIDIA GPU (runs in bench/gpu_validate.sh)")


@gpu
def test_gpu_arrays_export_both_protocols(rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    a = cuda.to_device(x)
    cai = a.__cuda_array_interface__
    assert cai["version"] == 3 and cai["shape"] == (4, 5) and cai["typestr"] == "<f4" and cai["stream"] == 1
    assert cai["data"][0] == a._address and a.__dlpack_device__() == (2, 0)
    capsule = a.__dlpack__(stream=None)
    view = _C.cuda._from_dlpack(capsule, "x", "cuda")
    assert view._address == a._address and np.array_equal(view.numpy(), x)


@gpu
def test_gpu_ops_take_torch_tensors_zero_copy_and_torch_takes_ours(rng):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("this PyTorch has no CUDA")
    x = rng.standard_normal((64, 1000)).astype(np.float32)
    t = torch.from_numpy(x).cuda()
    y = minidnn.softmax(t)
    assert isinstance(y, cuda.Array)
    assert_close(y.numpy(), ref.softmax(x))
    back = torch.from_dlpack(y)
    assert back.data_ptr() == y._address and back.is_cuda
    with pytest.raises(ValueError, match="x: expected a C-contiguous array"):
        minidnn.softmax(t.t())
    with pytest.raises(TypeError, match="x: expected dtype float32 or int64"):
        minidnn.relu(t.double())
    # A producer on a stream of its own: our kernels wait for its work, and
    # it waits for ours before touching the memory again.
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        big = torch.full((4096, 4096), 2.0, device="cuda")
        big.mul_(0.5)
        out = minidnn.relu(big)
    assert np.all(out.numpy() == 1.0)
    torch.cuda.synchronize()


@gpu
def test_gpu_host_pointer_is_a_value_error():
    host = np.ones(16, np.float32)
    lying = Producer(cuda.to_device(host), data=(host.ctypes.data, False))
    with pytest.raises(ValueError, match=r"x: expected memory on CUDA device 0 \(the current device\), got host memory"):
        minidnn.relu(lying)

