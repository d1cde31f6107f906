// cuda_host.h - the host shim: just enough of CUDA for the project's .cu kernels to compile with a C++ compiler
// and run on the CPU.
//
// The launcher (host/__init__.py) compiles a kernel file as C++ with `-include cuda_host.h`, appends one generated
// `scratchattn_launch_<kernel>` function per `extern "C" __global__` kernel, and calls those through ctypes. A launch
// walks the grid of blocks - one after another, or spread over a few std::threads when SCRATCHATTN_HOST_THREADS > 1 -
// and inside a block calls the kernel once per thread, one after another. That is a legal CUDA schedule for kernels
// whose threads do not wait for each other, which is why the project's kernels use neither shared memory nor
// __syncthreads (both are rejected below with a message), and why scatters must use atomicAdd: with blocks in
// parallel a plain `+=` from two blocks loses updates here exactly as it would on a GPU.
//
// Only this header includes host headers: the kernels themselves must not, because NVRTC (the compiler CuPy uses)
// has none. The compile gate (tests/kernels/test_cuda_compile.py) compiles every kernel with NVRTC, so anything
// this shim accepts but a GPU would refuse is caught there.
#pragma once

#include <math.h>    // in C++ this also brings the float overloads (floor(float), exp(float), ...) that CUDA has
#include <stdio.h>   // device printf

#include <atomic>
#include <thread>
#include <vector>

// ---- qualifiers: all code is ordinary host code here -------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
// __restrict__ is a GCC/Clang keyword already.

#define __shared__ static_assert(false, "cuda_host: __shared__ memory is not supported; the host shim runs the threads of a block one after another");
#define __syncthreads() static_assert(false, "cuda_host: __syncthreads is not supported; the host shim runs the threads of a block one after another")

// ---- built-in index variables: one set per OS thread, set by the launch loop below -----------------------------
struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
};

static thread_local uint3 threadIdx;
static thread_local uint3 blockIdx;
static thread_local dim3 blockDim;
static thread_local dim3 gridDim;
static const int warpSize = 32;

// ---- atomics: the overloads CUDA has (there is no signed 64-bit atomicAdd in CUDA, so none here either) ----------
// Integers use the compiler's fetch-add; floating point a compare-and-swap loop on the value, as GPUs did before they
// had native float atomics. Relaxed ordering is what CUDA guarantees for atomicAdd.
template <typename T>
static inline T cuda_host_atomic_add_int(T* address, T value) {
    return __atomic_fetch_add(address, value, __ATOMIC_RELAXED);
}
template <typename T>
static inline T cuda_host_atomic_add_float(T* address, T value) {
    T old;
    __atomic_load(address, &old, __ATOMIC_RELAXED);
    T updated = old + value;
    // On failure `old` is reloaded with the current value; retry until no other thread wrote in between.
    while (!__atomic_compare_exchange(address, &old, &updated, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
        updated = old + value;
    }
    return old;
}
static inline int atomicAdd(int* a, int v) { return cuda_host_atomic_add_int(a, v); }
static inline unsigned int atomicAdd(unsigned int* a, unsigned int v) { return cuda_host_atomic_add_int(a, v); }
static inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) {
    return cuda_host_atomic_add_int(a, v);
}
static inline float atomicAdd(float* a, float v) { return cuda_host_atomic_add_float(a, v); }
static inline double atomicAdd(double* a, double v) { return cuda_host_atomic_add_float(a, v); }

static inline int atomicExch(int* a, int v) { return __atomic_exchange_n(a, v, __ATOMIC_RELAXED); }
static inline int atomicCAS(int* a, int compare, int v) {
    __atomic_compare_exchange_n(a, &compare, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return compare;  // the old value, whether or not the swap happened
}
static inline int atomicMax(int* a, int v) {
    int old = __atomic_load_n(a, __ATOMIC_RELAXED);
    while (old < v && !__atomic_compare_exchange_n(a, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return old;
}
static inline int atomicMin(int* a, int v) {
    int old = __atomic_load_n(a, __ATOMIC_RELAXED);
    while (old > v && !__atomic_compare_exchange_n(a, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return old;
}

// ---- device math that <math.h> lacks ----------------------------------------------------------------------------
// min/max are overloaded per type in CUDA device code (not templates), so mixed-type calls are errors there too.
#define CUDA_HOST_MIN_MAX(T)                                  \
    static inline T min(T a, T b) { return b < a ? b : a; } \
    static inline T max(T a, T b) { return a < b ? b : a; }
CUDA_HOST_MIN_MAX(int)
CUDA_HOST_MIN_MAX(unsigned int)
CUDA_HOST_MIN_MAX(long long)
CUDA_HOST_MIN_MAX(unsigned long long)
CUDA_HOST_MIN_MAX(float)
CUDA_HOST_MIN_MAX(double)
#undef CUDA_HOST_MIN_MAX

static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
static inline float rsqrt(float x) { return rsqrtf(x); }
// glibc declares __expf/__logf itself; macros (defined after <math.h>) work with or without those declarations.
#define __expf(x) expf(x)
#define __logf(x) logf(x)
static inline float __fdividef(float x, float y) { return x / y; }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
template <typename T>
static inline T __ldg(const T* p) { return *p; }

// ---- the launch loop ---------------------------------------------------------------------------------------------
// dims = {grid.x, grid.y, grid.z, block.x, block.y, block.z}. `kernel_call` calls the kernel with its arguments;
// it reads the index variables above, which each worker sets before every call.
template <typename KernelCall>
static int cuda_host_run_grid(const unsigned int* dims, int threads, KernelCall kernel_call) {
    const dim3 grid{dims[0], dims[1], dims[2]};
    const dim3 block{dims[3], dims[4], dims[5]};
    const unsigned long long n_blocks = 1ull * grid.x * grid.y * grid.z;
    std::atomic<unsigned long long> next_block{0};

    auto worker = [&]() {
        gridDim = grid;
        blockDim = block;
        // Blocks are handed out one at a time, so a worker that finishes early takes the next one.
        for (unsigned long long b = next_block++; b < n_blocks; b = next_block++) {
            blockIdx = uint3{(unsigned int)(b % grid.x), (unsigned int)(b / grid.x % grid.y),
                             (unsigned int)(b / grid.x / grid.y)};
            for (unsigned int z = 0; z < block.z; ++z)
                for (unsigned int y = 0; y < block.y; ++y)
                    for (unsigned int x = 0; x < block.x; ++x) {
                        threadIdx = uint3{x, y, z};
                        kernel_call();
                    }
        }
    };

    if (threads <= 1 || n_blocks <= 1) {
        worker();
        return 0;
    }
    std::vector<std::thread> pool;
    const unsigned long long extra = (unsigned long long)threads - 1 < n_blocks - 1 ? threads - 1 : n_blocks - 1;
    for (unsigned long long t = 0; t < extra; ++t) pool.emplace_back(worker);
    worker();  // the calling thread works too
    for (auto& t : pool) t.join();
    return 0;
}
