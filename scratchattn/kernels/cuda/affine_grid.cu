// CUDA kernels of the affine grid generator: the forward map theta -> grid and its gradient w.r.t. theta.
//
// The CPU twin is kernels/cpu/affine_grid.py (Numba): same kernel names, argument order and variable names; read
// the two side by side. This file is compiled once per dtype with -Dscalar_t=float or -Dscalar_t=double (same
// entry names in both builds), by NVRTC for the GPU and by the host shim for the CPU, so it stays in the plain
// style of the shim: extern "C" entry points, grid-stride loops with 64-bit indices, no shared memory, no
// __syncthreads, no host headers. All arrays are C-contiguous:
//
//   theta (n, 2, 3)   xs (w)   ys (h)   grid / grad_grid (n, h, w, 2)   row_sums (n, h, 2, 2)   grad_theta (n, 2, 3)
//
// xs and ys are the normalised base coordinates of the columns and rows (functional/affine_grid.py builds them, so
// the align_corners convention lives in one place). The math is in docs/derivations.md, "Affine grid generation":
//
//   forward    grid[n, i, j, k]    = theta[n, k, 0] * xs[j] + theta[n, k, 1] * ys[i] + theta[n, k, 2]
//   backward   grad_theta[n, k, :] = sum_{i, j} grad_grid[n, i, j, k] * (xs[j], ys[i], 1)
//
// The backward runs in two kernels because the sum factorises over rows (stage 1: one thread per row (n, i) sums
// over the row's w points; stage 2: one thread per entry (n, k, l) of grad_theta sums over the h rows). Every
// output element has exactly one writer and a fixed summation order: no atomics, and the result is deterministic.

// ------------------------------------------------------------------------------------------------------------------
// forward: one thread per grid point (n, i, j)
// ------------------------------------------------------------------------------------------------------------------

extern "C" __global__ void affine_grid_forward(const scalar_t* theta, const scalar_t* xs, const scalar_t* ys,
                                               scalar_t* grid, long long n, long long h, long long w) {
    const long long total = n * h * w;
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long point = (long long)blockIdx.x * blockDim.x + threadIdx.x; point < total; point += stride) {
        const long long j = point % w;
        const long long i = (point / w) % h;
        const long long b = point / (w * h);
        const scalar_t* t = theta + b * 6;
        // Same order of operations as the Numba twin: (a * x) + (row constant), the row constant folded first.
        const scalar_t cx = t[1] * ys[i] + t[2];
        const scalar_t cy = t[4] * ys[i] + t[5];
        grid[point * 2 + 0] = t[0] * xs[j] + cx;
        grid[point * 2 + 1] = t[3] * xs[j] + cy;
    }
}

// ------------------------------------------------------------------------------------------------------------------
// backward, stage 1: one thread per row (n, i)
//   row_sums[n, i, k, 0] = sum_j grad_grid[n, i, j, k] * xs[j]      row_sums[n, i, k, 1] = sum_j grad_grid[n, i, j, k]
// ------------------------------------------------------------------------------------------------------------------

extern "C" __global__ void affine_grid_backward_rows(const scalar_t* grad_grid, const scalar_t* xs, scalar_t* row_sums,
                                                     long long n, long long h, long long w) {
    const long long rows = n * h;
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long row = (long long)blockIdx.x * blockDim.x + threadIdx.x; row < rows; row += stride) {
        const scalar_t* g = grad_grid + row * w * 2;
        scalar_t sum_gx_x = 0, sum_gx = 0, sum_gy_x = 0, sum_gy = 0;
        for (long long j = 0; j < w; ++j) {
            const scalar_t gx = g[j * 2 + 0];
            const scalar_t gy = g[j * 2 + 1];
            sum_gx_x += gx * xs[j];
            sum_gx += gx;
            sum_gy_x += gy * xs[j];
            sum_gy += gy;
        }
        row_sums[row * 4 + 0] = sum_gx_x;
        row_sums[row * 4 + 1] = sum_gx;
        row_sums[row * 4 + 2] = sum_gy_x;
        row_sums[row * 4 + 3] = sum_gy;
    }
}

// ------------------------------------------------------------------------------------------------------------------
// backward, stage 2: one thread per entry (n, k, l) of grad_theta, summing over the h rows
//   grad_theta[n, k, 0] = sum_i row_sums[n, i, k, 0]
//   grad_theta[n, k, 1] = sum_i ys[i] * row_sums[n, i, k, 1]
//   grad_theta[n, k, 2] = sum_i row_sums[n, i, k, 1]
// ------------------------------------------------------------------------------------------------------------------

extern "C" __global__ void affine_grid_backward_theta(const scalar_t* row_sums, const scalar_t* ys,
                                                      scalar_t* grad_theta, long long n, long long h) {
    const long long entries = n * 6;
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long entry = (long long)blockIdx.x * blockDim.x + threadIdx.x; entry < entries; entry += stride) {
        const long long l = entry % 3;
        const long long k = (entry / 3) % 2;
        const long long b = entry / 6;
        const scalar_t* r = row_sums + b * h * 4 + k * 2;  // r[i * 4 + 0]: x-weighted sum, r[i * 4 + 1]: plain sum
        scalar_t total = 0;
        for (long long i = 0; i < h; ++i) {
            if (l == 0) {
                total += r[i * 4 + 0];
            } else if (l == 1) {
                total += ys[i] * r[i * 4 + 1];
            } else {
                total += r[i * 4 + 1];
            }
        }
        grad_theta[entry] = total;
    }
}
