/*
 * mcm-abi-check: drives the C ABI of include/mesos_command_modules.h from C, as the Mesos shim does — bad
 * parameters, every kind of result, async callbacks from engine threads, cancellation, concurrency, logs,
 * metrics and destroy — with real scripts. Prints one "ok"/"not ok" line per check and a closing
 * "N passed, N failed" line; exits 1 if any check failed. Run by Tests/MesosCommandModulesTests/ABITests.swift.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mesos_command_modules.h"

static int passed, failed;
static char dir[256];

#define CHECK(condition, name, ...)                                                                            \
    do {                                                                                                       \
        if (condition) {                                                                                       \
            passed++;                                                                                          \
            printf("ok - %s\n", name);                                                                         \
        } else {                                                                                               \
            failed++;                                                                                          \
            printf("not ok - %s: ", name);                                                                     \
            printf(__VA_ARGS__);                                                                               \
            printf("\n");                                                                                      \
        }                                                                                                      \
        fflush(stdout);                                                                                        \
    } while (0)

/* One pending event: the callback fills it from an engine thread; the test waits on it. */
typedef struct {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    int calls;
    mcm_status status;
    char data[65536];
    size_t length;
} waiter;

static void waiter_init(waiter *w) {
    memset(w, 0, sizeof(*w));
    pthread_mutex_init(&w->mutex, NULL);
    pthread_cond_init(&w->cond, NULL);
}

static void on_result(void *context, mcm_status status, const char *data, size_t length) {
    waiter *w = context;
    pthread_mutex_lock(&w->mutex);
    w->calls++;
    w->status = status;
    w->length = length;
    size_t n = length < sizeof(w->data) - 1 ? length : sizeof(w->data) - 1;
    if (n > 0) memcpy(w->data, data, n);
    w->data[n] = 0;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mutex);
}

/* Waits up to `seconds` for the callback; returns 1 if it came. */
static int wait_for(waiter *w, double seconds) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += (time_t)seconds;
    deadline.tv_nsec += (long)((seconds - (time_t)seconds) * 1e9);
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&w->mutex);
    while (w->calls == 0) {
        if (pthread_cond_timedwait(&w->cond, &w->mutex, &deadline) == ETIMEDOUT) break;
    }
    int came = w->calls > 0;
    pthread_mutex_unlock(&w->mutex);
    return came;
}

/* Log lines, counted and the last one kept. */
static pthread_mutex_t log_mutex = PTHREAD_MUTEX_INITIALIZER;
static int log_lines, log_lines_after_destroy, destroyed;
static char last_log[4096];

static void on_log(void *context, mcm_log_level level, const char *message, size_t length) {
    (void)context;
    (void)level;
    pthread_mutex_lock(&log_mutex);
    log_lines++;
    if (destroyed) log_lines_after_destroy++;
    size_t n = length < sizeof(last_log) - 1 ? length : sizeof(last_log) - 1;
    memcpy(last_log, message, n);
    last_log[n] = 0;
    pthread_mutex_unlock(&log_mutex);
}

