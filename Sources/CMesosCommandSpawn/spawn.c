#define _GNU_SOURCE
#include "mcm_spawn.h"
#include "mcm_credentials.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/vfs.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* environ with `extra` (NAME=value entries, NULL-terminated) added, replacing same-named entries; only the
   pointer array is allocated (free it), the strings are environ's and extra's own. NULL with errno ENOMEM. */
static char **merged_environment(char *const extra[]) {
    size_t count = 0, extras = 0;
    for (char **entry = environ; entry && *entry; entry++) count++;
    for (char *const *entry = extra; entry && *entry; entry++) extras++;
    char **merged = malloc((count + extras + 1) * sizeof(char *));
    if (merged == NULL) return NULL;
    size_t n = 0;
    for (char **entry = environ; entry && *entry; entry++) {
        int replaced = 0;
        for (char *const *add = extra; add && *add && !replaced; add++) {
            const char *equals = strchr(*add, '=');
            size_t length = equals ? (size_t)(equals - *add) + 1 : strlen(*add);
            replaced = strncmp(*entry, *add, length) == 0;
        }
        if (!replaced) merged[n++] = *entry;
    }
    for (char *const *add = extra; add && *add; add++) merged[n++] = *add;
    merged[n] = NULL;
    return merged;
}

/* What a started child needs; in the CLONE_VM case it lives on the parent's stack, which the child shares. */
struct child_setup {
    const mcm_spawn_request *request;
    char **envp;
    int worker;
    pid_t parent;
    /* Where the fork-like child reports a failed exec (worker), or -1. */
    int report_fd;
    /* The child must write itself into the cgroup (no CLONE_INTO_CGROUP). */
    int migrate;
    /* The CLONE_VM child's errno when it could not exec (read by the parent once the child is gone). */
    volatile int failure;
};

/* `<event>_user`: the child becomes the user (credentials.c), just before exec(2) — after the cgroup, the fds and
   the signals are set up, which may need root. Raw system calls only, which change this task's credentials and
   nothing of the parent's, whose memory a CLONE_VM child shares. -1 with errno if it cannot: the start fails,
   never runs the command as the agent's user. */
static int apply_credentials(const struct mcm_credentials *credentials) {
    int code = mcm_apply_credentials(credentials);
    if (code == 0) return 0;
    errno = code;
    return -1;
}

/* The child side: async-signal-safe calls only (the parent is multi-threaded; in the CLONE_VM case the child
   also shares its memory: nothing here may allocate or take a lock). Never returns. */
static int become_child(void *context) {
    struct child_setup *setup = context;
    const mcm_spawn_request *request = setup->request;
    for (int sig = 1; sig < _NSIG; sig++) {
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_handler = SIG_DFL;
        sigaction(sig, &action, NULL); /* SIGKILL, SIGSTOP and glibc's own signals fail harmlessly */
    }
    setpgid(0, 0);
    if (setup->worker) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != setup->parent) _exit(127); /* the agent died before prctl */
    }
    if (setup->migrate && request->cgroup_fd >= 0) {
        int procs = openat(request->cgroup_fd, "cgroup.procs", O_WRONLY | O_CLOEXEC);
        if (procs < 0 || write(procs, "0", 1) != 1) goto failed;
        close(procs);
    }
    /* Move the three fds above 2 first, so that dup2 onto 0, 1, 2 cannot clobber one of them. */
    int fds[3] = {request->stdin_fd, request->stdout_fd, request->stderr_fd};
    int high[3];
    for (int i = 0; i < 3; i++) {
        high[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
        if (high[i] < 0) goto failed;
    }
    for (int i = 0; i < 3; i++) {
        if (dup2(high[i], i) < 0) goto failed;
    }
    /* Every other fd goes, but the close-on-exec pipe that reports a failed exec. */
    int keep = setup->report_fd;
    if (keep >= 3) {
        if ((keep > 3 && syscall(SYS_close_range, 3U, (unsigned)keep - 1, 0U) != 0) ||
            syscall(SYS_close_range, (unsigned)keep + 1, ~0U, 0U) != 0) {
            long max = sysconf(_SC_OPEN_MAX); /* before Linux 5.9 */
            for (int fd = 3; fd < max; fd++) {
                if (fd != keep) close(fd);
            }
        }
    } else if (syscall(SYS_close_range, 3U, ~0U, 0U) != 0) {
        long max = sysconf(_SC_OPEN_MAX);
        for (int fd = 3; fd < max; fd++) close(fd);
    }
    if (request->credentials != NULL && apply_credentials(request->credentials) != 0) goto failed;
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(request->path, request->argv, setup->envp);
failed:;
    int code = errno;
    setup->failure = code;
    if (setup->report_fd >= 0) {
        ssize_t ignored = write(setup->report_fd, &code, sizeof code);
        (void)ignored;
    }
    _exit(127);
}

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

