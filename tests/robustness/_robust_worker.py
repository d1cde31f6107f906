"""The fuzz worker: a process that runs fuzz cases sent by the test process and sends back their results.

Protocol (``_robust_fuzz.send_message`` / ``receive_message``): each message is an 8-byte little-endian length and a
pickle. The parent sends a case dict; the worker answers with the dict from ``_robust_fuzz.run_case``. End of input
ends the worker. A case with ``"op": "exit"`` makes the worker exit with that status and ``"op": "segfault"`` makes it
read address 0 (both used by the tests of this machinery); ``"op": "oob_control"`` runs a kernel that reads past the
end of an array, so that the sanitizer test can show that AddressSanitizer is really watching the host-shim kernels in
this process.

Running the cases here, not in the test process, is what lets a test survive a kernel that crashes: the parent sees
this process die, reports the case that killed it, and starts a new worker.
"""

from __future__ import annotations

import os
import sys

import numpy as np


def oob_control(case):
    """Reads past the end of an array on purpose: with ``which="toy"`` in a test kernel, with ``which="library"`` in
    the library's own affine_grid_forward, handed a theta one sample shorter than the grid (which the op's
    validation would never let through)."""
    if case["which"] == "toy":
        from scratchattn.kernels.cuda import launcher

        source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_oob_read.cu")
        x = np.ones(case["n"], np.float32)
        out = np.zeros(1, np.float32)
        launcher.get_kernel(source, "read_past_end", np.float32, "cuda-host")(1, 1, (x, out, np.int64(x.size)))
    else:
        from scratchattn.kernels.cuda import affine_grid

        n = case["n"]
        theta, xs, ys = np.ones((n - 1, 2, 3), np.float32), np.zeros(4, np.float32), np.zeros(3, np.float32)
        out = np.zeros((n, 3, 4, 2), np.float32)
        affine_grid.affine_grid_forward(theta, xs, ys, out, target="cuda-host")
    return {"outputs": [out], "grads": {}}


def main() -> int:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _robust_fuzz as fuzz

    # Messages go to the original stdout; anything the library prints goes to stderr instead of corrupting them.
    channel_in, channel_out = sys.stdin.buffer, os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr
    while True:
        case = fuzz.receive_message(channel_in)
        if case is None:
            return 0
        if case["op"] == "exit":
            channel_out.flush()
            os._exit(case["status"])
        if case["op"] == "segfault":
            import ctypes

            ctypes.string_at(0)  # what a kernel's wild read does to the process
        result = oob_control(case) if case["op"] == "oob_control" else fuzz.run_case(case)
        fuzz.send_message(channel_out, result)


if __name__ == "__main__":
    sys.exit(main())
