/*
 * mesos_command_modules.h — the C ABI of the mesos-command-modules engine.
 *
 * The only door between the Mesos shim (C++) and the Swift engine. Plain C types only; every call is
 * thread-safe. The shim renders each protobuf with stout's JSON::protobuf, hands the fragments to
 * mcm_run_event, and gets the result through a callback.
 *
 * Ownership, in one rule: a pointer crossing this boundary is BORROWED for the duration of the call (or of
 * the callback) unless the function says it returns malloc'd memory, which the caller releases with mcm_free.
 * - Strings passed in (parameters, event keys, fragments) are copied before the call returns.
 * - Strings passed to a callback (results, errors, log lines) are valid only during the callback.
 * - Results carry a length and are not guaranteed to be NUL-terminated.
 */
#ifndef MESOS_COMMAND_MODULES_H
#define MESOS_COMMAND_MODULES_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An engine module: one Hook or Isolator instance configured from a manifest's parameters. Opaque. */
typedef struct mcm_module mcm_module;

typedef enum {
    MCM_KIND_HOOK = 0,
    MCM_KIND_ISOLATOR = 1
} mcm_kind;

typedef enum {
    /* The event succeeded and `data` holds its JSON result (Labels, ContainerLaunchInfo, ...). */
    MCM_STATUS_RESULT = 0,
    /* The event succeeded without a result: "no change" / None / Nothing. For a watch: no limitation will
       come (no command, or the container was cleaned up); keep the future pending. */
    MCM_STATUS_NONE = 1,
    /* The event failed; `data` holds the message (command, event, container and cause). */
    MCM_STATUS_ERROR = 2,
    /* The event was cancelled with mcm_cancel (a discarded watch). */
    MCM_STATUS_CANCELLED = 3
} mcm_status;

typedef enum {
    MCM_LOG_DEBUG = 0,
    MCM_LOG_INFO = 1,
    MCM_LOG_WARNING = 2,
    MCM_LOG_ERROR = 3
} mcm_log_level;

/* Counters of one event of a module, since it was created. */
typedef enum {
    /* Commands run (each watch run counts). */
    MCM_METRIC_CALLS = 0,
    /* Commands that failed, timeouts included, whatever the failure policy did with the failure. */
    MCM_METRIC_FAILURES = 1,
    /* Commands stopped because they took too long (or waited too long for a slot or a worker). */
    MCM_METRIC_TIMEOUTS = 2,
    /* Events whose command did not run because the event's `when` rule did not match. */
    MCM_METRIC_SKIPPED = 3,
    /* Worker mode: workers stopped after a failure while serving this event (a fresh one starts). */
    MCM_METRIC_WORKER_RESTARTS = 4,
    /* 1 while the event's circuit breaker is open (its events answered at once, or one event probing the
       command), else 0 — also 0 for an event without a breaker. */
    MCM_METRIC_BREAKER_OPEN = 5,
    /* Events answered at once by the open circuit breaker, without running the command. */
    MCM_METRIC_SHORT_CIRCUITED = 6,
    /* User + system CPU seconds of everything the event's commands ran (their cgroups' cpu.stat; under
       containment=process_group the reaped commands' rusage). */
    MCM_METRIC_CPU_SECONDS = 7
} mcm_metric;

/* One member of an event's input envelope: `key` (NUL-terminated) and its JSON text (with its length). */
typedef struct {
    const char *key;
    const char *json;
    size_t json_length;
} mcm_fragment;

/* Receives each log line of a module; `message` is borrowed. Called from engine threads. */
typedef void (*mcm_log_callback)(void *context, mcm_log_level level, const char *message, size_t length);

/* Receives the duration of each command run, in milliseconds, as it ends (for a latency histogram such as
   libprocess' Timer); `event_key` is borrowed. Called from engine threads. */
typedef void (*mcm_latency_callback)(void *context, const char *event_key, double milliseconds);

/* What a module calls back besides an event's result. Every member may be NULL. */
typedef struct {
    mcm_log_callback log;
    mcm_latency_callback latency;
    void *context;
} mcm_callbacks;

/* Receives an event's outcome, exactly once per mcm_run_event: from an engine thread, or from the calling
   thread, before mcm_run_event returns, when the event is refused before it starts (no module, unknown event
   key) or decided without a command (a hook event its `when` rule skips: MCM_STATUS_NONE); or from the thread
   in mcm_module_destroy (see there). `data` is borrowed. The callback must not call back into this library for
   the same module, must not block and must not destroy a module: for a worker-mode hook, usage or status event it
   runs on the engine's event loop thread (the one that read the worker's answer), which every module's commands
   and workers wait on. */
