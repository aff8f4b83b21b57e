/*
 * `mcm-abi-check exit-notice MODE EVENTS`: an agent stand-in whose engine can only learn a command's exit by
 * polling (SPEC §3: "however the exit is learnt, an event is answered as soon as its command has exited"):
 * - `no-pidfd`: a seccomp filter makes pidfd_open and clone3 fail with ENOSYS, as on kernels before 5.3;
 * - `sigchld-ignored`: SIGCHLD is ignored, as a launcher or a library may leave it: the kernel reaps each
 *   command itself, and when it does so before the engine opens its pidfd, pidfd_open fails and the engine
 *   polls.
 * Runs EVENTS isolator_usage events of a script that exits 7 (timeout 20 s), a few in flight at once, and
 * checks that each is answered with an error well before its deadline: the first one still unanswered
 * LATE_SECONDS after it was started stops the run ("not ok"). Prints "ok"/"not ok" lines and the latencies.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "mesos_command_modules.h"

#if defined(__x86_64__)
#define EXIT_NOTICE_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define EXIT_NOTICE_ARCH AUDIT_ARCH_AARCH64
#endif
/* The same numbers on every architecture (the syscalls added since 5.1 share one table). */
#define EXIT_NOTICE_NR_PIDFD_OPEN 434
#define EXIT_NOTICE_NR_CLONE3 435

/* The event's timeout, and how long after its start an answer is late: a twentieth of it. */
#define TIMEOUT_SECONDS "20"
#define LATE_SECONDS 1.0
#define IN_FLIGHT 8

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    int answered;
    mcm_status status;
    char data[512];
    double started, latency;
} slot;

static void on_answer(void *context, mcm_status status, const char *data, size_t length) {
    slot *s = context;
    pthread_mutex_lock(&s->mutex);
    s->answered = 1;
    s->status = status;
    s->latency = now() - s->started;
    size_t n = length < sizeof(s->data) - 1 ? length : sizeof(s->data) - 1;
    memcpy(s->data, data, n);
    s->data[n] = 0;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mutex);
}

/* Waits for the slot's answer until LATE_SECONDS after its start; returns whether it came. */
static int wait_answer(slot *s) {
    double due = s->started + LATE_SECONDS;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    double left = due - now();
    if (left < 0) left = 0;
    deadline.tv_sec += (time_t)left;
    deadline.tv_nsec += (long)((left - (double)(time_t)left) * 1e9);
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&s->mutex);
    while (!s->answered) {
        if (pthread_cond_timedwait(&s->cond, &s->mutex, &deadline) == ETIMEDOUT) break;
    }
    int answered = s->answered;
    pthread_mutex_unlock(&s->mutex);
    return answered;
}

/* pidfd_open and clone3 fail with ENOSYS in this process from now on, in every thread it starts. */
static int deny_pidfds(void) {
#ifdef EXIT_NOTICE_ARCH
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, EXIT_NOTICE_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, EXIT_NOTICE_NR_PIDFD_OPEN, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, EXIT_NOTICE_NR_CLONE3, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
    };
    struct sock_fprog program = {(unsigned short)(sizeof filter / sizeof filter[0]), filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program);
#else
    errno = ENOTSUP;
    return -1;
#endif
}

