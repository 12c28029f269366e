/* SPDX-License-Identifier: MIT
 * fuzz_config.c -- libFuzzer target for the config parser: YAML text from
 * memory through wh_config_parse (libyaml events, the table of keys,
 * ${VAR} substitution, validation), as config/<env>.yaml would be read.
 * Every input must either load (and then free cleanly) or be refused with
 * WH_ECONFIG and a message.
 *
 * Build: cmake -DWH_FUZZ=ON with CC=clang (see CMakeLists.txt); run by
 * scripts/test from a copy of host/fuzz/corpus/config. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "config/config.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    /* fixed values for ${VAR} in the corpus; nothing else of the caller's */
    setenv("WORKERHOST_CONCURRENCY", "3", 1);
    setenv("REDIS_URL", "redis://127.0.0.1:6379/1", 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const envs[] = {"development", "test", "production"};
    wh_config *cfg = NULL;
    wh_err err = WH_ERR_INIT;
    const char *env = envs[size % 3];
    int rc = wh_config_parse(&cfg, "fuzz.yaml", (const char *)data, size, "/fuzz-root", env, &err);
    if (rc == 0) {
        if (cfg == NULL || cfg->concurrency < 1 || cfg->scripts_dir == NULL) abort();
        wh_config_free(cfg);
    } else if (rc != WH_ECONFIG || err.msg[0] == '\0') {
        fprintf(stderr, "fuzz_config: rc %d, message \"%s\"\n", rc, err.msg);
        abort();
    }
    return 0;
}
