// A deliberately wrong kernel for the AddressSanitizer test (tests/robustness/test_sanitizer.py): it reads the
// element just past the end of `in`. The sanitized host-shim build must report it; if it does not, the sanitizer
// run proves nothing about the real kernels.
extern "C" __global__ void read_past_end(const scalar_t* in, scalar_t* out, long long n) {
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        out[0] = in[n];
    }
}
