// CUDA kernels of grid sampling: the forward gather and the backward (gradients for the input and the grid).
//
// The CPU twin is kernels/cpu/grid_sample.py (Numba): the same helpers under the same names, the same variable names
// and the same formulas; read the two side by side. docs/derivations.md, section "Grid sampling", has the math. This
// file is compiled once per dtype with -Dscalar_t=float or -Dscalar_t=double (same entry names in both builds), by
// NVRTC for the GPU and by the host shim for the CPU, so it keeps the shim's plain style: extern "C" entry points,
// grid-stride loops with 64-bit indices, no shared memory, no __syncthreads, no host headers.
//
// Arrays are C-contiguous. The input is (N, C, H, W) or, with channels_last, (N, H, W, C); the output (N, C, H_out,
// W_out) or (N, H_out, W_out, C); the grid (N, H_out, W_out, 2). A pixel offset o = y * W + x and a channel c sit at
//
//   NCHW:  inp[(n * C + c) * H * W + o]          NHWC:  inp[(n * H * W + o) * C + c]
//
// i.e. at n * C*H*W + o * pixel_stride + c * channel_stride, with (pixel_stride, channel_stride) = (1, H*W) or (C, 1).
//
// One thread per output pixel (n, h, w) (the channels-last forward: a few threads per pixel, see there). It works out the pixel's taps, the input pixels the mode reads (bilinear 4,
// nearest 1, bicubic 16), each with an offset (-1 outside the image), a weight and the weight's derivatives with
// respect to the two grid coordinates; then it loops over the channels:
//
//   forward    out[n, c, h, w]          = sum_k weight_k * inp[n, c, tap_k]
//   backward   grad_inp[n, c, tap_k]   += weight_k * g[n, c, h, w]                    (atomicAdd: taps are shared)
//              grad_grid[n, h, w, 0]    = sum_c sum_k dweight_dx_k * g[n, c, h, w] * inp[n, c, tap_k]   (likewise y)
//
// grad_inp must be zeroed by the launcher. The grid gradient has one writer per pixel: no atomics, fixed order.
// The atomicAdds make grad_inp vary in its last bits from run to run on a GPU; grid_sample_backward_input_planes (at
// the end of the file) is the deterministic alternative the launcher uses in deterministic mode.
//
// Coordinates are checked with floating-point comparisons before any conversion to an integer, so NaN, Inf and huge
// grid values never become out-of-bounds indices (converting them to an integer is undefined behaviour).

#define BILINEAR 0
#define NEAREST 1
#define BICUBIC 2
#define ZEROS 0
#define BORDER 1
#define REFLECTION 2
#define CUBIC_A ((scalar_t)-0.75)

// ------------------------------------------------------------------------------------------------------------------
// coordinates: unnormalize, clip, reflect, pad (each with its derivative); pixel_index
// ------------------------------------------------------------------------------------------------------------------

// Pixel coordinate of a normalised coordinate; *d_coord = d(pixel)/d(coord).
//   align_corners:  -1, +1 are the centres of the border pixels:   ix = (coord + 1) / 2 * (size - 1)
//   otherwise:      -1, +1 are their outer edges:                  ix = ((coord + 1) * size - 1) / 2
__device__ inline scalar_t unnormalize(scalar_t coord, long long size, bool align_corners, scalar_t* d_coord) {
    if (align_corners) {
        *d_coord = (scalar_t)0.5 * (scalar_t)(size - 1);
        return (coord + (scalar_t)1) * (scalar_t)0.5 * (scalar_t)(size - 1);
    }
    *d_coord = (scalar_t)0.5 * (scalar_t)size;
    return ((coord + (scalar_t)1) * (scalar_t)size - (scalar_t)1) * (scalar_t)0.5;
}

// coord clamped to [0, size - 1]; the slope is 0 where clamped, on the borders too (as PyTorch), and NaN clamps to 0.
__device__ inline scalar_t clip_coordinate(scalar_t coord, long long size, scalar_t* slope) {
    if (!(coord > (scalar_t)0)) {  // written with ! so that NaN lands here too
        *slope = (scalar_t)0;
        return (scalar_t)0;
    }
    if (coord >= (scalar_t)(size - 1)) {
        *slope = (scalar_t)0;
        return (scalar_t)(size - 1);
    }
    *slope = (scalar_t)1;
    return coord;
}