/* struct clone_args of linux/sched.h (CLONE_ARGS_SIZE_VER2: with `cgroup`). */
struct mcm_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

/* -1 not tried, 1 clone3 with CLONE_INTO_CGROUP works, 0 it does not (ENOSYS, E2BIG, EINVAL): place before exec. */
static int clone_into_cgroup = -1;

int mcm_clone_into_cgroup_status(void) { return __atomic_load_n(&clone_into_cgroup, __ATOMIC_RELAXED); }

static int clone3_unsupported(int code) { return code == ENOSYS || code == E2BIG || code == EINVAL; }

#if defined(__x86_64__)
/* clone3 with CLONE_VM: the child runs `fn(arg)` on `args->stack` and exits with its result — as glibc's own
   clone3.S, which glibc does not export. Returns the child's pid, or -errno. */
static long clone3_vm(struct mcm_clone_args *args, int (*fn)(void *), void *arg) {
    long result;
    register long function __asm__("r12") = (long)fn;
    register long argument __asm__("r13") = (long)arg;
    __asm__ volatile("syscall\n\t"
                     "testq %%rax, %%rax\n\t"
                     "jnz 1f\n\t"
                     /* the child, on its own stack (16-byte aligned at its top) */
                     "xorl %%ebp, %%ebp\n\t"
                     "movq %%r13, %%rdi\n\t"
                     "callq *%%r12\n\t"
                     "movl %%eax, %%edi\n\t"
                     "movl $231, %%eax\n\t" /* exit_group */
                     "syscall\n\t"
                     "ud2\n\t"
                     "1:\n\t"
                     : "=a"(result)
                     : "0"((long)SYS_clone3), "D"(args), "S"(sizeof *args), "r"(function), "r"(argument)
                     : "rcx", "r11", "memory", "cc");
    return result;
}
#endif

/* environ plus the request's entries, or NULL (ENOMEM). */
static char **request_environment(const mcm_spawn_request *request) {
    return merged_environment(request->extra_env);
}

int mcm_spawn_command(const mcm_spawn_request *request, pid_t *pid, int *pidfd) {
    char **envp = request_environment(request);
    if (envp == NULL) return ENOMEM;
    struct child_setup setup = {request, envp, 0, getpid(), -1, 0, 0};
    /* The child shares this thread's memory until it execs: its stack is a region of ours, below this frame. */
    enum { STACK_SIZE = 32 << 10 };
    char stack[STACK_SIZE] __attribute__((aligned(16)));
    /* It must not run one of the agent's signal handlers (on our memory) before it has reset them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int fd = -1;
    long child = -ENOSYS;
#if defined(__x86_64__)
    if (request->cgroup_fd < 0 || mcm_clone_into_cgroup_status() != 0) {
        struct mcm_clone_args args;
        memset(&args, 0, sizeof args);
        args.flags = CLONE_VM | CLONE_VFORK | CLONE_PIDFD;
        args.pidfd = (uint64_t)(uintptr_t)&fd;
        args.exit_signal = SIGCHLD;
        args.stack = (uint64_t)(uintptr_t)stack;
        args.stack_size = STACK_SIZE;
        if (request->cgroup_fd >= 0) {
            args.flags |= CLONE_INTO_CGROUP;
            args.cgroup = (uint64_t)request->cgroup_fd;
        }
        child = clone3_vm(&args, become_child, &setup);
        if (request->cgroup_fd >= 0) {
            if (child > 0) __atomic_store_n(&clone_into_cgroup, 1, __ATOMIC_RELAXED);
            else if (clone3_unsupported((int)-child)) __atomic_store_n(&clone_into_cgroup, 0, __ATOMIC_RELAXED);
        }
    }
#endif
    int code = 0;
    if (child < 0 && clone3_unsupported((int)-child)) {
        /* No clone3 (Linux < 5.3), or no CLONE_INTO_CGROUP (< 5.7): vfork-like clone, the child moves itself
           into the cgroup before exec. */
        if (request->cgroup_fd >= 0) __atomic_store_n(&clone_into_cgroup, 0, __ATOMIC_RELAXED);
        setup.migrate = 1;
        fd = -1;
        child = clone(become_child, stack + STACK_SIZE, CLONE_VM | CLONE_VFORK | SIGCHLD, &setup);
        if (child < 0) child = -errno;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    free(envp);
    if (child < 0) {
        code = (int)-child;
    } else if (setup.failure != 0) {
        /* It could not exec (CLONE_VFORK: it has exited by now). */
        code = setup.failure;
        int status;
        while (waitpid((pid_t)child, &status, 0) < 0 && errno == EINTR) {
        }
        if (fd >= 0) close(fd);
    } else {
        *pid = (pid_t)child;
        if (fd < 0) fd = mcm_pidfd_open((pid_t)child);
        *pidfd = fd;
    }
    return code;
}

