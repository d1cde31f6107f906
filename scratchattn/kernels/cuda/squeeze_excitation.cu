// CUDA kernels of the fused squeeze-excitation op: the four passes over the big (N, C, H, W) arrays.
//
// The CPU twin is kernels/cpu/squeeze_excitation.py (Numba): same kernel names, the same arrays in the same order
// and the same variable names (n_batch, channels, hw; n, c, p), followed here by the sizes as `long long`. This file
// is compiled once per dtype with -Dscalar_t=float or -Dscalar_t=double, by NVRTC for the GPU and by the host shim
// for the CPU, so it keeps to the shim's plain style: extern "C" entry points, grid-stride loops with 64-bit
// indices, no shared memory, no __syncthreads, no host headers. The math (docs/derivations.md, section
// "Squeeze-and-excitation"), with p running over the hw = H*W pixels:
//
//   se_squeeze          z[n, c]     = mean_p x[n, c, p]
//   se_scale            y[n, c, p]  = x[n, c, p] * s[n, c]
//   se_backward_reduce  ds[n, c]    = sum_p g[n, c, p] * x[n, c, p]
//   se_backward_input   dx[n, c, p] = g[n, c, p] * s[n, c] + dz_hw[n, c]
//
// Each comes in two layouts: *_nchw on arrays (n_batch, channels, hw) and *_nhwc on arrays (n_batch, hw, channels);
// z, s, ds and dz_hw are (n_batch, channels). Both layouts split the work so that the 32 threads of a warp read 32
// neighbouring elements (coalesced loads), and so that no thread divides a 64-bit index per element:
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