// coord mirrored into [lo, lo + span] at the image edges; *slope = +1 or -1. Mirrors at the border pixels' centres
// (lo = 0, span = size - 1) with align_corners, at their outer edges (lo = -0.5, span = size) without. Periodic with
// period 2 span: fmod folds |coord - lo| into [0, 2 span) (exact for any finite value), the second half is mirrored
// back, and each mirror flips the slope. Inf and NaN give NaN, which the clip that follows sends to 0.
__device__ inline scalar_t reflect_coordinate(scalar_t coord, long long size, bool align_corners, scalar_t* slope) {
    const scalar_t lo = align_corners ? (scalar_t)0 : (scalar_t)-0.5;
    const scalar_t span = align_corners ? (scalar_t)(size - 1) : (scalar_t)size;
    if (span == (scalar_t)0) {  // one pixel with align_corners: everything maps onto it
        *slope = (scalar_t)0;
        return (scalar_t)0;
    }
    scalar_t distance = coord - lo;
    *slope = (scalar_t)1;
    if (distance < (scalar_t)0) {
        distance = -distance;
        *slope = -*slope;
    }
    distance = fmod(distance, (scalar_t)2 * span);
    if (distance > span) {
        distance = (scalar_t)2 * span - distance;
        *slope = -*slope;
    }
    return distance + lo;
}

// The padding mode applied to a pixel coordinate; *slope = its derivative. zeros: unchanged (outside reads 0);
// border: clipped; reflection: reflected, then clipped.
__device__ inline scalar_t pad_coordinate(scalar_t coord, long long size, long long padding_mode, bool align_corners,
                                          scalar_t* slope) {
    if (padding_mode == BORDER) return clip_coordinate(coord, size, slope);
    if (padding_mode == REFLECTION) {
        scalar_t reflect_slope, clip_slope;
        coord = reflect_coordinate(coord, size, align_corners, &reflect_slope);
        coord = clip_coordinate(coord, size, &clip_slope);
        *slope = reflect_slope * clip_slope;
        return coord;
    }
    *slope = (scalar_t)1;
    return coord;
}

// The index of an integer-valued float coordinate if it is a pixel of an axis of `size`, else -1. The test is made
// on the float, before the conversion, so NaN, Inf and huge values are never converted.
__device__ inline long long pixel_index(scalar_t coord, long long size) {
    if (coord >= (scalar_t)0 && coord <= (scalar_t)(size - 1)) return (long long)coord;
    return -1;
}

__device__ inline long long tap_offset(long long y, long long x, long long W) {
    return (y >= 0 && x >= 0) ? y * W + x : -1;
}

// ------------------------------------------------------------------------------------------------------------------
// cubic convolution weights (Keys, A = -0.75) and their derivatives
// ------------------------------------------------------------------------------------------------------------------

// Kernel at distance d in [0, 1]: (A + 2) d^3 - (A + 3) d^2 + 1; in [1, 2]: A d^3 - 5A d^2 + 8A d - 4A.
__device__ inline scalar_t cubic_near(scalar_t d) {
    return ((CUBIC_A + (scalar_t)2) * d - (CUBIC_A + (scalar_t)3)) * d * d + (scalar_t)1;
}
__device__ inline scalar_t cubic_far(scalar_t d) {
    return ((CUBIC_A * d - (scalar_t)5 * CUBIC_A) * d + (scalar_t)8 * CUBIC_A) * d - (scalar_t)4 * CUBIC_A;
}
__device__ inline scalar_t cubic_near_slope(scalar_t d) {
    return ((scalar_t)3 * (CUBIC_A + (scalar_t)2) * d - (scalar_t)2 * (CUBIC_A + (scalar_t)3)) * d;
}
__device__ inline scalar_t cubic_far_slope(scalar_t d) {
    return ((scalar_t)3 * CUBIC_A * d - (scalar_t)10 * CUBIC_A) * d + (scalar_t)8 * CUBIC_A;
}

