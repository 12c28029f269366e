/* test_proc.c -- core/proc: the boot id, the pid namespace and start ticks
 * read from /proc (Linux), and what they give for a process that is gone. */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/proc.h"
#include "test.h"

static void test_boot_id_is_a_uuid(void) {
    char boot[64] = "x", again[64];
    wh_proc_boot_id(boot, sizeof boot);
    ASSERT_EQ_INT(strlen(boot), 36); /* 8-4-4-4-12, no newline */
    ASSERT(boot[8] == '-' && boot[13] == '-' && boot[18] == '-' && boot[23] == '-');
    wh_proc_boot_id(again, sizeof again);
    ASSERT_STREQ(boot, again);
    char small[8];
    wh_proc_boot_id(small, sizeof small); /* cut, terminated */
    ASSERT_EQ_INT(strlen(small), 7);
}

static void test_pid_namespace(void) {
    char ns[64] = "x";
    wh_proc_pid_namespace(ns, sizeof ns);
    ASSERT(strncmp(ns, "pid:[", 5) == 0);
    ASSERT(ns[strlen(ns) - 1] == ']');
    char tiny[1] = {'x'};
    wh_proc_pid_namespace(tiny, sizeof tiny);
    ASSERT_EQ_INT(tiny[0], '\0');
}

static void test_start_ticks(void) {
    unsigned long long me = wh_proc_start_ticks((long)getpid());
    ASSERT(me > 0);
    ASSERT(wh_proc_start_ticks((long)getpid()) == me); /* stable */
    ASSERT(wh_proc_start_ticks((long)getppid()) <= me); /* the parent started first */
    pid_t child = fork();
    if (child == 0) {
        pause();
        _exit(0);
    }
    ASSERT(child > 0);
    ASSERT(wh_proc_start_ticks((long)child) >= me);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    ASSERT(wh_proc_start_ticks((long)child) == 0); /* gone (its pid not reused this soon) */
    ASSERT(wh_proc_start_ticks(-1) == 0);
}

int main(void) {
    alarm(60);
    RUN(test_boot_id_is_a_uuid);
    RUN(test_pid_namespace);
    RUN(test_start_ticks);
    return TEST_REPORT();
}
