"""Random numbers for scratchattn: one seeded generator per array module, so that runs can be reproduced.

Dropout masks and parameter initialisation draw from :func:`default_rng`. :func:`manual_seed` reseeds the NumPy
generator at once and the CuPy one the next time it is asked for (CuPy is optional and may be absent, so it is
never imported here until a GPU array actually needs random numbers). The two devices use different generator
algorithms, so the same seed gives reproducible, but not identical, streams on the CPU and the GPU.
"""

from __future__ import annotations

import numpy as np

_DEFAULT_SEED = 0

_seed: int = _DEFAULT_SEED
_numpy_rng: np.random.Generator = np.random.default_rng(_DEFAULT_SEED)
_cupy_rng = None  # created (and seeded with _seed) on first use


def manual_seed(seed: int) -> None:
    """Seed every scratchattn random generator with ``seed`` (a non-negative int), as ``torch.manual_seed``."""
    global _seed, _numpy_rng, _cupy_rng
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"manual_seed: seed must be an int; got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"manual_seed: seed must be >= 0; got {seed}")
    _seed = int(seed)
    _numpy_rng = np.random.default_rng(_seed)
    _cupy_rng = None  # reseeded lazily by default_rng(cupy)


def default_rng(xp=np):
    """The generator for array module ``xp``: a ``numpy.random.Generator`` or a ``cupy.random.Generator``.

    Both offer ``random(shape, dtype=...)``, ``standard_normal(shape, dtype=...)`` and ``uniform(low, high,
    size)``, which is all the library uses.
    """
    global _cupy_rng
    if xp is np:
        return _numpy_rng
    if getattr(xp, "__name__", "") == "cupy":
        if _cupy_rng is None:
            _cupy_rng = xp.random.default_rng(_seed)
        return _cupy_rng
    raise TypeError(f"default_rng: xp must be the numpy or cupy module; got {xp!r}")