// Weight of tap x0 - 1 + i (i = 0..3) for frac = ix - x0: the kernel at distance frac + 1, frac, 1 - frac, 2 - frac.
__device__ inline scalar_t cubic_weight(scalar_t frac, int i) {
    if (i == 0) return cubic_far(frac + (scalar_t)1);
    if (i == 1) return cubic_near(frac);
    if (i == 2) return cubic_near((scalar_t)1 - frac);
    return cubic_far((scalar_t)2 - frac);
}

// d/d(frac) of cubic_weight: the distances of taps 2 and 3 shrink as frac grows, hence their minus signs.
__device__ inline scalar_t cubic_weight_slope(scalar_t frac, int i) {
    if (i == 0) return cubic_far_slope(frac + (scalar_t)1);
    if (i == 1) return cubic_near_slope(frac);
    if (i == 2) return -cubic_near_slope((scalar_t)1 - frac);
    return -cubic_far_slope((scalar_t)2 - frac);
}

// ------------------------------------------------------------------------------------------------------------------
// the taps of one output pixel, per mode; gx, gy are its grid coordinates. Each fills offset[k], weight[k],
// dweight_dx[k], dweight_dy[k] for its K taps (4, 1, 16).
// ------------------------------------------------------------------------------------------------------------------

// The corners (y0, x0), (y0, x1), (y1, x0), (y1, x1) around (ix, iy), x0 = floor(ix), x1 = x0 + 1 (likewise y), with
// weights (1-wx)(1-wy), wx(1-wy), (1-wx)wy, wx wy for wx = ix - x0, wy = iy - y0.
__device__ inline void bilinear_taps(scalar_t gx, scalar_t gy, long long H, long long W, long long padding_mode,
                                    bool align_corners, long long* offset, scalar_t* weight, scalar_t* dweight_dx,
                                    scalar_t* dweight_dy) {
    scalar_t dix, diy, pad_slope;
    scalar_t ix = unnormalize(gx, W, align_corners, &dix);
    scalar_t iy = unnormalize(gy, H, align_corners, &diy);
    ix = pad_coordinate(ix, W, padding_mode, align_corners, &pad_slope);
    dix *= pad_slope;
    iy = pad_coordinate(iy, H, padding_mode, align_corners, &pad_slope);
    diy *= pad_slope;
    const scalar_t x0f = floor(ix);
    const scalar_t y0f = floor(iy);
    const scalar_t wx = ix - x0f;
    const scalar_t wy = iy - y0f;
    const long long x0 = pixel_index(x0f, W);
    const long long x1 = pixel_index(x0f + (scalar_t)1, W);
    const long long y0 = pixel_index(y0f, H);
    const long long y1 = pixel_index(y0f + (scalar_t)1, H);
    const scalar_t one = (scalar_t)1;
    offset[0] = tap_offset(y0, x0, W);
    offset[1] = tap_offset(y0, x1, W);
    offset[2] = tap_offset(y1, x0, W);
    offset[3] = tap_offset(y1, x1, W);
    weight[0] = (one - wx) * (one - wy);
    weight[1] = wx * (one - wy);
    weight[2] = (one - wx) * wy;
    weight[3] = wx * wy;
    // d wx/d gx = dix and d wy/d gy = diy, so that e.g. d[(1-wx)(1-wy)]/d gx = -(1-wy) dix.
    dweight_dx[0] = -(one - wy) * dix;
    dweight_dx[1] = (one - wy) * dix;
    dweight_dx[2] = -wy * dix;
    dweight_dx[3] = wy * dix;
    dweight_dy[0] = -(one - wx) * diy;
    dweight_dy[1] = -wx * diy;
    dweight_dy[2] = (one - wx) * diy;
    dweight_dy[3] = wx * diy;
}