int mcm_spawn(const char *path, char *const argv[], char *const extra_env[], int stdin_fd, int stdout_fd,
              int stderr_fd, pid_t *pid) {
    mcm_spawn_request request = {path, argv, extra_env, stdin_fd, stdout_fd, stderr_fd, -1, NULL};
    int pidfd = -1;
    int code = mcm_spawn_command(&request, pid, &pidfd);
    if (code == 0 && pidfd >= 0) close(pidfd);
    return code;
}

int mcm_spawn_worker(const mcm_spawn_request *request, pid_t *pid, int *report_fd) {
    char **envp = request_environment(request);
    if (envp == NULL) return ENOMEM;
    int report[2];
    if (mcm_pipe(report, 0) != 0) { /* our read end is non-blocking */
        int code = errno;
        free(envp);
        return code;
    }
    struct child_setup setup = {request, envp, 1, getpid(), report[1], 0, 0};
    /* The child must not run one of the agent's signal handlers before it has reset them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    long child = -1;
    int fork_errno = 0;
    if (request->cgroup_fd >= 0 && mcm_clone_into_cgroup_status() != 0) {
        struct mcm_clone_args args;
        memset(&args, 0, sizeof args);
        args.flags = CLONE_INTO_CGROUP;
        args.exit_signal = SIGCHLD;
        args.cgroup = (uint64_t)request->cgroup_fd;
        child = syscall(SYS_clone3, &args, sizeof args); /* fork-like: returns 0 in the child, on a copy of our stack */
        if (child == 0) become_child(&setup);
        fork_errno = errno;
        if (child > 0) __atomic_store_n(&clone_into_cgroup, 1, __ATOMIC_RELAXED);
        else if (clone3_unsupported(fork_errno)) __atomic_store_n(&clone_into_cgroup, 0, __ATOMIC_RELAXED);
    }
    if (child < 0 && (request->cgroup_fd < 0 || clone3_unsupported(fork_errno))) {
        setup.migrate = request->cgroup_fd >= 0;
        child = fork();
        if (child == 0) become_child(&setup);
        fork_errno = errno;
    }
    /* The child makes its own group too; whichever runs first wins, so that a kill of the group right after this
       returns cannot find no group (EACCES once the child has exec'd: it did it itself). */
    if (child > 0) setpgid((pid_t)child, (pid_t)child);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    free(envp);
    close(report[1]);
    if (child < 0) {
        close(report[0]);
        return fork_errno;
    }
    /* Not waited for here: an exec stuck in the kernel (a hung mount) must not block the caller. */
    *pid = (pid_t)child;
    *report_fd = report[0];
    return 0;
}

int mcm_pidfd_open(pid_t pid) {
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

int mcm_pidfd_send_signal(int pidfd, int sig) {
#ifdef SYS_pidfd_send_signal
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
#else
    (void)pidfd;
    (void)sig;
    errno = ENOSYS;
    return -1;
#endif
}

int mcm_peek_exit(pid_t pid, int *exited, int *value) {
    siginfo_t info;
    info.si_pid = 0;
    int rc;
    do {
        rc = waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT);
    } while (rc == -1 && errno == EINTR);
    if (rc == -1) return -1;
    if (info.si_pid != pid) return 0;
    *exited = info.si_code == CLD_EXITED;
    *value = info.si_status;
    return 1;
}

int mcm_child_exited(pid_t pid) {
    int exited, value;
    return mcm_peek_exit(pid, &exited, &value);
}

int mcm_reap(pid_t pid, int *status) {
    int rc;
    do {
        rc = waitpid(pid, status, 0);
    } while (rc == -1 && errno == EINTR);
    return rc == -1 ? -1 : 0;
}

int mcm_reap_usage(pid_t pid, int *status, uint64_t *cpu_usec) {
    struct rusage usage;
    int rc;
    do {
        rc = wait4(pid, status, 0, &usage);
    } while (rc == -1 && errno == EINTR);
    if (rc == -1) return -1;
    *cpu_usec = (uint64_t)usage.ru_utime.tv_sec * 1000000u + (uint64_t)usage.ru_utime.tv_usec +
                (uint64_t)usage.ru_stime.tv_sec * 1000000u + (uint64_t)usage.ru_stime.tv_usec;
    return 0;
}

int mcm_wifexited(int status) { return WIFEXITED(status); }
int mcm_wexitstatus(int status) { return WEXITSTATUS(status); }
int mcm_wifsignaled(int status) { return WIFSIGNALED(status); }
int mcm_wtermsig(int status) { return WTERMSIG(status); }

