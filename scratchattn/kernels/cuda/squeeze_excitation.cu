// CUDA kernels of the fused squeeze-excitation op: the four passes over the big (N, C, H, W) arrays, and the two
// small matrix products of the forward's excitation.
//
// The CPU twin is kernels/cpu/squeeze_excitation.py (Numba): same kernel names, the same arrays in the same order
// and the same variable names (n_batch, channels, hw, hidden; n, c, p, j), followed here by the sizes as `long long`.
// This file is compiled once per dtype with -Dscalar_t=float or -Dscalar_t=double, by NVRTC for the GPU and by the
// host shim for the CPU, so it keeps to the shim's plain style: extern "C" entry points, grid-stride loops with
// 64-bit indices, no shared memory, no __syncthreads, no host headers. The math (docs/derivations.md, section
// "Squeeze-and-excitation"), with p running over the hw = H*W pixels and j over the hidden = C_r units:
//
//   se_squeeze          z[n, c]     = mean_p x[n, c, p]
//   se_hidden           r1[n, j]    = relu(sum_c z[n, c] w1[j, c] + b1[j])
//   se_gate             s[n, c]     = sigmoid(sum_j r1[n, j] w2[c, j] + b2[c])
//   se_scale            y[n, c, p]  = x[n, c, p] * s[n, c]
//   se_backward_reduce  ds[n, c]    = sum_p g[n, c, p] * x[n, c, p]
//   se_backward_input   dx[n, c, p] = g[n, c, p] * s[n, c] + dz_hw[n, c]
//
// (The launcher's se_forward_* runs se_squeeze, se_hidden, se_gate and se_scale one after another.) The big-array
// kernels come in two layouts: *_nchw on arrays (n_batch, channels, hw) and *_nhwc on arrays (n_batch, hw,
// channels); z, s, ds and dz_hw are (n_batch, channels), r1 is (n_batch, hidden). Both layouts split the work so
// that the 32 threads of a warp read 32 neighbouring elements (coalesced loads), and so that no thread divides a
// 64-bit index per element:
//
//   NCHW: one thread per (plane, lane), plane = n * channels + c. Lane k of a plane visits pixels k, k + lanes,
//         k + 2 lanes, ...; with lanes a multiple of 32, a warp sweeps 32 consecutive pixels of one plane at a time.
//   NHWC: one thread per (n, pixel block, c), c fastest. It visits the pixel_block pixels of its block; the threads
//         of a warp read 32 consecutive channels of one pixel. (The Numba twin uses the same pixel blocks.)
//
// The reductions add each thread's partial sum into the output with atomicAdd; the launcher zeroes the output
// first. That makes the order of the final additions vary from run to run on a GPU (results agree to rounding, not
// bitwise; the Numba twin, which uses a fixed order, is bitwise reproducible).

// ------------------------------------------------------------------------------------------------------------------
// The excitation: one thread per output, a dot product over C (se_hidden) or C_r (se_gate)
// ------------------------------------------------------------------------------------------------------------------
// The sums run in index order in double, as in the Numba twin, so that the two agree. A missing bias comes as
// has_b1 = 0 (has_b2 = 0) with a one-element placeholder array, which is never read. These arrays are small (N x C
// at most) and the launch is short, so plain per-thread loops suffice.

extern "C" __global__ void se_hidden(const scalar_t* z, const scalar_t* w1, const scalar_t* b1, scalar_t* r1,
                                     long long n_batch, long long channels, long long hidden, long long has_b1) {
    const long long total = n_batch * hidden;
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += stride) {
        const long long n = t / hidden;
        const long long j = t - n * hidden;
        const scalar_t* z_n = z + n * channels;
        const scalar_t* w1_j = w1 + j * channels;
        double acc = 0;
        for (long long c = 0; c < channels; ++c) acc += z_n[c] * w1_j[c];  // the product in scalar_t, as in Numba
        const double a1 = has_b1 ? acc + b1[j] : acc;
        r1[t] = (scalar_t)(a1 < 0.0 ? 0.0 : a1);  // relu; a NaN passes through
    }
}

extern "C" __global__ void se_gate(const scalar_t* r1, const scalar_t* w2, const scalar_t* b2, scalar_t* s,
                                   long long n_batch, long long channels, long long hidden, long long has_b2) {
    const long long total = n_batch * channels;
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += stride) {
        const long long n = t / channels;
        const long long c = t - n * channels;
        const scalar_t* r1_n = r1 + n * hidden;
        const scalar_t* w2_c = w2 + c * hidden;
        double acc = 0;
        for (long long j = 0; j < hidden; ++j) acc += r1_n[j] * w2_c[j];
        const double a2 = has_b2 ? acc + b2[c] : acc;
        // 1 / (1 + e^-a) overflows e^-a for very negative a; the tanh form is the same function and never does.
        s[t] = (scalar_t)(0.5 * (1.0 + tanh(0.5 * a2)));
    }
}

// ------------------------------------------------------------------------------------------------------------------
// NCHW: threads over (plane, lane)
// ------------------------------------------------------------------------------------------------------------------

extern "C" __global__ void se_squeeze_nchw(const scalar_t* x, scalar_t* z, long long n_batch, long long channels,
                                           long long hw, long long lanes) {
    const long long total = n_batch * channels * lanes;
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += stride) {
        const long long plane = t / lanes;
        const long long lane = t - plane * lanes;
        const scalar_t* plane_x = x + plane * hw;
        scalar_t acc = 0;
        for (long long p = lane; p < hw; p += lanes) acc += plane_x[p];
        atomicAdd(z + plane, acc / (scalar_t)hw);
    }
}