typedef void (*mcm_result_callback)(void *context, mcm_status status, const char *data, size_t length);

/*
 * Creates a module from its manifest parameters (`count` NUL-terminated keys and values).
 * `callbacks` (may be NULL; copied) receive the module's log lines and command latencies with their
 * `context`; they must stay callable until mcm_module_destroy returns. Warnings and notes about the
 * parameters are logged before this returns.
 * Returns NULL on bad parameters and sets `*error` (if `error` is not NULL) to a malloc'd, NUL-terminated
 * message naming the module and each key at fault; release it with mcm_free.
 */
mcm_module *mcm_module_create(mcm_kind kind, const char *const *keys, const char *const *values, size_t count,
                              const mcm_callbacks *callbacks, char **error);

/*
 * Destroys a module. What happens to events still running, in order:
 * 1. each is cancelled: a running command gets SIGTERM to its process group, then SIGKILL after grace_period
 *    (a watch loop stops; an event waiting for a command slot stops waiting);
 * 2. mcm_module_destroy waits up to grace_period + 2 seconds for their callbacks, which come from engine
 *    threads with MCM_STATUS_CANCELLED or with their outcome, if it was already known;
 * 3. an event still running then (its process stuck in the kernel) gets MCM_STATUS_CANCELLED from the calling
 *    thread; a callback already under way on another thread is waited for.
 * When mcm_module_destroy returns, every event's callback has been called exactly once and has returned, and
 * no callback and no log line of this module come any more. Processes stuck in the kernel are reaped later, in
 * the background. The module pointer is invalid afterwards.
 */
void mcm_module_destroy(mcm_module *module);

/* The module's module_name (borrowed, valid until mcm_module_destroy). */
const char *mcm_module_name(const mcm_module *module);

/* 1 if the module has a command for `event_key` (e.g. "isolator_prepare"), 0 otherwise. */
int mcm_module_handles(const mcm_module *module, const char *event_key);

/* How the module runs `event_key`'s command. */
typedef enum {
    MCM_MODE_NONE = 0,   /* no command */
    MCM_MODE_EXEC = 1,   /* a process per event */
    MCM_MODE_WORKER = 2  /* a long-lived worker serving many events */
} mcm_mode;
mcm_mode mcm_module_mode(const mcm_module *module, const char *event_key);

/*
 * Runs an event (`event_key` as in the parameters, e.g. "hook_slave_run_task_label_decorator",
 * "isolator_usage") with the envelope's fragments. Isolator events take: recover {states, orphans};
 * prepare {container_id, container_config}; isolate {container_id, pid}; watch, usage, status, cleanup
 * {container_id}; update {container_id, resource_requests, resource_limits} — the isolator adds the
 * container_config it remembers. `callback` is called exactly once with `context`. The event's timeout counts
 * from this call. A hook event's `when` rule is decided on the calling thread before this returns (its cost is
 * linear in the values it reads and cut at the event's timeout), never on a thread other modules' events need.
 * Returns a token for mcm_cancel, never 0 — also for an event refused at once (no module, unknown key), whose
 * callback has then already been called.
 */
uint64_t mcm_run_event(mcm_module *module, const char *event_key, const mcm_fragment *fragments, size_t count,
                       mcm_result_callback callback, void *context);

/* Cancels a running event (a discarded watch: its loop and its command stop). Unknown or finished tokens
   are ignored. */
void mcm_cancel(mcm_module *module, uint64_t token);

/*
 * The longest an event of `event_key` takes to be answered, in seconds: its timeout (waiting for a slot or a
 * worker included), grace_period and a margin for a killed process to die. The engine answers by then even if
 * a process is stuck in the kernel; a caller that must block for the answer (a hook) may give up after it.
 */
double mcm_module_answer_limit(const mcm_module *module, const char *event_key);

/* A counter of one event of the module, for /metrics/snapshot (0 for an unknown event or metric). */
double mcm_module_metric(const mcm_module *module, const char *event_key, mcm_metric metric);

/* Releases memory this library returned as malloc'd. */
void mcm_free(void *pointer);

/* The build identity of the library the engine was linked into (static text: "mesos-command-modules build
   identity\nversion=…\nmesos_version=…\nmesos_commit=…\n"; mesos/link-module.sh puts it in the
   `.mesos_command_modules` section, where `mesos-command-modules inspect` reads it without loading the library),
   or NULL in a program linked without it. */
const char *mcm_build_identity(void);

#ifdef __cplusplus
}
#endif

#endif