/* An fd of ours above 2: an agent that closed its stdin/stdout/stderr would otherwise hand 0-2 to our files,
   and the dup2 onto 0, 1, 2 in the child could clobber one with another. */
static int above_stdio(int fd) {
    if (fd < 0 || fd > 2) return fd;
    int high = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    int saved = errno;
    close(fd);
    errno = saved;
    return high;
}

/* A new pair of fds (a pipe's or a socketpair's) moved above 2, `nonblocking_end` (0 or 1) made non-blocking.
   On failure both are closed and set to -1, so that the caller cannot close these numbers again. */
static int settle_pair(const int raw[2], int fds[2], int nonblocking_end) {
    fds[0] = above_stdio(raw[0]);
    fds[1] = above_stdio(raw[1]);
    if (fds[0] >= 0 && fds[1] >= 0) {
        int flags = fcntl(fds[nonblocking_end], F_GETFL);
        if (flags != -1 && fcntl(fds[nonblocking_end], F_SETFL, flags | O_NONBLOCK) != -1) return 0;
    }
    int saved = errno;
    if (fds[0] >= 0) close(fds[0]);
    if (fds[1] >= 0) close(fds[1]);
    fds[0] = fds[1] = -1;
    errno = saved;
    return -1;
}

int mcm_pipe(int fds[2], int our_end) {
    int raw[2];
    if (pipe2(raw, O_CLOEXEC) != 0) return -1;
    return settle_pair(raw, fds, our_end ? 1 : 0);
}

int mcm_create_file_at(int dir_fd, const char *name) {
    return above_stdio(openat(dir_fd, name, O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW | O_CLOEXEC, 0600));
}

int mcm_open_read_at(int dir_fd, const char *name) {
    return openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
}

int mcm_open_directory(const char *path) { return open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC); }

int mcm_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int mcm_epoll_add(int epoll_fd, int fd, uint64_t data, int writable) {
    struct epoll_event event;
    event.events = writable ? EPOLLOUT : EPOLLIN;
    event.data.u64 = data;
    return epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event);
}

int mcm_epoll_remove(int epoll_fd, int fd) { return epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, NULL); }

int mcm_epoll_wait(int epoll_fd, uint64_t *data, int capacity, int timeout_ms) {
    struct epoll_event events[64];
    if (capacity > 64) capacity = 64;
    int n = epoll_wait(epoll_fd, events, capacity, timeout_ms);
    for (int i = 0; i < n; i++) data[i] = events[i].data.u64;
    return n;
}

int mcm_eventfd(void) { return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }

int mcm_socketpair(int fds[2]) {
    int raw[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, raw) != 0) return -1;
    return settle_pair(raw, fds, 1);
}

ssize_t mcm_send(int fd, const void *bytes, size_t length) {
    ssize_t n;
    do {
        n = send(fd, bytes, length, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    return n;
}

int mcm_timerfd(void) { return above_stdio(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)); }

int mcm_timerfd_arm(int fd, uint64_t deadline_ns) {
    struct itimerspec spec = {{0, 0}, {(time_t)(deadline_ns / 1000000000u), (long)(deadline_ns % 1000000000u)}};
    return timerfd_settime(fd, TFD_TIMER_ABSTIME, &spec, NULL);
}

void mcm_name_thread(const char *name) { pthread_setname_np(pthread_self(), name); }

static _Thread_local int start_here;

void mcm_set_start_here(int value) { start_here = value; }

static _Thread_local int running_loop_job;

void mcm_set_running_loop_job(int value) { running_loop_job = value; }

int mcm_running_loop_job(void) { return running_loop_job; }

int mcm_take_start_here(void) {
    int value = start_here;
    start_here = 0;
    return value;
}

int mcm_is_cgroup2(const char *path) {
    struct statfs info;
    if (statfs(path, &info) != 0) return -1;
    return info.f_type == 0x63677270 /* CGROUP2_SUPER_MAGIC */;
}

int mcm_inotify_create(void) { return above_stdio(inotify_init1(IN_NONBLOCK | IN_CLOEXEC)); }

int mcm_inotify_watch_modify(int fd, const char *path) { return inotify_add_watch(fd, path, IN_MODIFY); }

int mcm_inotify_unwatch(int fd, int wd) { return inotify_rm_watch(fd, wd); }

int mcm_inotify_read(int fd, int *wds, int capacity) {
    char buffer[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t n;
    do {
        n = read(fd, buffer, sizeof buffer);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return errno == EAGAIN ? 0 : -1;
    int count = 0;
    for (char *at = buffer; at < buffer + n && count < capacity;) {
        const struct inotify_event *event = (const struct inotify_event *)at;
        wds[count++] = event->wd;
        at += sizeof(struct inotify_event) + event->len;
    }
    return count;
}
