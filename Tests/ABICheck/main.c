/*
 * mcm-abi-check: drives the C ABI of include/mesos_command_modules.h from C, as the Mesos shim does — bad
 * parameters, every kind of result, async callbacks from engine threads, cancellation, concurrency, logs,
 * metrics and destroy — with real scripts. Prints one "ok"/"not ok" line per check and a closing
 * "N passed, N failed" line; exits 1 if any check failed. Run by Tests/MesosCommandModulesTests/ABITests.swift.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mesos_command_modules.h"

int check_rule_starvation(const char *dir);

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
    pthread_t thread; /* the thread the callback came from */
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
    w->thread = pthread_self();
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

/* Command latencies, counted (with the last event key and value). */
static int latencies, latencies_after_destroy;
static char last_latency_event[128];
static double last_latency;

static void on_latency(void *context, const char *event_key, double milliseconds) {
    (void)context;
    pthread_mutex_lock(&log_mutex);
    latencies++;
    if (destroyed) latencies_after_destroy++;
    snprintf(last_latency_event, sizeof last_latency_event, "%s", event_key);
    last_latency = milliseconds;
    pthread_mutex_unlock(&log_mutex);
}

static mcm_module *create(mcm_kind kind, const char **keys, const char **values, size_t count, char **error) {
    mcm_callbacks callbacks = {on_log, on_latency, NULL};
    return mcm_module_create(kind, keys, values, count, &callbacks, error);
}

/* An isolator named `name`, with this check's temp_dir and its state in <dir>/<state>, and `count` more parameters. */
static mcm_module *create_isolator(const char *name, const char *state, const char **keys, const char **values,
                                   size_t count, char **error) {
    enum { standard = 3, most = 16 };
    char state_dir[300];
    snprintf(state_dir, sizeof state_dir, "%s/%s", dir, state);
    const char *all_keys[most] = {"module_name", "temp_dir", "state_dir"};
    const char *all_values[most] = {name, dir, state_dir};
    if (count > most - standard) return NULL;
    for (size_t i = 0; i < count; i++) {
        all_keys[standard + i] = keys[i];
        all_values[standard + i] = values[i];
    }
    return create(MCM_KIND_ISOLATOR, all_keys, all_values, standard + count, error);
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
    /* Its last line at creation says what it is: the build identity linked in (none when built by SwiftPM). */
    pthread_mutex_lock(&log_mutex);
    int logged_at_create = log_lines;
    const char *identity = mcm_build_identity();
    const char *built = !identity                                  ? ", build identity unknown: "
                        : strstr(identity, "mesos_version=none") ? ", built for no Mesos"
                                                                 : ", built for Mesos";
    CHECK(strstr(last_log, "mesos-command-modules ") == last_log && strstr(last_log, built) &&
              strstr(last_log, ": hook module 'abi_hook' loaded, events: hook_slave_remove_executor_hook (exec), "
                               "hook_slave_run_task_label_decorator (exec)"),
          "hook: one line at creation: version, Mesos, module, events with their mode", "%s", last_log);
    pthread_mutex_unlock(&log_mutex);
    CHECK(strcmp(mcm_module_name(m), "abi_hook") == 0, "hook: module_name", "%s", mcm_module_name(m));
    CHECK(mcm_module_mode(m, "hook_slave_run_task_label_decorator") == MCM_MODE_EXEC &&
              mcm_module_handles(m, "hook_slave_run_task_label_decorator") == 1 &&
              mcm_module_handles(m, "hook_slave_task_status_decorator") == 0 &&
              mcm_module_handles(m, "no_such_event") == 0,
          "hook: handles", "");
    /* Defaults: timeout 30 s, grace_period 1 s, and the 2 s margin destroy also allows. */
    CHECK(mcm_module_answer_limit(m, "hook_slave_run_task_label_decorator") == 33 &&
              mcm_module_answer_limit(m, "hook_slave_task_status_decorator") == 3,
          "hook: answer limit = timeout + grace_period + margin, for a blocking caller", "%g %g",
          mcm_module_answer_limit(m, "hook_slave_run_task_label_decorator"),
          mcm_module_answer_limit(m, "hook_slave_task_status_decorator"));

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
    CHECK(logged > logged_at_create, "hook: debug log lines reach the log callback", "%d lines", logged);
    CHECK(mcm_module_metric(m, "hook_slave_run_task_label_decorator", MCM_METRIC_CALLS) == 1 &&
              mcm_module_metric(m, "hook_slave_remove_executor_hook", MCM_METRIC_FAILURES) == 1 &&
              mcm_module_metric(m, "hook_slave_run_task_label_decorator", MCM_METRIC_SKIPPED) == 0 &&
              mcm_module_metric(m, "no_such_event", MCM_METRIC_CALLS) == 0,
          "hook: metrics", "calls %f", mcm_module_metric(m, "hook_slave_run_task_label_decorator", MCM_METRIC_CALLS));
    pthread_mutex_lock(&log_mutex);
    int measured = latencies;
    double last = last_latency;
    char last_event[128];
    snprintf(last_event, sizeof last_event, "%s", last_latency_event);
    pthread_mutex_unlock(&log_mutex);
    CHECK(measured == 2 && strcmp(last_event, "hook_slave_remove_executor_hook") == 0 && last > 0 && last < 10000,
          "hook: each command run's latency reaches the latency callback", "%d %s %f", measured, last_event, last);
    mcm_module_destroy(m);
}