// The pixel (rint(iy), rint(ix)), halves rounded to even (nearbyint in the default rounding mode), weight 1. The
// output is piecewise constant in the grid: the derivatives are 0.
__device__ inline void nearest_tap(scalar_t gx, scalar_t gy, long long H, long long W, long long padding_mode,
                                  bool align_corners, long long* offset, scalar_t* weight, scalar_t* dweight_dx,
                                  scalar_t* dweight_dy) {
    scalar_t unused;
    scalar_t ix = unnormalize(gx, W, align_corners, &unused);
    scalar_t iy = unnormalize(gy, H, align_corners, &unused);
    ix = pad_coordinate(ix, W, padding_mode, align_corners, &unused);
    iy = pad_coordinate(iy, H, padding_mode, align_corners, &unused);
    offset[0] = tap_offset(pixel_index(nearbyint(iy), H), pixel_index(nearbyint(ix), W), W);
    weight[0] = (scalar_t)1;
    dweight_dx[0] = (scalar_t)0;
    dweight_dy[0] = (scalar_t)0;
}

// The index of the integer-valued tap coordinate `coord` after padding, or -1 when it lies outside the axis.
__device__ inline long long axis_index(scalar_t coord, long long size, long long padding_mode, bool align_corners) {
    scalar_t unused;
    return pixel_index(pad_coordinate(coord, size, padding_mode, align_corners, &unused), size);
}

// The 4 x 4 taps (pad(y0 - 1 + j), pad(x0 - 1 + i)) around the *unpadded* (ix, iy), x0 = floor(ix), with weights
// cubic_weight(fy, j) * cubic_weight(fx, i) for the fractions fx = ix - x0, fy = iy - y0; tap k = 4 j + i. The
// padding moves whole tap indices, which are integers: it has no derivative; only unnormalize has.
__device__ inline void bicubic_taps(scalar_t gx, scalar_t gy, long long H, long long W, long long padding_mode,
                                   bool align_corners, long long* offset, scalar_t* weight, scalar_t* dweight_dx,
                                   scalar_t* dweight_dy) {
    scalar_t dix, diy;
    const scalar_t ix = unnormalize(gx, W, align_corners, &dix);
    const scalar_t iy = unnormalize(gy, H, align_corners, &diy);
    const scalar_t x0f = floor(ix);
    const scalar_t y0f = floor(iy);
    const scalar_t fx = ix - x0f;
    const scalar_t fy = iy - y0f;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const long long y = axis_index(y0f + (scalar_t)(j - 1), H, padding_mode, align_corners);
        const scalar_t wy = cubic_weight(fy, j);
        const scalar_t dwy = cubic_weight_slope(fy, j) * diy;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const long long x = axis_index(x0f + (scalar_t)(i - 1), W, padding_mode, align_corners);
            const scalar_t wx = cubic_weight(fx, i);
            const int k = 4 * j + i;
            offset[k] = tap_offset(y, x, W);
            weight[k] = wy * wx;
            dweight_dx[k] = wy * cubic_weight_slope(fx, i) * dix;
            dweight_dy[k] = dwy * wx;
        }
    }
}

// The number of taps of a mode, and the taps of one pixel for a mode known at compile time: with MODE a template
// parameter every tap index below is a constant, so the small tap arrays live in registers, not in local memory.
template <int MODE>
struct Mode {
    static constexpr int K = MODE == BILINEAR ? 4 : (MODE == NEAREST ? 1 : 16);
};

template <int MODE>
__device__ inline void pixel_taps(scalar_t gx, scalar_t gy, long long H, long long W, long long padding_mode,
                                  bool align_corners, long long* offset, scalar_t* weight, scalar_t* dweight_dx,
                                  scalar_t* dweight_dy) {
    if constexpr (MODE == BILINEAR)
        bilinear_taps(gx, gy, H, W, padding_mode, align_corners, offset, weight, dweight_dx, dweight_dy);
    else if constexpr (MODE == NEAREST)
        nearest_tap(gx, gy, H, W, padding_mode, align_corners, offset, weight, dweight_dx, dweight_dy);
    else
        bicubic_taps(gx, gy, H, W, padding_mode, align_corners, offset, weight, dweight_dx, dweight_dy);
}

// ------------------------------------------------------------------------------------------------------------------
// forward: one thread per output pixel (n, h, w), looping over the channels
// ------------------------------------------------------------------------------------------------------------------

