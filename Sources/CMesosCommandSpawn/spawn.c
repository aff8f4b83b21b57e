#define _GNU_SOURCE
#include "mcm_spawn.h"
#include "mcm_credentials.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
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

static int fork_command(const char *path, char *const argv[], char *const envp[], int stdin_fd, int stdout_fd,
                        int stderr_fd, int death_signal, const struct mcm_credentials *credentials, pid_t *pid,
                        int *report_fd);

/* A command with credentials of its own: forked (posix_spawn cannot change them), and waited for until it
   exec'd, as posix_spawn would. A child whose exec failed is reaped here. */
static int spawn_as(const char *path, char *const argv[], char *const envp[], int stdin_fd, int stdout_fd,
                    int stderr_fd, const struct mcm_credentials *credentials, pid_t *pid) {
    int report;
    int rc = fork_command(path, argv, envp, stdin_fd, stdout_fd, stderr_fd, 0, credentials, pid, &report);
    if (rc != 0) return rc;
    int code = 0;
    ssize_t n;
    for (;;) {
        n = read(report, &code, sizeof code);
        if (n >= 0 || (errno != EINTR && errno != EAGAIN)) break;
        struct pollfd ready = {report, POLLIN, 0};
        poll(&ready, 1, -1);
    }
    close(report);
    if (n == 0) return 0; /* end of file: exec succeeded */
    if (n != (ssize_t)sizeof code) code = EIO;
    int status;
    while (waitpid(*pid, &status, 0) == -1 && errno == EINTR) {}
    return code;
}

int mcm_spawn(const char *path, char *const argv[], char *const extra_env[], int stdin_fd, int stdout_fd,
              int stderr_fd, const struct mcm_credentials *credentials, pid_t *pid) {
    char **envp = merged_environment(extra_env);
    if (envp == NULL) return ENOMEM;
    if (credentials != NULL) {
        int rc = spawn_as(path, argv, envp, stdin_fd, stdout_fd, stderr_fd, credentials, pid);
        free(envp);
        return rc;
    }
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    int rc = posix_spawn_file_actions_init(&actions);
    if (rc != 0) {
        free(envp);
        return rc;
    }
    rc = posix_spawnattr_init(&attr);
    if (rc != 0) {
        posix_spawn_file_actions_destroy(&actions);
        free(envp);
        return rc;
    }

    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    if ((rc = posix_spawn_file_actions_adddup2(&actions, stdin_fd, 0)) == 0 &&
        (rc = posix_spawn_file_actions_adddup2(&actions, stdout_fd, 1)) == 0 &&
        (rc = posix_spawn_file_actions_adddup2(&actions, stderr_fd, 2)) == 0 &&
        // Every fd of the agent above 2 is closed in the child, O_CLOEXEC or not (glibc >= 2.34).
        (rc = posix_spawn_file_actions_addclosefrom_np(&actions, 3)) == 0 &&
        (rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                                  POSIX_SPAWN_SETSIGDEF)) == 0 &&
        (rc = posix_spawnattr_setpgroup(&attr, 0)) == 0 &&
        (rc = posix_spawnattr_setsigmask(&attr, &none)) == 0 &&
        (rc = posix_spawnattr_setsigdefault(&attr, &all)) == 0) {
        rc = posix_spawn(pid, path, &actions, &attr, argv, envp);
    }
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
    free(envp);
    return rc;
}

/* The child side of fork_command: async-signal-safe calls only (the parent is multi-threaded). `parent` 0: no
   death signal. */
static void become_command(const char *path, char *const argv[], char *const envp[], int fds[3], pid_t parent,
                           const struct mcm_credentials *credentials, int report_fd) {
    for (int sig = 1; sig < _NSIG; sig++) {
        struct sigaction action = {0};
        action.sa_handler = SIG_DFL;
        sigaction(sig, &action, NULL); /* SIGKILL, SIGSTOP and glibc's own signals fail harmlessly */
    }
    setpgid(0, 0);
    if (parent != 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) _exit(127); /* the agent died before prctl */
    }
    /* Move the three fds above 2 first, so that dup2 onto 0, 1, 2 cannot clobber one of them. */
    int high[3];
    for (int i = 0; i < 3; i++) {
        high[i] = fcntl(fds[i], F_DUPFD, 3);
        if (high[i] < 0) goto failed;
    }
    for (int i = 0; i < 3; i++) {
        if (dup2(high[i], i) < 0) goto failed;
    }
    /* Every other fd goes, but the close-on-exec pipe that reports a failed exec. */
    if ((report_fd > 3 && syscall(SYS_close_range, 3U, (unsigned)report_fd - 1, 0U) != 0) ||
        syscall(SYS_close_range, (unsigned)report_fd + 1, ~0U, 0U) != 0) {
        long max = sysconf(_SC_OPEN_MAX); /* before Linux 5.9 */
        for (int fd = 3; fd < max; fd++) {
            if (fd != report_fd) close(fd);
        }
    }
    /* The user last, once nothing else needs root (every fd above is the agent's, closed or moved). */
    if (credentials != NULL && (errno = mcm_apply_credentials(credentials)) != 0) goto failed;
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(path, argv, envp);
failed:;
    int code = errno;
    ssize_t ignored = write(report_fd, &code, sizeof code);
    (void)ignored;
    _exit(127);
}

int mcm_spawn_worker(const char *path, char *const argv[], char *const extra_env[], int stdin_fd, int stdout_fd,
                     int stderr_fd, const struct mcm_credentials *credentials, pid_t *pid, int *report_fd) {
    char **envp = merged_environment(extra_env);
    if (envp == NULL) return ENOMEM;
    int rc = fork_command(path, argv, envp, stdin_fd, stdout_fd, stderr_fd, 1, credentials, pid, report_fd);
    free(envp);
    return rc;
}

/* Forks the command (`death_signal`: with PR_SET_PDEATHSIG); `*report_fd` as mcm_spawn_worker's. */
static int fork_command(const char *path, char *const argv[], char *const envp[], int stdin_fd, int stdout_fd,
                        int stderr_fd, int death_signal, const struct mcm_credentials *credentials, pid_t *pid,
                        int *report_fd) {
    int report[2];
    if (mcm_pipe(report, 0) != 0) return errno; /* our read end is non-blocking */
    /* The child must not run one of the agent's signal handlers before it has reset them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t parent = getpid();
    int fds[3] = {stdin_fd, stdout_fd, stderr_fd};
    pid_t child = fork();
    if (child == 0) become_command(path, argv, envp, fds, death_signal ? parent : 0, credentials, report[1]);
    int fork_errno = errno;
    /* The child makes its own group too; whichever runs first wins, so that a kill of the group right after this
       returns cannot find no group (EACCES once the child has exec'd: it did it itself). */
    if (child > 0) setpgid(child, child);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(report[1]);
    if (child < 0) {
        close(report[0]);
        return fork_errno;
    }
    /* Not waited for here: an exec stuck in the kernel (a hung mount) must not block the caller. */
    *pid = child;
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
