/*
 * `mcm-abi-check rule-starvation`: SPEC §9, evaluating a rule never holds a thread that other modules' events
 * need. Three hook events of one module whose `when` rule reads a long label (each called, as Mesos does, from
 * a thread of its own that waits for the answer), then a benign exec event of another module, with a 1 s timeout:
 * it must be answered within that second, from the moment it was called.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mesos_command_modules.h"

int check_rule_starvation(const char *dir);

typedef struct {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    int done;
    mcm_status status;
    double at;
    char text[512];
} answer;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void answered(void *context, mcm_status status, const char *data, size_t length) {
    answer *a = context;
    pthread_mutex_lock(&a->mutex);
    a->at = now();
    a->status = status;
    size_t n = length < sizeof a->text - 1 ? length : sizeof a->text - 1;
    memcpy(a->text, data, n);
    a->text[n] = 0;
    a->done = 1;
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->mutex);
}

static void answer_init(answer *a) {
    memset(a, 0, sizeof *a);
    pthread_mutex_init(&a->mutex, NULL);
    pthread_cond_init(&a->cond, NULL);
}

static int await_answer(answer *a, double seconds) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)seconds;
    pthread_mutex_lock(&a->mutex);
    while (!a->done && pthread_cond_timedwait(&a->cond, &a->mutex, &until) == 0) {}
    int done = a->done;
    pthread_mutex_unlock(&a->mutex);
    return done;
}

typedef struct {
    mcm_module *module;
    const char *task;
    answer answer;
} slow_event;

/* A thread of Mesos calling the hook and waiting for its answer (the shim's runAndWait). */
static void *call_slow(void *argument) {
    slow_event *event = argument;
    mcm_fragment fragments[] = {
        {"task_info", event->task, strlen(event->task)},
        {"framework_info", "{\"name\":\"f\"}", strlen("{\"name\":\"f\"}")},
    };
    mcm_run_event(event->module, "hook_slave_run_task_label_decorator", fragments, 2, answered, &event->answer);
    await_answer(&event->answer, 120);
    return NULL;
}

static mcm_module *hook(const char *dir, const char *name, const char *event, const char *when) {
    char command[600], key[200], timeout[200], rule[200], path[512];
    snprintf(path, sizeof path, "%s/%s.sh", dir, name);
    FILE *f = fopen(path, "w");
    fputs("#!/bin/sh\nexit 0\n", f);
    fclose(f);
    chmod(path, 0755);
    snprintf(command, sizeof command, "%s", path);
    snprintf(key, sizeof key, "%s_command", event);
    snprintf(timeout, sizeof timeout, "%s_timeout", event);
    snprintf(rule, sizeof rule, "%s_when", event);
    const char *keys[] = {"module_name", "temp_dir", key, timeout, rule};
    const char *values[] = {name, dir, command, "1", when};
    char *error = NULL;
    mcm_module *module = mcm_module_create(MCM_KIND_HOOK, keys, values, when ? 5 : 4, NULL, &error);
    if (!module) fprintf(stderr, "cannot create %s: %s\n", name, error ? error : "?");
    return module;
}

/* One scenario; returns 1 if the benign event was answered (no error) within its 1 s timeout. */
static int scenario(const char *dir, const char *name, const char *when, size_t value_length) {
    char slow_name[100], benign_name[100];
    snprintf(slow_name, sizeof slow_name, "slow_rules_%s", name);
    snprintf(benign_name, sizeof benign_name, "benign_%s", name);
    mcm_module *slow = hook(dir, slow_name, "hook_slave_run_task_label_decorator", when);
    mcm_module *benign = hook(dir, benign_name, "hook_slave_executor_environment_decorator", NULL);
    if (!slow || !benign) return 0;

    /* A label value a tenant chose: a and b at random (a fixed seed), or all a. */
    const char *prefix = "{\"name\":\"t\",\"labels\":{\"labels\":[{\"key\":\"team\",\"value\":\"";
    const char *suffix = "\"}]}}";
    char *task = malloc(strlen(prefix) + value_length + strlen(suffix) + 1);
    strcpy(task, prefix);
    char *value = task + strlen(prefix);
    unsigned seed = 19;
    for (size_t i = 0; i < value_length; i++) value[i] = strstr(when, "(a|b)") ? "ab"[rand_r(&seed) % 2] : 'a';
    strcpy(value + value_length, suffix);

    enum { slow_events = 3 };
    slow_event events[slow_events];
    pthread_t threads[slow_events];
    for (int i = 0; i < slow_events; i++) {
        events[i].module = slow;
        events[i].task = task;
        answer_init(&events[i].answer);
        pthread_create(&threads[i], NULL, call_slow, &events[i]);
    }
    usleep(200 * 1000); /* the three are deciding their rule */

    answer benign_answer;
    answer_init(&benign_answer);
    const char *executor = "{\"executor_id\":{\"value\":\"e\"},\"command\":{}}";
    mcm_fragment fragments[] = {{"executor_info", executor, strlen(executor)}};
    double called = now();
    mcm_run_event(benign, "hook_slave_executor_environment_decorator", fragments, 1, answered, &benign_answer);
    int came = await_answer(&benign_answer, 60);
    double took = benign_answer.at - called;
    int ok = came && benign_answer.status == MCM_STATUS_NONE && took < 1.0;
    printf("%s - %s: the benign event of another module was answered %s in %.3f s (timeout 1 s) while three "
           "events decided '%s' on a %zu-character label\n",
           ok ? "ok" : "not ok", name, !came ? "never" : benign_answer.status == MCM_STATUS_NONE ? "(no change)" : benign_answer.text,
           came ? took : -1.0, when, value_length);

    for (int i = 0; i < slow_events; i++) pthread_join(threads[i], NULL);
    for (int i = 0; i < slow_events; i++) {
        printf("# slow event %d: status %d after %.3f s %s\n", i, events[i].answer.status,
               events[i].answer.at - called, events[i].answer.text);
    }
    mcm_module_destroy(slow);
    mcm_module_destroy(benign);
    free(task);
    fflush(stdout);
    return ok;
}

int check_rule_starvation(const char *dir) {
    /* The issue's pattern: glibc's regexec took seconds on it; linear here. */
    int issue = scenario(dir, "issue-19-pattern", "label:team~(a|b)*a(a|b){18}", 32 * 1024);
    /* Slow even when linear: three conditions on 2 MiB, cut at the event's 1 s timeout. */
    int long_rule = scenario(dir, "long-rule",
                             "label:team!~(.*a){30}x; label:team!~(.*a){30}y; label:team!~(.*a){30}z", 2 * 1024 * 1024);
    return issue && long_rule ? 0 : 1;
}