template <int MODE>
__device__ inline void forward_pixels(const scalar_t* inp, const scalar_t* grid, scalar_t* out, long long N,
                                      long long C, long long H, long long W, long long H_out, long long W_out,
                                      long long padding_mode, bool align_corners, bool channels_last) {
    constexpr int K = Mode<MODE>::K;
    const long long P_out = H_out * W_out;
    const long long total = N * P_out;
    const long long pixel_stride = channels_last ? C : 1, channel_stride = channels_last ? 1 : H * W;
    const long long out_pixel_stride = channels_last ? C : 1, out_channel_stride = channels_last ? 1 : P_out;
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long pixel = (long long)blockIdx.x * blockDim.x + threadIdx.x; pixel < total; pixel += stride) {
        const long long n = pixel / P_out;
        const long long p = pixel - n * P_out;  // h * W_out + w
        long long offset[K];
        scalar_t weight[K], dweight_dx[K], dweight_dy[K];
        pixel_taps<MODE>(grid[2 * pixel], grid[2 * pixel + 1], H, W, padding_mode, align_corners, offset, weight,
                         dweight_dx, dweight_dy);
        const scalar_t* image = inp + n * C * H * W;
        scalar_t* target = out + n * C * P_out + p * out_pixel_stride;
        for (long long c = 0; c < C; ++c) {
            scalar_t acc = (scalar_t)0;
#pragma unroll
            for (int k = 0; k < K; ++k) {
                if (offset[k] >= 0) acc += weight[k] * image[offset[k] * pixel_stride + c * channel_stride];
            }
            target[c * out_channel_stride] = acc;
        }
    }
}

extern "C" __global__ void grid_sample_forward(const scalar_t* inp, const scalar_t* grid, scalar_t* out, long long N,
                                               long long C, long long H, long long W, long long H_out,
                                               long long W_out, long long mode, long long padding_mode,
                                               long long align_corners, long long channels_last) {
    if (mode == BILINEAR)
        forward_pixels<BILINEAR>(inp, grid, out, N, C, H, W, H_out, W_out, padding_mode, align_corners != 0,
                                 channels_last != 0);
    else if (mode == NEAREST)
        forward_pixels<NEAREST>(inp, grid, out, N, C, H, W, H_out, W_out, padding_mode, align_corners != 0,
                                channels_last != 0);
    else
        forward_pixels<BICUBIC>(inp, grid, out, N, C, H, W, H_out, W_out, padding_mode, align_corners != 0,
                                channels_last != 0);
}

// ------------------------------------------------------------------------------------------------------------------
// forward, channels last: `lanes` threads per output pixel, each taking every lanes-th channel
// ------------------------------------------------------------------------------------------------------------------

// With channels last, one thread per pixel makes the 32 threads of a warp read 32 pixels' channels C elements apart:
// every load touches its own cache line. Here the lanes of a pixel (lanes = 2^lanes_log2, up to 32, chosen by the
// launcher from C) read neighbouring channels of the same taps, so a warp's loads and stores are contiguous. Each
// lane works out the pixel's taps itself: a few dozen operations, cheap next to the loads they make coalesced.
template <int MODE>
__device__ inline void forward_lanes_channels_last(const scalar_t* inp, const scalar_t* grid, scalar_t* out,
                                                   long long N, long long C, long long H, long long W,
                                                   long long H_out, long long W_out, long long padding_mode,
                                                   bool align_corners, long long lanes_log2) {
    constexpr int K = Mode<MODE>::K;
    const long long lanes = 1LL << lanes_log2;
    const long long P_out = H_out * W_out;
    const long long total = (N * P_out) << lanes_log2;
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += stride) {
        const long long pixel = t >> lanes_log2;  // n * P_out + h * W_out + w
        const long long lane = t & (lanes - 1);
        const long long n = pixel / P_out;
        long long offset[K];
        scalar_t weight[K], dweight_dx[K], dweight_dy[K];
        pixel_taps<MODE>(grid[2 * pixel], grid[2 * pixel + 1], H, W, padding_mode, align_corners, offset, weight,
                         dweight_dx, dweight_dy);
        const scalar_t* image = inp + n * H * W * C;
        scalar_t* target = out + pixel * C;
        for (long long c = lane; c < C; c += lanes) {
            scalar_t acc = (scalar_t)0;
#pragma unroll
            for (int k = 0; k < K; ++k) {
                if (offset[k] >= 0) acc += weight[k] * image[offset[k] * C + c];
            }
            target[c] = acc;
        }
    }
}