extern "C" __global__ void se_scale_nchw(const scalar_t* x, const scalar_t* s, scalar_t* y, long long n_batch,
                                         long long channels, long long hw, long long lanes) {
    const long long total = n_batch * channels * lanes;
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += stride) {
        const long long plane = t / lanes;
        const long long lane = t - plane * lanes;
        const scalar_t gate = s[plane];
        const scalar_t* plane_x = x + plane * hw;
        scalar_t* plane_y = y + plane * hw;
        for (long long p = lane; p < hw; p += lanes) plane_y[p] = plane_x[p] * gate;
    }
}

extern "C" __global__ void se_backward_reduce_nchw(const scalar_t* g, const scalar_t* x, scalar_t* ds,
                                                   long long n_batch, long long channels, long long hw,
                                                   long long lanes) {
    const long long total = n_batch * channels * lanes;
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += stride) {
        const long long plane = t / lanes;
        const long long lane = t - plane * lanes;
        const scalar_t* plane_g = g + plane * hw;
        const scalar_t* plane_x = x + plane * hw;
        scalar_t acc = 0;
        for (long long p = lane; p < hw; p += lanes) acc += plane_g[p] * plane_x[p];
        atomicAdd(ds + plane, acc);
    }
}

extern "C" __global__ void se_backward_input_nchw(const scalar_t* g, const scalar_t* s, const scalar_t* dz_hw,
                                                  scalar_t* dx, long long n_batch, long long channels, long long hw,
                                                  long long lanes) {
    const long long total = n_batch * channels * lanes;
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += stride) {
        const long long plane = t / lanes;
        const long long lane = t - plane * lanes;
        const scalar_t gate = s[plane];
        const scalar_t shift = dz_hw[plane];
        const scalar_t* plane_g = g + plane * hw;
        scalar_t* plane_dx = dx + plane * hw;
        for (long long p = lane; p < hw; p += lanes) plane_dx[p] = plane_g[p] * gate + shift;
    }
}

// ------------------------------------------------------------------------------------------------------------------
// NHWC: threads over (n, pixel block, c), c fastest
// ------------------------------------------------------------------------------------------------------------------

extern "C" __global__ void se_squeeze_nhwc(const scalar_t* x, scalar_t* z, long long n_batch, long long hw,
                                           long long channels, long long pixel_block) {
    const long long n_blocks = (hw + pixel_block - 1) / pixel_block;
    const long long total = n_batch * n_blocks * channels;
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += stride) {
        const long long c = t % channels;
        const long long block = (t / channels) % n_blocks;
        const long long n = t / (channels * n_blocks);
        const long long start = block * pixel_block;
        const long long stop = min(hw, start + pixel_block);
        scalar_t acc = 0;
        for (long long p = start; p < stop; ++p) acc += x[(n * hw + p) * channels + c];
        atomicAdd(z + n * channels + c, acc / (scalar_t)hw);
    }
}

extern "C" __global__ void se_scale_nhwc(const scalar_t* x, const scalar_t* s, scalar_t* y, long long n_batch,
                                         long long hw, long long channels, long long pixel_block) {
    const long long n_blocks = (hw + pixel_block - 1) / pixel_block;
    const long long total = n_batch * n_blocks * channels;
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += stride) {
        const long long c = t % channels;
        const long long block = (t / channels) % n_blocks;
        const long long n = t / (channels * n_blocks);
        const long long start = block * pixel_block;
        const long long stop = min(hw, start + pixel_block);
        const scalar_t gate = s[n * channels + c];
        for (long long p = start; p < stop; ++p) {
            const long long i = (n * hw + p) * channels + c;
            y[i] = x[i] * gate;
        }
    }
}

extern "C" __global__ void se_backward_reduce_nhwc(const scalar_t* g, const scalar_t* x, scalar_t* ds,
                                                   long long n_batch, long long hw, long long channels,
                                                   long long pixel_block) {
    const long long n_blocks = (hw + pixel_block - 1) / pixel_block;
    const long long total = n_batch * n_blocks * channels;
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += stride) {
        const long long c = t % channels;
        const long long block = (t / channels) % n_blocks;
        const long long n = t / (channels * n_blocks);
        const long long start = block * pixel_block;
        const long long stop = min(hw, start + pixel_block);
        scalar_t acc = 0;
        for (long long p = start; p < stop; ++p) {
            const long long i = (n * hw + p) * channels + c;
            acc += g[i] * x[i];
        }
        atomicAdd(ds + n * channels + c, acc);
    }
}

extern "C" __global__ void se_backward_input_nhwc(const scalar_t* g, const scalar_t* s, const scalar_t* dz_hw,
                                                  scalar_t* dx, long long n_batch, long long hw, long long channels,
                                                  long long pixel_block) {
    const long long n_blocks = (hw + pixel_block - 1) / pixel_block;
    const long long total = n_batch * n_blocks * channels;
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += stride) {
        const long long c = t % channels;
        const long long block = (t / channels) % n_blocks;
        const long long n = t / (channels * n_blocks);
        const long long start = block * pixel_block;
        const long long stop = min(hw, start + pixel_block);
        const scalar_t gate = s[n * channels + c];
        const scalar_t shift = dz_hw[n * channels + c];
        for (long long p = start; p < stop; ++p) {
            const long long i = (n * hw + p) * channels + c;
            dx[i] = g[i] * gate + shift;
        }
    }
}
