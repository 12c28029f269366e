/* jid.c -- see jid.h. xoshiro256** per thread; only uniqueness matters here,
 * not secrecy, and a syscall per job would cost more than the job. */
#include "core/jid.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static _Thread_local uint64_t state[4];
static _Thread_local bool seeded;

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next(void) {
    uint64_t result = rotl(state[1] * 5, 7) * 9;
    uint64_t t = state[1] << 17;
    state[2] ^= state[0];
    state[3] ^= state[1];
    state[1] ^= state[2];
    state[0] ^= state[3];
    state[2] ^= t;
    state[3] = rotl(state[3], 45);
    return result;
}

static void seed(void) {
    if (getrandom(state, sizeof state, 0) != (ssize_t)sizeof state) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        state[0] = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
        state[1] = (uint64_t)ts.tv_sec * 0x9E3779B97F4A7C15ULL;
        state[2] = (uint64_t)(uintptr_t)&state;
        state[3] = 0x94D049BB133111EBULL;
    }
    seeded = true;
}

void wh_jid_new(char out[WH_JID_SIZE]) {
    static const char hex[] = "0123456789abcdef";
    if (!seeded) seed();
    uint64_t a = next(), b = next();
    for (int i = 0; i < 16; i++) out[i] = hex[(a >> (i * 4)) & 15];
    for (int i = 0; i < 8; i++) out[16 + i] = hex[(b >> (i * 4)) & 15];
    out[24] = '\0';
}
