/* embed.c -- a C program that embeds workerhost.
 *
 *   embed_example APP_ROOT
 *
 * Creates a host from APP_ROOT (its config/ and workers/) in
 * ForegroundBlocking mode (config/test.yaml), enqueues a good job and a bad
 * one, and shows what the API says about each. Exits 0 when both behave as
 * expected. Built by CMake and run by ctest (example_embed). */
#include <stdio.h>
#include <string.h>

#include "workerhost.h"

int main(int argc, char **argv) {
    const char *root = argc > 1 ? argv[1] : ".";
    wh_host_options opts = {root, "test", NULL};
    wh_err err = WH_ERR_INIT;
    wh_host *host = NULL;
    if (wh_host_new(&host, &opts, &err) != WH_OK) {
        fprintf(stderr, "cannot create the host: %s\n", err.msg);
        return 1;
    }
    if (wh_host_start(host, &err) != WH_OK) {
        fprintf(stderr, "cannot start the host: %s\n", err.msg);
        wh_host_free(host);
        return 1;
    }

    int failures = 0;
    char jid[WH_JID_SIZE];
    const char *good = "{\"user_guid\":\"guid-42\"}";
    int rc = wh_host_enqueue(host, "DownloadWorker", good, strlen(good), NULL, jid, &err);
    printf("good job %s: %s\n", jid, rc == WH_OK ? "performed" : err.msg);
    if (rc != WH_OK) failures++;

    const char *bad = "{\"user_guid\":42}";
    rc = wh_host_enqueue(host, "DownloadWorker", bad, strlen(bad), NULL, jid, &err);
    printf("bad job: %s (%s)\n", wh_strerror(rc), err.msg);
    if (rc != WH_EARGS) failures++;

    wh_host_stop(host, -1, NULL);
    wh_host_free(host);
    return failures ? 1 : 0;
}
