#define _GNU_SOURCE
#include "mcm_spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int mcm_spawn(const char *path, char *const argv[], int stdin_fd, int stdout_fd, int stderr_fd, pid_t *pid) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    int rc = posix_spawn_file_actions_init(&actions);
    if (rc != 0) return rc;
    rc = posix_spawnattr_init(&attr);
    if (rc != 0) {
        posix_spawn_file_actions_destroy(&actions);
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
        rc = posix_spawn(pid, path, &actions, &attr, argv, environ);
    }
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
    return rc;
}

int mcm_pidfd_open(pid_t pid) {
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

int mcm_child_exited(pid_t pid) {
    siginfo_t info;
    info.si_pid = 0;
    int rc;
    do {
        rc = waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT);
    } while (rc == -1 && errno == EINTR);
    if (rc == -1) return -1;
    return info.si_pid == pid ? 1 : 0;
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

int mcm_pipe_for_console(int fds[2]) {
    if (pipe2(fds, O_CLOEXEC) != 0) return -1;
    int flags = fcntl(fds[0], F_GETFL);
    if (flags == -1 || fcntl(fds[0], F_SETFL, flags | O_NONBLOCK) == -1) {
        int saved = errno;
        close(fds[0]);
        close(fds[1]);
        errno = saved;
        return -1;
    }
    return 0;
}

int mcm_mkstemp_cloexec(char *template_path) { return mkostemp(template_path, O_CLOEXEC); }

int mcm_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int mcm_epoll_add(int epoll_fd, int fd, uint64_t data) {
    struct epoll_event event;
    event.events = EPOLLIN;
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
