/* sovc-rvv-loader: runs the RVV kernels of a riscv64-rvv artifact, under qemu-riscv64 or on a RISC-V
 * machine. The host runtime (runtime/src/rvv) writes one input file:
 *
 *   "SOVCRVV1"
 *   u64 code_len, code bytes            position-independent kernel code
 *   u64 nbufs, then per buffer: u64 len (f32 elements), len*4 bytes of data
 *   u64 ncalls, then per call: u64 offset (into the code), u64 nargs, nargs x u64 buffer index
 *
 * and reads back every buffer, in order, from the output file. Each kernel is
 * `void kernel(float **bufs)`. With a third argument `--report-code` it prints where the code was
 * mapped (`code at 0x...`) to stderr, so an instruction trace can be attributed to kernels. All integers little-endian. Built by scripts/setup-test-deps.sh with
 * riscv64-linux-gnu-gcc -static. Exit codes: 0 done, 2 bad usage or I/O, 3 malformed input. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static FILE *in;

static void fail(int code, const char *msg) {
    fprintf(stderr, "sovc-rvv-loader: %s\n", msg);
    exit(code);
}

static uint64_t u64(void) {
    uint64_t v;
    if (fread(&v, 8, 1, in) != 1) fail(3, "input ends early");
    return v;
}

static void bytes(void *p, uint64_t n) {
    if (n && fread(p, 1, n, in) != n) fail(3, "input ends early");
}

int main(int argc, char **argv) {
    if (argc != 3 && !(argc == 4 && strcmp(argv[3], "--report-code") == 0))
        fail(2, "usage: sovc-rvv-loader IN OUT [--report-code]");
    in = fopen(argv[1], "rb");
    if (!in) fail(2, "cannot open the input");
    char magic[8];
    bytes(magic, 8);
    if (memcmp(magic, "SOVCRVV1", 8) != 0) fail(3, "not a sovc rvv input");
    uint64_t code_len = u64();
    if (code_len > (1u << 30)) fail(3, "code too large");
    void *code = mmap(0, code_len ? code_len : 1, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (code == MAP_FAILED) fail(2, "cannot map the code");
    bytes(code, code_len);
    __builtin___clear_cache((char *)code, (char *)code + code_len);
    if (argc == 4) fprintf(stderr, "code at 0x%lx\n", (unsigned long)code);
    uint64_t nbufs = u64();
    if (nbufs > (1u << 20)) fail(3, "too many buffers");
    float **bufs = calloc(nbufs ? nbufs : 1, sizeof(float *));
    uint64_t *lens = calloc(nbufs ? nbufs : 1, sizeof(uint64_t));
    for (uint64_t i = 0; i < nbufs; i++) {
        lens[i] = u64();
        if (lens[i] > (1ull << 32)) fail(3, "buffer too large");
        bufs[i] = aligned_alloc(64, ((lens[i] * 4 + 63) / 64) * 64 + 64);
        if (!bufs[i]) fail(2, "out of memory");
        bytes(bufs[i], lens[i] * 4);
    }
    uint64_t ncalls = u64();
    float **args = calloc(nbufs + 1, sizeof(float *));
    for (uint64_t c = 0; c < ncalls; c++) {
        uint64_t off = u64(), nargs = u64();
        if (off >= code_len || nargs > nbufs) fail(3, "call outside the code or with too many arguments");
        for (uint64_t a = 0; a < nargs; a++) {
            uint64_t b = u64();
            if (b >= nbufs) fail(3, "argument names a missing buffer");
            args[a] = bufs[b];
        }
        ((void (*)(float **))((char *)code + off))(args);
    }
    fclose(in);
    FILE *out = fopen(argv[2], "wb");
    if (!out) fail(2, "cannot open the output");
    for (uint64_t i = 0; i < nbufs; i++)
        if (fwrite(bufs[i], 4, lens[i], out) != lens[i]) fail(2, "cannot write the output");
    if (fclose(out) != 0) fail(2, "cannot write the output");
    return 0;
}
