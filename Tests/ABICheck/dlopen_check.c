/*
 * dlopen_check LIBRARY: loads the linked module library the way Mesos loads a module (dlopen), runs one event
 * through the C ABI, destroys the module and dlclose()s the library while the engine's threads live on — the
 * -z nodelete case — then checks that the process is still healthy. Run by .ci/run; no Mesos needed.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mesos_command_modules.h"

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int done;
static char result[1024];

static void on_result(void *context, mcm_status status, const char *data, size_t length) {
    (void)context;
    pthread_mutex_lock(&mutex);
    snprintf(result, sizeof result, "%d:%.*s", (int)status, (int)length, data);
    done = 1;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&mutex);
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    void *library = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!library) {
        printf("cannot dlopen: %s\n0 passed, 1 failed\n", dlerror());
        return 1;
    }
    mcm_module *(*create)(mcm_kind, const char *const *, const char *const *, size_t, const mcm_callbacks *,
                          char **) = dlsym(library, "mcm_module_create");
    uint64_t (*run)(mcm_module *, const char *, const mcm_fragment *, size_t, mcm_result_callback, void *) =
        dlsym(library, "mcm_run_event");
    void (*destroy)(mcm_module *) = dlsym(library, "mcm_module_destroy");
    void *internal = dlsym(library, "mcm_spawn");
    if (!create || !run || !destroy || internal) {
        printf("exports: create %p run %p destroy %p internal %p\n0 passed, 1 failed\n", (void *)create,
               (void *)run, (void *)destroy, internal);
        return 1;
    }

    char script[] = "/tmp/mcm-dlopen-check.XXXXXX";
    int fd = mkstemp(script);
    const char *body = "#!/bin/sh\necho '{\"variables\":[{\"name\":\"A\",\"type\":\"VALUE\",\"value\":\"1\"}]}' > \"$2\"\n";
    if (write(fd, body, strlen(body)) < 0) return 2;
    close(fd);
    chmod(script, 0755);

    const char *keys[] = {"module_name", "hook_slave_executor_environment_decorator_command"};
    const char *values[] = {"dlopen_check", script};
    char *error = NULL;
    mcm_module *module = create(MCM_KIND_HOOK, keys, values, 2, NULL, &error);
    if (!module) {
        printf("create: %s\n0 passed, 1 failed\n", error);
        return 1;
    }
    mcm_fragment fragment = {"executor_info", "{\"executor_id\":{\"value\":\"e\"}}", 31};
    run(module, "hook_slave_executor_environment_decorator", &fragment, 1, on_result, NULL);
    pthread_mutex_lock(&mutex);
    while (!done) pthread_cond_wait(&cond, &mutex);
    pthread_mutex_unlock(&mutex);
    destroy(module);
    dlclose(library);
    unlink(script);
    sleep(1); /* the engine's threads outlive dlclose: the library must still be mapped */

    int ok = strcmp(result, "0:{\"variables\":[{\"name\":\"A\",\"type\":\"VALUE\",\"value\":\"1\"}]}") == 0;
    printf("%s - dlopen, one event, destroy, dlclose: %s\n", ok ? "ok" : "not ok", result);
    printf("%d passed, %d failed\n", ok, !ok);
    return ok ? 0 : 1;
}