/* The circuit breaker's metrics: breaker_open and short_circuited, and the error of a short-circuited event. */
static void check_breaker(void) {
    char *failing = script("breaker-failing.sh", "#!/bin/sh\necho down > \"$3\"\nexit 1\n");
    const char *keys[] = {"module_name", "hook_slave_remove_executor_hook_command",
                          "hook_slave_remove_executor_hook_breaker_failures", "hook_slave_post_fetch_hook_command",
                          "temp_dir"};
    const char *values[] = {"abi_breaker", failing, "2", failing, dir};
    char *error = NULL;
    mcm_module *m = create(MCM_KIND_HOOK, keys, values, 5, &error);
    CHECK(m != NULL, "breaker: created", "%s", error ? error : "");
    if (!m) return;
    const char *event = "hook_slave_remove_executor_hook";
    mcm_fragment fragments[] = {fragment("framework_info", "{\"user\":\"u\",\"name\":\"f\"}"),
                                fragment("executor_info", "{\"executor_id\":{\"value\":\"e1\"}}")};
    waiter w;
    for (int i = 0; i < 2; i++) {
        run(m, event, fragments, 2, &w);
        wait_for(&w, 10);
    }
    CHECK(mcm_module_metric(m, event, MCM_METRIC_BREAKER_OPEN) == 1 &&
              mcm_module_metric(m, event, MCM_METRIC_SHORT_CIRCUITED) == 0,
          "breaker: open after 2 failures", "open %f", mcm_module_metric(m, event, MCM_METRIC_BREAKER_OPEN));
    for (int i = 0; i < 3; i++) {
        run(m, event, fragments, 2, &w);
        wait_for(&w, 10);
    }
    CHECK(w.status == MCM_STATUS_ERROR && strstr(w.data, "[TASK=e1, METHOD=slaveRemoveExecutorHook] Command \"") &&
              strstr(w.data, "\" not run: circuit open after 2 consecutive failures; the command runs again in 30 s."),
          "breaker: a short-circuited event fails saying so", "%s", w.data);
    CHECK(mcm_module_metric(m, event, MCM_METRIC_SHORT_CIRCUITED) == 3 &&
              mcm_module_metric(m, event, MCM_METRIC_CALLS) == 2 && mcm_module_metric(m, event, MCM_METRIC_FAILURES) == 2,
          "breaker: short_circuited counts the events answered at once, not as command runs", "short %f calls %f",
          mcm_module_metric(m, event, MCM_METRIC_SHORT_CIRCUITED), mcm_module_metric(m, event, MCM_METRIC_CALLS));
    CHECK(mcm_module_metric(m, "hook_slave_post_fetch_hook", MCM_METRIC_BREAKER_OPEN) == 0 &&
              mcm_module_metric(m, "hook_slave_post_fetch_hook", MCM_METRIC_SHORT_CIRCUITED) == 0,
          "breaker: an event without a breaker reads 0", "%f",
          mcm_module_metric(m, "hook_slave_post_fetch_hook", MCM_METRIC_BREAKER_OPEN));
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
    const char *keys[] = {"isolator_prepare_command", "isolator_usage_command", "isolator_watch_command",
                          "isolator_watch_frequence", "isolator_cleanup_command", "grace_period"};
    const char *values[] = {script("prepare.sh", "#!/bin/sh\necho '{\"user\":\"app\"}' > \"$2\"\n"),
                            script("usage.sh", "#!/bin/sh\ngrep -q '/sandbox' \"$1\" && echo '{\"cpus_limit\":2}' > \"$2\"\n"),
                            script("watch.sh", watch_body), "0.05",
                            script("cleanup.sh", "#!/bin/sh\nexit 0\n"), "0.2"};
    char *error = NULL;
    mcm_module *m = create_isolator("abi_isolator", "state", keys, values, 6, &error);
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
    /* Exec mode touches files: its task runs on Swift's pool, never on the engine's event loop. */
    char exec_thread[32] = "";
    pthread_getname_np(w.thread, exec_thread, sizeof exec_thread);
    CHECK(strcmp(exec_thread, "mcm-event-loop") != 0, "isolator: an exec usage is answered from a thread of the pool",
          "%s", exec_thread);

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

    /* A container the isolator has no state for is never harmed: usage runs with its container_id only. */
    run(m, "isolator_usage", id_only, 1, &w);
    CHECK(wait_for(&w, 10) && w.status == MCM_STATUS_RESULT && !strstr(w.data, "cpus_limit") &&
              strstr(w.data, "\"timestamp\":"),
          "isolator: usage of a container without state runs with its id only", "%d %s", w.status, w.data);

    CHECK(mcm_module_metric(m, "isolator_prepare", MCM_METRIC_CALLS) == 1 &&
              mcm_module_metric(m, "isolator_usage", MCM_METRIC_CALLS) == 18,
          "isolator: metrics count the commands run", "prepare %f usage %f",
          mcm_module_metric(m, "isolator_prepare", MCM_METRIC_CALLS), mcm_module_metric(m, "isolator_usage", MCM_METRIC_CALLS));
    CHECK(mcm_module_metric(m, "isolator_usage", MCM_METRIC_CPU_SECONDS) > 0 &&
              mcm_module_metric(m, "isolator_usage", MCM_METRIC_CPU_SECONDS) < 60,
          "isolator: the CPU time of the commands is counted", "usage %f s",
          mcm_module_metric(m, "isolator_usage", MCM_METRIC_CPU_SECONDS));

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
    CHECK(log_lines_after_destroy == 0 && latencies_after_destroy == 0, "isolator: no log line nor latency after destroy",
          "%d %d", log_lines_after_destroy, latencies_after_destroy);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Each promise of the header about tokens, threads, borrowed input and destroy. */
static void check_header_promises(void) {
    char pid_file[300];
    snprintf(pid_file, sizeof pid_file, "%s/stubborn.pid", dir);
    char stubborn_body[600];
    snprintf(stubborn_body, sizeof stubborn_body, "#!/bin/sh\ntrap '' TERM\necho $$ > %s\nwhile :; do sleep 0.05; done\n",
             pid_file);
    const char *keys[] = {"isolator_prepare_command", "isolator_cleanup_command", "grace_period"};
    const char *values[] = {script("echo-user.sh", "#!/bin/sh\nprintf '{%s}' \"$(grep -o '\"user\":\"[^\"]*\"' \"$1\")\" > \"$2\"\n"),
                            script("stubborn.sh", stubborn_body), "0.3"};
    char *error = NULL;
    mcm_module *m = create_isolator("abi_promises", "promises-state", keys, values, 3, &error);
    CHECK(m != NULL, "promises: created", "%s", error ? error : "");
    if (!m) return;

    /* Tokens are never 0, also when the event is refused at once, or there is no module. */
    waiter refused, nomodule, ok;
    waiter_init(&refused);
    waiter_init(&nomodule);
    uint64_t t1 = mcm_run_event(m, "no_such_event", NULL, 0, on_result, &refused);
    uint64_t t2 = mcm_run_event(NULL, "isolator_prepare", NULL, 0, on_result, &nomodule);
    CHECK(t1 != 0 && t2 != 0 && t1 != t2, "promises: mcm_run_event never returns token 0", "%llu %llu",
          (unsigned long long)t1, (unsigned long long)t2);
    /* An event that fails before it starts calls back on the calling thread, before mcm_run_event returns. */
    CHECK(refused.calls == 1 && refused.status == MCM_STATUS_ERROR && pthread_equal(refused.thread, pthread_self()) &&
              nomodule.calls == 1 && nomodule.status == MCM_STATUS_ERROR,
          "promises: a refused event calls back at once, on the calling thread", "%d %d", refused.calls, nomodule.calls);

    /* Fragments are copied before mcm_run_event returns: the caller may reuse its buffers at once. */
    char id[64], cfg[128];
    strcpy(id, "{\"value\":\"borrowed\"}");
    strcpy(cfg, "{\"user\":\"original\"}");
    mcm_fragment fragments[] = {{"container_id", id, strlen(id)}, {"container_config", cfg, strlen(cfg)}};
    waiter_init(&ok);
    uint64_t t3 = mcm_run_event(m, "isolator_prepare", fragments, 2, on_result, &ok);
    memset(cfg, 'x', sizeof cfg - 1);
    memset(id, 'x', sizeof id - 1);
    CHECK(t3 != 0 && wait_for(&ok, 10) && ok.status == MCM_STATUS_RESULT && strstr(ok.data, "\"original\""),
          "promises: fragments are copied before mcm_run_event returns", "%d %s", ok.status, ok.data);
    /* A command's outcome comes from an engine thread. */
    CHECK(!pthread_equal(ok.thread, pthread_self()), "promises: an event's callback comes from an engine thread", "");
    usleep(100 * 1000);
    CHECK(ok.calls == 1, "promises: exactly one callback per event", "%d", ok.calls);
    mcm_cancel(m, t3);                 /* finished: ignored */
    mcm_cancel(m, 0xFFFFFFFFFFFFull);  /* unknown: ignored */

    /* Destroy while a command that ignores SIGTERM runs: the command is stopped (SIGTERM, grace, SIGKILL), its
       callback comes exactly once before destroy returns, and destroy returns within the grace period (+2 s). */
    waiter running;
    waiter_init(&running);
    mcm_fragment cleanup[] = {fragment("container_id", "{\"value\":\"borrowed\"}")};
    mcm_run_event(m, "isolator_cleanup", cleanup, 1, on_result, &running);
    for (int i = 0; i < 100 && access(pid_file, F_OK) != 0; i++) usleep(20 * 1000);
    usleep(100 * 1000);
    double start = now_seconds();
    mcm_module_destroy(m);
    double took = now_seconds() - start;
    int calls_at_return = running.calls;
    CHECK(calls_at_return == 1 && running.status == MCM_STATUS_CANCELLED,
          "promises: destroy calls back a running event once before it returns", "calls %d status %d",
          calls_at_return, running.status);
    CHECK(took < 0.3 + 2.0, "promises: destroy returns within grace_period + 2 s", "%.2f s", took);
    FILE *f = fopen(pid_file, "r");
    int pid = 0;
    if (f) {
        if (fscanf(f, "%d", &pid) != 1) pid = 0;
        fclose(f);
    }
    usleep(200 * 1000);
    CHECK(pid > 0 && kill(pid, 0) != 0, "promises: destroy stops the running command", "pid %d", pid);
    usleep(200 * 1000);
    CHECK(running.calls == 1, "promises: no second callback after destroy", "%d", running.calls);
}

/* Worker mode through the ABI: many events served by one process; destroy with an event in flight answers it
   once, and no worker is left when destroy returns. */
static void check_worker_destroy(void) {
    char pids[300];
    snprintf(pids, sizeof pids, "%s/worker.pids", dir);
    char body[1200];
    snprintf(body, sizeof body,
             "#!/bin/bash\necho $$ >> %s\n"
             "while IFS= read -r request; do\n"
             "  id=${request#*\\\"id\\\":}; id=${id%%%%,*}\n"
             "  case \"$request\" in *'\"value\":\"slow\"'*) sleep 60 ;; esac\n"
             "  printf '{\"id\":%%s,\"output\":{\"processes\":7}}\\n' \"$id\"\n"
             "done\n",
             pids);
    const char *keys[] = {"isolator_usage_command", "isolator_usage_mode", "grace_period"};
    const char *values[] = {script("worker.sh", body), "worker", "0.3"};
    char *error = NULL;
    mcm_module *m = create_isolator("abi_worker", "worker-state", keys, values, 3, &error);
    CHECK(m != NULL, "worker: created", "%s", error ? error : "");
    if (!m) return;
    CHECK(mcm_module_mode(m, "isolator_usage") == MCM_MODE_WORKER && mcm_module_mode(m, "isolator_prepare") == MCM_MODE_NONE,
          "worker: mcm_module_mode", "%d", mcm_module_mode(m, "isolator_usage"));
    mcm_fragment id_only[] = {fragment("container_id", container)};
    int answered = 0;
    for (int i = 0; i < 20; i++) {
        waiter w;
        run(m, "isolator_usage", id_only, 1, &w);
        answered += wait_for(&w, 10) && w.status == MCM_STATUS_RESULT && strstr(w.data, "\"processes\":7");
    }
    FILE *f = fopen(pids, "r");
    int pid = 0, started = 0, p;
    while (f && fscanf(f, "%d", &p) == 1) {
        pid = p;
        started++;
    }
    if (f) fclose(f);
    CHECK(answered == 20 && started == 1, "worker: one process serves 20 events", "%d answered, %d started", answered,
          started);
    /* A worker-mode usage touches no file: its task runs on the event loop, which read the answer (issue 22). */
    waiter last;
    run(m, "isolator_usage", id_only, 1, &last);
    char thread[32] = "";
    if (wait_for(&last, 10)) pthread_getname_np(last.thread, thread, sizeof thread);
    CHECK(last.status == MCM_STATUS_RESULT && strcmp(thread, "mcm-event-loop") == 0,
          "worker: a worker usage is answered from the event loop's thread", "%d from '%s'", last.status, thread);
    /* One that fails before it waits for anything (its first part runs on this thread) is answered from there too,
       never from this thread. */
    waiter bad;
    mcm_fragment bad_id[] = {fragment("container_id", "not json")};
    run(m, "isolator_usage", bad_id, 1, &bad);
    thread[0] = 0;
    if (wait_for(&bad, 10)) pthread_getname_np(bad.thread, thread, sizeof thread);
    CHECK(bad.status == MCM_STATUS_ERROR && !pthread_equal(bad.thread, pthread_self()) &&
              strcmp(thread, "mcm-event-loop") == 0,
          "worker: an event failing before it waits is answered from the loop, not the calling thread", "%d from '%s'",
          bad.status, thread);

    waiter slow;
    mcm_fragment slow_id[] = {fragment("container_id", "{\"value\":\"slow\"}")};
    run(m, "isolator_usage", slow_id, 1, &slow);
    usleep(200 * 1000);
    double start = now_seconds();
    mcm_module_destroy(m);
    double took = now_seconds() - start;
    CHECK(slow.calls == 1 && slow.status == MCM_STATUS_CANCELLED,
          "worker: destroy answers the event in flight once, cancelled", "%d %d", slow.calls, slow.status);
    CHECK(pid > 0 && kill(pid, 0) != 0 && took < 0.3 + 2.0, "worker: no worker is left when destroy returns",
          "pid %d alive %d, %.2f s", pid, pid > 0 && kill(pid, 0) == 0, took);
}

/* `emfile N`: a fresh process runs out of file descriptors, N left free, at its first command. */
static int check_out_of_fds(int free_fds) {
    struct rlimit limit = {256, 256};
    setrlimit(RLIMIT_NOFILE, &limit);
    const char *keys[] = {"isolator_usage_command", "isolator_usage_failure_policy"};
    const char *values[] = {script("usage.sh", "#!/bin/sh\necho '{\"cpus_limit\":3}' > \"$2\"\n"), "fail"};
    char *error = NULL;
    mcm_module *m = create_isolator("abi_emfile", "state", keys, values, 2, &error);
    if (!m) {
        printf("not ok - create: %s\n", error ? error : "");
        return 1;
    }
    mcm_fragment id_only[] = {fragment("container_id", container)};
    waiter w;
    run(m, "isolator_status", id_only, 1, &w); /* no command: warms up the Swift runtime's threads */
    wait_for(&w, 10);

    int fillers[300], n = 0, fd;
    while (n < 300 && (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0) fillers[n++] = fd;
    for (int i = 0; i < free_fds && n > 0; i++) close(fillers[--n]);
    run(m, "isolator_usage", id_only, 1, &w);
    int answered = wait_for(&w, 20);
    for (int i = 0; i < n; i++) close(fillers[i]);
    printf("# first event with %d free fds: status %d: %s\n", free_fds, w.status, w.data);
    char name[200];
    snprintf(name, sizeof name, "out of fds (%d free): the event fails with a message or succeeds", free_fds);
    CHECK(answered && (w.status == MCM_STATUS_RESULT ||
                       (w.status == MCM_STATUS_ERROR && strstr(w.data, "Too many open files"))),
          name, "answered %d status %d: %s", answered, w.status, w.data);
    run(m, "isolator_usage", id_only, 1, &w);
    snprintf(name, sizeof name, "out of fds (%d free): the next event works once fds are back", free_fds);
    CHECK(wait_for(&w, 20) && w.status == MCM_STATUS_RESULT && strstr(w.data, "\"cpus_limit\":3"), name, "%d %s",
          w.status, w.data);
    mcm_module_destroy(m);
    return failed == 0 ? 0 : 1;
}

/* A SIGTERM handler as glog's (what a Mesos agent has): it resets the handler and raises the signal again, so
   the process dies at once — no module is destroyed, no destructor runs. */
static void die_like_glog(int sig) {
    signal(sig, SIG_DFL);
    raise(sig);
}

/* `worker-host TEMP_DIR STATE_DIR USAGE_WORKER STATUS_WORKER`: an agent stand-in. Loads an isolator module named
   abi_host whose usage and status run in worker mode, runs one event of each (starting both workers), prints
   "ready" and waits to be killed (SIGKILL, or SIGTERM handled as glog does), never destroying the module. */
static int host_workers(const char *temp_dir, const char *state_dir, const char *usage, const char *status) {
    signal(SIGTERM, die_like_glog);
    const char *keys[] = {"module_name", "temp_dir", "state_dir", "isolator_usage_command", "isolator_usage_mode",
                          "isolator_status_command", "isolator_status_mode", "grace_period"};
    const char *values[] = {"abi_host", temp_dir, state_dir, usage, "worker", status, "worker", "0.5"};
    char *error = NULL;
    mcm_module *m = create(MCM_KIND_ISOLATOR, keys, values, 8, &error);
    if (!m) {
        printf("not ok - create: %s\n", error ? error : "");
        return 1;
    }
    mcm_fragment id_only[] = {fragment("container_id", container)};
    waiter u, s;
    run(m, "isolator_usage", id_only, 1, &u);
    run(m, "isolator_status", id_only, 1, &s);
    int ok = wait_for(&u, 20) && u.status == MCM_STATUS_RESULT && wait_for(&s, 20) && s.status == MCM_STATUS_RESULT;
    printf("%s - worker-host: both workers answered: %d %s / %d %s\n", ok ? "ready" : "not ok", u.status, u.data,
           s.status, s.data);
    fflush(stdout);
    if (!ok) return 1;
    for (;;) pause();
}

int check_exit_notice(const char *mode, int events); /* exit_notice.c */

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "exit-notice") == 0) return check_exit_notice(argv[2], atoi(argv[3]));
    if (argc == 6 && strcmp(argv[1], "worker-host") == 0) return host_workers(argv[2], argv[3], argv[4], argv[5]);
    snprintf(dir, sizeof dir, "%s/mcm-abi-check.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    if (argc == 3 && strcmp(argv[1], "emfile") == 0) return check_out_of_fds(atoi(argv[2]));
    if (argc == 2 && strcmp(argv[1], "rule-starvation") == 0) return check_rule_starvation(dir); /* starvation.c */
    check_bad_parameters();
    check_hooks();
    check_breaker();
    check_isolator();
    check_header_promises();
    check_worker_destroy();

    char command[512];
    snprintf(command, sizeof command, "rm -rf '%s'", dir);
    if (system(command) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