extern "C" __global__ void grid_sample_forward_channels_last(const scalar_t* inp, const scalar_t* grid, scalar_t* out,
                                                             long long N, long long C, long long H, long long W,
                                                             long long H_out, long long W_out, long long mode,
                                                             long long padding_mode, long long align_corners,
                                                             long long lanes_log2) {
    if (mode == BILINEAR)
        forward_lanes_channels_last<BILINEAR>(inp, grid, out, N, C, H, W, H_out, W_out, padding_mode,
                                              align_corners != 0, lanes_log2);
    else if (mode == NEAREST)
        forward_lanes_channels_last<NEAREST>(inp, grid, out, N, C, H, W, H_out, W_out, padding_mode,
                                             align_corners != 0, lanes_log2);
    else
        forward_lanes_channels_last<BICUBIC>(inp, grid, out, N, C, H, W, H_out, W_out, padding_mode,
                                             align_corners != 0, lanes_log2);
}

// ------------------------------------------------------------------------------------------------------------------
// backward: one thread per output pixel; atomicAdd into grad_inp (zeroed by the launcher), one write of grad_grid
// ------------------------------------------------------------------------------------------------------------------

template <int MODE>
__device__ inline void backward_pixels(const scalar_t* grad_out, const scalar_t* inp, const scalar_t* grid,
                                       scalar_t* grad_inp, scalar_t* grad_grid, long long N, long long C, long long H,
                                       long long W, long long H_out, long long W_out, long long padding_mode,
                                       bool align_corners, bool channels_last, bool need_grad_inp,
                                       bool need_grad_grid) {
    constexpr int K = Mode<MODE>::K;
    const long long P_out = H_out * W_out;
    const long long total = N * P_out;
    const long long pixel_stride = channels_last ? C : 1, channel_stride = channels_last ? 1 : H * W;
    const long long out_pixel_stride = channels_last ? C : 1, out_channel_stride = channels_last ? 1 : P_out;
    const bool need_dots = need_grad_grid && MODE != NEAREST;  // nearest: the grid gradient is 0
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long pixel = (long long)blockIdx.x * blockDim.x + threadIdx.x; pixel < total; pixel += stride) {
        const long long n = pixel / P_out;
        const long long p = pixel - n * P_out;
        long long offset[K];
        scalar_t weight[K], dweight_dx[K], dweight_dy[K];
        pixel_taps<MODE>(grid[2 * pixel], grid[2 * pixel + 1], H, W, padding_mode, align_corners, offset, weight,
                         dweight_dx, dweight_dy);
        const long long image_start = n * C * H * W;
        const scalar_t* g = grad_out + n * C * P_out + p * out_pixel_stride;
        scalar_t gx = (scalar_t)0, gy = (scalar_t)0;
        for (long long c = 0; c < C; ++c) {
            const scalar_t g_c = g[c * out_channel_stride];
#pragma unroll
            for (int k = 0; k < K; ++k) {
                if (offset[k] < 0) continue;
                const long long at = image_start + offset[k] * pixel_stride + c * channel_stride;
                if (need_dots) {
                    const scalar_t gv = g_c * inp[at];
                    gx += dweight_dx[k] * gv;
                    gy += dweight_dy[k] * gv;
                }
                if (need_grad_inp) atomicAdd(grad_inp + at, weight[k] * g_c);
            }
        }
        if (need_grad_grid) {
            grad_grid[2 * pixel] = gx;
            grad_grid[2 * pixel + 1] = gy;
        }
    }
}