int check_exit_notice(const char *mode, int events) {
    int denied = strcmp(mode, "no-pidfd") == 0;
    if (!denied && strcmp(mode, "sigchld-ignored") != 0) {
        fprintf(stderr, "usage: mcm-abi-check exit-notice no-pidfd|sigchld-ignored EVENTS\n");
        return 2;
    }
    if (denied) {
        if (deny_pidfds() != 0) {
            printf("not ok - exit-notice: cannot install the seccomp filter: %s\n", strerror(errno));
            return 1;
        }
        long fd = syscall(EXIT_NOTICE_NR_PIDFD_OPEN, getpid(), 0);
        int code = errno;
        printf("%s - exit-notice: pidfd_open fails with ENOSYS, as before Linux 5.3 (%ld, %s)\n",
               fd == -1 && code == ENOSYS ? "ok" : "not ok", fd, strerror(code));
        if (fd != -1 || code != ENOSYS) return 1;
    } else {
        signal(SIGCHLD, SIG_IGN);
    }

    char dir[256];
    snprintf(dir, sizeof dir, "%s/mcm-exit-notice.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    char script[300], state[300];
    snprintf(script, sizeof script, "%s/seven.sh", dir);
    snprintf(state, sizeof state, "%s/state", dir);
    FILE *f = fopen(script, "w");
    fputs("#!/bin/sh\nexit 7\n", f);
    fclose(f);
    chmod(script, 0755);

    const char *keys[] = {"module_name", "temp_dir", "state_dir", "isolator_usage_command",
                          "isolator_usage_timeout", "isolator_usage_failure_policy"};
    const char *values[] = {"exit_notice", dir, state, script, TIMEOUT_SECONDS, "fail"};
    char *error = NULL;
    mcm_module *m = mcm_module_create(MCM_KIND_ISOLATOR, keys, values, 6, NULL, &error);
    if (!m) {
        printf("not ok - exit-notice: create: %s\n", error ? error : "");
        return 1;
    }
    const char *container = "{\"value\":\"c1\"}";
    mcm_fragment id_only[] = {{"container_id", container, strlen(container)}};

    slot slots[IN_FLIGHT];
    for (int i = 0; i < IN_FLIGHT; i++) {
        pthread_mutex_init(&slots[i].mutex, NULL);
        pthread_cond_init(&slots[i].cond, NULL);
    }
    int started = 0, answered = 0, wrong = 0, late = 0;
    double slowest = 0, total = 0, begin = now();
    char wrong_answer[512] = "";
    while (answered < events && !late) {
        /* Keep IN_FLIGHT events running; then wait for the oldest. */
        while (started < events && started - answered < IN_FLIGHT) {
            slot *s = &slots[started % IN_FLIGHT];
            s->answered = 0;
            s->started = now();
            mcm_run_event(m, "isolator_usage", id_only, 1, on_answer, s);
            started++;
        }
        slot *oldest = &slots[answered % IN_FLIGHT];
        if (!wait_answer(oldest)) {
            late = answered + 1;
            break;
        }
        answered++;
        total += oldest->latency;
        if (oldest->latency > slowest) slowest = oldest->latency;
        if (oldest->status != MCM_STATUS_ERROR ||
            (!strstr(oldest->data, "exited with return code 7") && !strstr(oldest->data, "exit status was lost"))) {
            if (!wrong) snprintf(wrong_answer, sizeof wrong_answer, "%d: %s", oldest->status, oldest->data);
            wrong++;
        }
    }
    printf("# %s: %d events in %.1f s; latency mean %.1f ms, slowest %.1f ms\n", mode, answered, now() - begin,
           answered ? total / answered * 1000 : 0, slowest * 1000);
    if (late) {
        printf("not ok - exit-notice (%s): event %d of %d was not answered within %.1f s of its start (its "
               "command exits at once; its deadline is %s s)\n",
               mode, late, events, LATE_SECONDS, TIMEOUT_SECONDS);
    } else {
        printf("ok - exit-notice (%s): all %d events answered within %.1f s of their start (deadline %s s)\n", mode,
               events, LATE_SECONDS, TIMEOUT_SECONDS);
    }
    printf("%s - exit-notice (%s): every answer is the command's failure (%d wrong%s%s)\n", wrong ? "not ok" : "ok",
           mode, wrong, wrong ? ", first: " : "", wrong_answer);
    fflush(stdout);
    /* A late event is cancelled here: its command's group is stopped and destroy waits for its answer. */
    mcm_module_destroy(m);
    signal(SIGCHLD, SIG_DFL); /* for system() */
    char command[400];
    snprintf(command, sizeof command, "rm -rf '%s'", dir);
    if (system(command) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    return late || wrong ? 1 : 0;
}
