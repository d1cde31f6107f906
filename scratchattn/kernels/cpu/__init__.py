"""Numba kernels for the CPU (``@njit(parallel=True, cache=True)``), plain loops a reader can follow."""