extern "C" __global__ void grid_sample_backward(const scalar_t* grad_out, const scalar_t* inp, const scalar_t* grid,
                                                scalar_t* grad_inp, scalar_t* grad_grid, long long N, long long C,
                                                long long H, long long W, long long H_out, long long W_out,
                                                long long mode, long long padding_mode, long long align_corners,
                                                long long channels_last, long long need_grad_inp,
                                                long long need_grad_grid) {
    if (mode == BILINEAR)
        backward_pixels<BILINEAR>(grad_out, inp, grid, grad_inp, grad_grid, N, C, H, W, H_out, W_out, padding_mode,
                                  align_corners != 0, channels_last != 0, need_grad_inp != 0, need_grad_grid != 0);
    else if (mode == NEAREST)
        backward_pixels<NEAREST>(grad_out, inp, grid, grad_inp, grad_grid, N, C, H, W, H_out, W_out, padding_mode,
                                 align_corners != 0, channels_last != 0, need_grad_inp != 0, need_grad_grid != 0);
    else
        backward_pixels<BICUBIC>(grad_out, inp, grid, grad_inp, grad_grid, N, C, H, W, H_out, W_out, padding_mode,
                                 align_corners != 0, channels_last != 0, need_grad_inp != 0, need_grad_grid != 0);
}

// ------------------------------------------------------------------------------------------------------------------
// deterministic backward for the input: one thread per (n, c) plane of grad_inp, no atomics
// ------------------------------------------------------------------------------------------------------------------

// The thread of plane (n, c) walks the output pixels of image n in order and adds each tap's weight * g with a plain
// +=: it is the only writer of its plane and adds in a fixed order, so grad_inp is the same bit for bit on every run
// (and on any GPU). The launcher zeroes grad_inp and computes the grid gradient with grid_sample_backward,
// need_grad_inp = 0. Costs: the taps of a pixel are recomputed for each channel, and there are only N * C threads.
template <int MODE>
__device__ inline void backward_input_planes(const scalar_t* grad_out, const scalar_t* grid, scalar_t* grad_inp,
                                             long long N, long long C, long long H, long long W, long long H_out,
                                             long long W_out, long long padding_mode, bool align_corners,
                                             bool channels_last) {
    constexpr int K = Mode<MODE>::K;
    const long long P_out = H_out * W_out;
    const long long pixel_stride = channels_last ? C : 1, channel_stride = channels_last ? 1 : H * W;
    const long long out_pixel_stride = channels_last ? C : 1, out_channel_stride = channels_last ? 1 : P_out;
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long plane = (long long)blockIdx.x * blockDim.x + threadIdx.x; plane < N * C; plane += stride) {
        const long long n = plane / C;
        const long long c = plane - n * C;
        scalar_t* target = grad_inp + n * C * H * W + c * channel_stride;
        const scalar_t* g = grad_out + n * C * P_out + c * out_channel_stride;
        for (long long p = 0; p < P_out; ++p) {
            long long offset[K];
            scalar_t weight[K], dweight_dx[K], dweight_dy[K];
            const long long pixel = n * P_out + p;
            pixel_taps<MODE>(grid[2 * pixel], grid[2 * pixel + 1], H, W, padding_mode, align_corners, offset, weight,
                             dweight_dx, dweight_dy);
            const scalar_t g_c = g[p * out_pixel_stride];
#pragma unroll
            for (int k = 0; k < K; ++k) {
                if (offset[k] >= 0) target[offset[k] * pixel_stride] += weight[k] * g_c;
            }
        }
    }
}

extern "C" __global__ void grid_sample_backward_input_planes(const scalar_t* grad_out, const scalar_t* grid,
                                                             scalar_t* grad_inp, long long N, long long C, long long H,
                                                             long long W, long long H_out, long long W_out,
                                                             long long mode, long long padding_mode,
                                                             long long align_corners, long long channels_last) {
    if (mode == BILINEAR)
        backward_input_planes<BILINEAR>(grad_out, grid, grad_inp, N, C, H, W, H_out, W_out, padding_mode,
                                        align_corners != 0, channels_last != 0);
    else if (mode == NEAREST)
        backward_input_planes<NEAREST>(grad_out, grid, grad_inp, N, C, H, W, H_out, W_out, padding_mode,
                                       align_corners != 0, channels_last != 0);
    else
        backward_input_planes<BICUBIC>(grad_out, grid, grad_inp, N, C, H, W, H_out, W_out, padding_mode,
                                       align_corners != 0, channels_last != 0);
}
