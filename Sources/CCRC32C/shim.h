// crc32c (Castagnoli) with the CPU's own instruction (SSE 4.2 `crc32`), for ScoutFormat's
// CRC32C: the same raw value as the slicing tables (no inversion), 8 bytes per instruction.
// Header only: the functions are static inline, compiled where Swift imports them.
#ifndef SCOUT_CRC32C_SHIM_H
#define SCOUT_CRC32C_SHIM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>

/// Whether this CPU has the crc32 instruction (CPUID leaf 1, ECX bit 20).
static inline int scout_crc32c_hw_available(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    return (c & bit_SSE4_2) != 0;
}

/// Continues `crc` over `len` bytes at `buf`. Only where scout_crc32c_hw_available().
__attribute__((target("sse4.2")))
static inline uint32_t scout_crc32c_hw(uint32_t crc, const void *buf, size_t len) {
    const unsigned char *p = (const unsigned char *)buf;
    uint64_t c = crc;
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (len > 0) {
        c32 = __builtin_ia32_crc32qi(c32, *p);
        p += 1;
        len -= 1;
    }
    return c32;
}
#else
static inline int scout_crc32c_hw_available(void) { return 0; }
static inline uint32_t scout_crc32c_hw(uint32_t crc, const void *buf, size_t len) {
    (void)buf;
    (void)len;
    return crc;
}
#endif

#endif
