#ifndef MCM_SPAWN_H
#define MCM_SPAWN_H

#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Starts `path` with `argv` (NULL-terminated) and the agent's environment, in a process group of its own,
/// with `stdin_fd`, `stdout_fd` and `stderr_fd` as its fds 0, 1 and 2 and no other fd of the agent, every
/// signal unblocked and at its default disposition. No shell is involved.
/// Returns 0 and sets `*pid`, or an errno value (ENOENT, EACCES, ENOEXEC, ...) when the command cannot start.
int mcm_spawn(const char *path, char *const argv[], int stdin_fd, int stdout_fd, int stderr_fd, pid_t *pid);

/// pidfd_open(2): a file descriptor that becomes readable when `pid` exits. -1 with errno on failure
/// (ENOSYS before Linux 5.3).
int mcm_pidfd_open(pid_t pid);

/// Whether `pid` (our child) has exited, without reaping it: 1 exited, 0 still running, -1 with errno.
/// Leaving the zombie in place keeps its pid, and so its process group id, from being reused while we may
/// still signal that group.
int mcm_child_exited(pid_t pid);

/// Reaps `pid` and returns its raw wait status in `*status`; 0, or -1 with errno.
int mcm_reap(pid_t pid, int *status);

/// Decoding of a raw wait status (the W* macros are not visible to Swift).
int mcm_wifexited(int status);
int mcm_wexitstatus(int status);
int mcm_wifsignaled(int status);
int mcm_wtermsig(int status);

/// pipe2(fds, O_CLOEXEC), with O_NONBLOCK on the read end only (the command's end stays blocking).
int mcm_pipe_for_console(int fds[2]);

/// mkostemp(template, O_CLOEXEC): creates a 0600 file; -1 with errno on failure.
int mcm_mkstemp_cloexec(char *template_path);

/// epoll, with the 64-bit user data as the only payload (struct epoll_event is packed on x86-64).
int mcm_epoll_create(void);
int mcm_epoll_add(int epoll_fd, int fd, uint64_t data);
int mcm_epoll_remove(int epoll_fd, int fd);
/// Waits up to `timeout_ms` (-1: forever); fills `data` with up to `capacity` ready entries' user data.
int mcm_epoll_wait(int epoll_fd, uint64_t *data, int capacity, int timeout_ms);

/// A non-blocking, close-on-exec eventfd.
int mcm_eventfd(void);

#ifdef __cplusplus
}
#endif

#endif