static char *script(const char *name, const char *body) {
    static char paths[32][512];
    static int next;
    char *path = paths[next++ % 32];
    snprintf(path, 512, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(body, f);
    fclose(f);
    chmod(path, 0755);
    return path;
}

static mcm_module *create(mcm_kind kind, const char **keys, const char **values, size_t count, char **error) {
    return mcm_module_create(kind, keys, values, count, on_log, NULL, error);
}

static mcm_fragment fragment(const char *key, const char *json) {
    mcm_fragment f = {key, json, strlen(json)};
    return f;
}

static const char *container = "{\"value\":\"c1\"}";
static const char *config = "{\"directory\":\"/sandbox\",\"command_info\":{}}";

static void run(mcm_module *m, const char *event, mcm_fragment *fragments, size_t count, waiter *w) {
    waiter_init(w);
    mcm_run_event(m, event, fragments, count, on_result, w);
}

static void check_bad_parameters(void) {
    const char *keys[] = {"module_name", "isolator_prepar_command", "isolator_usage_timeout"};
    const char *values[] = {"edge", "/bin/true", "soon"};
    char *error = NULL;
    mcm_module *m = create(MCM_KIND_ISOLATOR, keys, values, 3, &error);
    CHECK(m == NULL && error != NULL, "bad parameters: no module, an error", "module %p", (void *)m);
    if (error) {
        CHECK(strstr(error, "module 'edge': parameter 'isolator_prepar_command': unknown parameter") != NULL &&
                  strstr(error, "parameter 'isolator_usage_timeout': 'soon' is not a number of seconds") != NULL,
              "bad parameters: the error names the module and each key", "%s", error);
        mcm_free(error);
    }
    const char *no_name_keys[] = {"debug"};
    const char *no_name_values[] = {"true"};
    error = NULL;
    m = create(MCM_KIND_HOOK, no_name_keys, no_name_values, 1, &error);
    CHECK(m == NULL && error && strstr(error, "module_name parameter is mandatory"), "missing module_name", "%s",
          error ? error : "(null)");
    mcm_free(error);
}

static void check_hooks(void) {
    char *labels = script("labels.sh",
                          "#!/bin/sh\ngrep -q '\"executor_id\"' \"$1\" || exit 9\n"
                          "echo '{\"labels\":[{\"key\":\"LABEL_1\",\"value\":\"test1\"}]}' > \"$2\"\n");
    char *failing = script("failing.sh", "#!/bin/sh\necho boom > \"$3\"\nexit 1\n");
    const char *keys[] = {"module_name", "hook_slave_run_task_label_decorator_command",
                          "hook_slave_remove_executor_hook_command", "temp_dir", "debug"};
    const char *values[] = {"abi_hook", labels, failing, dir, "true"};
    char *error = NULL;
    mcm_module *m = create(MCM_KIND_HOOK, keys, values, 5, &error);
    CHECK(m != NULL, "hook: created", "%s", error ? error : "");
    if (!m) return;
    CHECK(strcmp(mcm_module_name(m), "abi_hook") == 0, "hook: module_name", "%s", mcm_module_name(m));
    CHECK(mcm_module_handles(m, "hook_slave_run_task_label_decorator") == 1 &&
              mcm_module_handles(m, "hook_slave_task_status_decorator") == 0 &&
              mcm_module_handles(m, "no_such_event") == 0,
          "hook: handles", "");

    mcm_fragment fragments[] = {
        fragment("task_info", "{\"name\":\"t\",\"task_id\":{\"value\":\"t1\"},\"slave_id\":{\"value\":\"s\"}}"),
        fragment("executor_info", "{\"executor_id\":{\"value\":\"e1\"}}"),
        fragment("framework_info", "{\"user\":\"u\",\"name\":\"f\"}"),
        fragment("slave_info", "{\"hostname\":\"h\"}"),
    };
    waiter w;
    run(m, "hook_slave_run_task_label_decorator", fragments, 4, &w);
    CHECK(wait_for(&w, 10) && w.status == MCM_STATUS_RESULT &&
              strcmp(w.data, "{\"labels\":[{\"key\":\"LABEL_1\",\"value\":\"test1\"}]}") == 0 &&
              w.length == strlen(w.data),
          "hook: labels from the script, with their length", "status %d data %s", w.status, w.data);

    mcm_fragment status_fragments[] = {fragment("framework_id", "{\"value\":\"f\"}"),
                                       fragment("task_status", "{\"task_id\":{\"value\":\"t1\"},\"state\":\"TASK_RUNNING\"}")};
    run(m, "hook_slave_task_status_decorator", status_fragments, 2, &w);
    CHECK(wait_for(&w, 10) && w.status == MCM_STATUS_NONE, "hook: an unconfigured event changes nothing",
          "status %d", w.status);

    mcm_fragment remove_fragments[] = {fragment("framework_info", "{\"user\":\"u\",\"name\":\"f\"}"),
                                       fragment("executor_info", "{\"executor_id\":{\"value\":\"e1\"}}")};
    run(m, "hook_slave_remove_executor_hook", remove_fragments, 2, &w);
    CHECK(wait_for(&w, 10) && w.status == MCM_STATUS_ERROR &&
              strstr(w.data, "[TASK=e1, METHOD=slaveRemoveExecutorHook] Command \"") &&
              strstr(w.data, "\" exited with return code 1. Cause: boom"),
          "hook: a failure names the executor, the method, the command and the cause", "%s", w.data);

    run(m, "isolator_prepare", fragments, 0, &w);
    CHECK(w.calls == 1 && w.status == MCM_STATUS_ERROR && strstr(w.data, "has no event 'isolator_prepare'"),
          "hook: an event of the other kind is refused at once", "%s", w.data);

    pthread_mutex_lock(&log_mutex);
    int logged = log_lines;
    pthread_mutex_unlock(&log_mutex);
    CHECK(logged > 0, "hook: debug log lines reach the log callback", "%d lines", logged);
    CHECK(mcm_module_metric(m, "hook_slave_run_task_label_decorator", MCM_METRIC_CALLS) == 1 &&
              mcm_module_metric(m, "hook_slave_remove_executor_hook", MCM_METRIC_FAILURES) == 1 &&
              mcm_module_metric(m, "hook_slave_run_task_label_decorator", MCM_METRIC_LATENCY_MEAN_MS) > 0,
          "hook: metrics", "calls %f", mcm_module_metric(m, "hook_slave_run_task_label_decorator", MCM_METRIC_CALLS));
    mcm_module_destroy(m);
}

static void check_isolator(void) {
    char ticks[512];
    snprintf(ticks, sizeof ticks, "%s/ticks", dir);
    char watch_body[1024];
    snprintf(watch_body, sizeof watch_body,
             "#!/bin/sh\necho tick >> %s\n[ $(wc -l < %s) -ge 3 ] && "
             "echo '{\"message\":\"limit\",\"reason\":\"REASON_CONTAINER_LIMITATION_MEMORY\"}' > \"$2\"\nexit 0\n",
             ticks, ticks);
    const char *keys[] = {"module_name", "temp_dir", "state_dir", "isolator_prepare_command",
                          "isolator_usage_command", "isolator_watch_command", "isolator_watch_frequence",
                          "isolator_cleanup_command", "grace_period"};
    char state_dir[300];
    snprintf(state_dir, sizeof state_dir, "%s/state", dir);
    const char *values[] = {"abi_isolator", dir, state_dir,
                            script("prepare.sh", "#!/bin/sh\necho '{\"user\":\"app\"}' > \"$2\"\n"),
                            script("usage.sh", "#!/bin/sh\ngrep -q '/sandbox' \"$1\" && echo '{\"cpus_limit\":2}' > \"$2\"\n"),
                            script("watch.sh", watch_body), "0.05",
                            script("cleanup.sh", "#!/bin/sh\nexit 0\n"), "0.2"};
    char *error = NULL;
    mcm_module *m = create(MCM_KIND_ISOLATOR, keys, values, 9, &error);
    CHECK(m != NULL, "isolator: created", "%s", error ? error : "");
    if (!m) return;

    waiter w;
    mcm_fragment prepare[] = {fragment("container_id", container), fragment("container_config", config)};
    run(m, "isolator_prepare", prepare, 2, &w);
    CHECK(wait_for(&w, 10) && w.status == MCM_STATUS_RESULT && strcmp(w.data, "{\"user\":\"app\"}") == 0,
          "isolator: prepare returns the ContainerLaunchInfo", "%d %s", w.status, w.data);
    run(m, "isolator_prepare", prepare, 2, &w);
    CHECK(wait_for(&w, 10) && w.status == MCM_STATUS_ERROR && strstr(w.data, "already initialized for container"),
          "isolator: a second prepare fails", "%s", w.data);

    mcm_fragment id_only[] = {fragment("container_id", container)};
    run(m, "isolator_usage", id_only, 1, &w);
    CHECK(wait_for(&w, 10) && w.status == MCM_STATUS_RESULT && strstr(w.data, "\"cpus_limit\":2") &&
              strstr(w.data, "\"timestamp\":"),
          "isolator: usage gets the remembered container_config and a timestamp", "%s", w.data);

    /* Sixteen usage events in flight at once, all answered. */
    waiter many[16];
    for (int i = 0; i < 16; i++) run(m, "isolator_usage", id_only, 1, &many[i]);
    int answered = 0;
    for (int i = 0; i < 16; i++) answered += wait_for(&many[i], 20) && many[i].status == MCM_STATUS_RESULT;
    CHECK(answered == 16, "isolator: 16 concurrent events, 16 callbacks", "%d answered", answered);

    run(m, "isolator_watch", id_only, 1, &w);
    CHECK(wait_for(&w, 10) && w.status == MCM_STATUS_RESULT && strstr(w.data, "REASON_CONTAINER_LIMITATION_MEMORY"),
          "isolator: watch resolves with the limitation", "%d %s", w.status, w.data);

    /* A watch that never limits, cancelled as a discarded future would be. */
    unlink(ticks);
    mkdir(ticks, 0755); /* wc fails on a directory: no limitation, keep polling */
    waiter cancelled;
    waiter_init(&cancelled);
    uint64_t token = mcm_run_event(m, "isolator_watch", id_only, 1, on_result, &cancelled);
    usleep(200 * 1000);
    CHECK(cancelled.calls == 0, "isolator: an empty watch keeps polling", "calls %d", cancelled.calls);
    mcm_cancel(m, token);
    CHECK(wait_for(&cancelled, 5) && cancelled.status == MCM_STATUS_CANCELLED && cancelled.calls == 1,
          "isolator: a cancelled watch calls back once, cancelled", "%d", cancelled.status);
    mcm_cancel(m, token); /* a finished token is ignored */

    /* A watch still running when cleanup comes ends with "none": keep the future pending. */
    waiter ended;
    waiter_init(&ended);
    mcm_run_event(m, "isolator_watch", id_only, 1, on_result, &ended);
    usleep(100 * 1000);
    run(m, "isolator_cleanup", id_only, 1, &w);
    CHECK(wait_for(&w, 10) && w.status == MCM_STATUS_NONE, "isolator: cleanup", "%d %s", w.status, w.data);
    CHECK(wait_for(&ended, 5) && (ended.status == MCM_STATUS_NONE || ended.status == MCM_STATUS_CANCELLED),
          "isolator: cleanup ends the container's watch", "%d", ended.status);

    run(m, "isolator_usage", id_only, 1, &w);
    CHECK(wait_for(&w, 10) && w.status == MCM_STATUS_ERROR && strstr(w.data, "not initialized"),
          "isolator: usage of a cleaned-up container fails", "%s", w.data);

    CHECK(mcm_module_metric(m, "isolator_prepare", MCM_METRIC_CALLS) == 1 &&
              mcm_module_metric(m, "isolator_usage", MCM_METRIC_CALLS) == 17,
          "isolator: metrics count the commands run", "prepare %f usage %f",
          mcm_module_metric(m, "isolator_prepare", MCM_METRIC_CALLS), mcm_module_metric(m, "isolator_usage", MCM_METRIC_CALLS));

    /* Destroy with a watch running: its callback comes before destroy returns, and no log line after. */
    run(m, "isolator_prepare", prepare, 2, &w);
    wait_for(&w, 10);
    waiter last;
    waiter_init(&last);
    mcm_run_event(m, "isolator_watch", id_only, 1, on_result, &last);
    usleep(100 * 1000);
    mcm_module_destroy(m);
    pthread_mutex_lock(&log_mutex);
    destroyed = 1;
    pthread_mutex_unlock(&log_mutex);
    CHECK(last.calls == 1, "isolator: destroy delivers the running watch's callback first", "calls %d", last.calls);
    usleep(300 * 1000);
    CHECK(log_lines_after_destroy == 0, "isolator: no log line after destroy", "%d", log_lines_after_destroy);
}

int main(void) {
    snprintf(dir, sizeof dir, "%s/mcm-abi-check.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    check_bad_parameters();
    check_hooks();
    check_isolator();

    char command[512];
    snprintf(command, sizeof command, "rm -rf '%s'", dir);
    if (system(command) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
