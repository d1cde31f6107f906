// Test-only kernels for the CUDA launcher, the host shim and the NVRTC gate (tests/kernels/test_cuda_*.py).
// Written in the house style of the real kernels: extern "C" entry points compiled once per scalar_t, grid-stride
// loops with 64-bit indices, scatters through atomicAdd into outputs zeroed by the caller.

__device__ __forceinline__ scalar_t twice(scalar_t v) { return v + v; }

// out[i] = 2 * in[i] + shift, for i < n.
extern "C" __global__ void toy_scale_copy(const scalar_t* __restrict__ in, scalar_t* __restrict__ out, long long n,
                                          scalar_t shift) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += stride) {
        out[i] = twice(in[i]) + shift;
    }
}

// out[index[i]] += value[i] for i < n: several i may hit the same bin, hence atomicAdd.
extern "C" __global__ void toy_scatter_add(const long long* __restrict__ index, const scalar_t* __restrict__ value,
                                           scalar_t* out, long long n) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += stride) {
        atomicAdd(out + index[i], value[i]);
    }
}

// The same scatter with a plain read-modify-write: wrong when two threads hit one bin at once. Kept to show that
// the parallel host launch exposes the race that atomicAdd prevents.
extern "C" __global__ void toy_scatter_add_racy(const long long* __restrict__ index, const scalar_t* __restrict__ value,
                                                scalar_t* out, long long n) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += stride) {
        volatile scalar_t* bin = out + index[i];  // volatile: one load and one store per update, as on a GPU
        *bin = *bin + value[i];
    }
}

// Records, per thread of a 3-D launch, its linear block and thread index: checks the shim's index variables.
extern "C" __global__ void toy_thread_ids(int* block_id, int* thread_id) {
    const int b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const int g = b * (blockDim.x * blockDim.y * blockDim.z) + t;
    block_id[g] = b;
    thread_id[g] = t;
}

// Every scalar type the launcher knows, summed into out[0] (double build: exact for these small values).
extern "C" __global__ void toy_scalar_types(scalar_t* out, int a, unsigned int b, long long c, unsigned long long d,
                                            float e, double f) {
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        out[0] = (scalar_t)a + (scalar_t)b + (scalar_t)c + (scalar_t)d + (scalar_t)e + (scalar_t)f;
    }
}

// Writes one element past the end of out (n elements): for the AddressSanitizer test only.
extern "C" __global__ void toy_write_past_end(scalar_t* out, long long n) {
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        out[n] = (scalar_t)1;
    }
}
