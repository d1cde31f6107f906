"""CUDA C++ kernel sources (``*.cu``, package data) and the Python launchers that run them through CuPy on a GPU or
through the host shim (``host/``) on the CPU."""
