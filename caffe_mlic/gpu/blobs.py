"""Whether our layers run their CUDA kernels, and the blobs' memory as the kernels' arrays.

In GPU mode (a GPU build of Caffe, whose pycaffe gives device pointers:
tools/caffe-patches/gpu/0004) with numba's CUDA target working, the layers on
the training paths run kernels.py on the blobs' device memory: nothing is
copied to the host but small tables (rois, the loss values). In CPU mode, on
the CPU build, or without numba's CUDA target, they run their host code as
before.

CAFFE_MLIC_GPU_LAYERS: 'host' keeps the host code in GPU mode too (to
compare); 'sim' (tests, with NUMBA_ENABLE_CUDASIM=1) runs the kernels in
numba's simulator on the blobs' host memory in CPU mode, so the layers' GPU
code runs through the CPU layers' own tests on a machine without a GPU.

Pointers are fetched at every call: a Reshape may move the memory. Reading
a read-only pointer leaves SyncedMemory's head where it is when the device
copy is current; a mutable one marks the device copy as the newest.
"""
import os
import sys

import numpy as np

MODE_ENV = 'CAFFE_MLIC_GPU_LAYERS'
_STATE = {}


def _simulated():
    from numba import config
    return bool(config.ENABLE_CUDASIM)


def _cuda_works():
    """Whether numba's CUDA target can run kernels here (checked once)."""
    if 'cuda' not in _STATE:
        try:
            from numba import cuda
            _STATE['cuda'] = bool(cuda.is_available())
            why = 'numba sees no CUDA device'
        except Exception as e:       # (numba without its CUDA target, a driver mismatch)
            _STATE['cuda'], why = False, '%s: %s' % (type(e).__name__, e)
        if not _STATE['cuda']:
            sys.stderr.write('caffe-mlic: our layers run on the host in GPU mode: %s\n' % why)
    return _STATE['cuda']


def use_kernels():
    """Whether a layer runs its CUDA kernel now."""
    setting = os.environ.get(MODE_ENV, '').strip().lower()
    if setting == 'host':
        return False
    if setting == 'sim':
        return _simulated()
    if setting and not _STATE.get('warned'):
        _STATE['warned'] = True
        sys.stderr.write("caffe-mlic: %s=%r means nothing (give 'host' or 'sim'): ignored\n"
                         % (MODE_ENV, os.environ[MODE_ENV]))
    import caffe
    get_mode = getattr(caffe._caffe, 'get_mode', None)     # (the GPU build's pycaffe only)
    return get_mode is not None and get_mode() == 'GPU' and _cuda_works()


class _DeviceMemory:
    """A blob's device memory described by the CUDA array interface."""

    def __init__(self, pointer, shape):
        self.__cuda_array_interface__ = {'shape': tuple(shape), 'typestr': '<f4', 'data': (pointer, False),
                                         'strides': None, 'version': 2}


def view(blob, part='data', write=False, shape=None):
    """The blob's ``part`` ('data' or 'diff') as an array the kernels take,
    of ``shape`` (default the blob's). ``write``: the kernel writes it."""
    shape = tuple(blob.shape) if shape is None else tuple(shape)
    if _simulated():
        return getattr(blob, part).reshape(shape)       # the simulator's "device" is the host
    from numba import cuda
    pointer = getattr(blob, '_%sgpu_%s_ptr' % ('mutable_' if write else '', part))
    return cuda.as_cuda_array(_DeviceMemory(pointer, shape))


def device_array(shape, dtype, cache, key):
    """A device work array kept in dict ``cache`` under ``key`` while its shape holds."""
    from numba import cuda
    array = cache.get(key)
    if array is None or tuple(array.shape) != tuple(shape):
        array = cache[key] = cuda.device_array(tuple(shape), dtype)
    return array


def fill(blob, array):
    """blob.data[...] = array; with the kernels in use, copied straight into
    the blob's device memory (the batch a data layer delivers: one copy to the
    GPU instead of a host copy into the blob and Caffe's copy up from it)."""
    if not use_kernels():
        blob.data[...] = array
        return
    target = view(blob, write=True)
    if _simulated():
        target[...] = array
    else:
        target.copy_to_device(np.ascontiguousarray(array, np.float32).reshape(target.shape))
