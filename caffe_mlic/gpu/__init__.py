"""Our layers' work on the GPU (numba's CUDA target): kernels.py. Imports
neither Caffe nor numba.cuda until a module here is imported."""
