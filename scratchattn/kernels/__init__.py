"""Hand-written kernels. They know nothing of Tensors or autodiff: arrays in, arrays out.

``cpu/`` holds the Numba kernels; ``cuda/`` the CUDA C++ sources and their thin CuPy launchers. The two files of a
pair share function names, argument order and variable names.
"""
