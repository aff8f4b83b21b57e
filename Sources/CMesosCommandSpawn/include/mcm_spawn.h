#ifndef MCM_SPAWN_H
#define MCM_SPAWN_H

#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Who a command or worker runs as (`<event>_user`): applied in the child just before exec(2), after its cgroup
/// and fds are set up. Defined where it is implemented; NULL everywhere means "the agent's own user".
struct mcm_credentials;

/// How to start a command or a worker (mcm_spawn_command, mcm_spawn_worker).
typedef struct {
    const char *path;
    /// NULL-terminated.
    char *const *argv;
    /// NAME=value entries added to the process's environment, replacing same-named ones; NULL-terminated, or NULL.
    char *const *extra_env;
    /// Its fds 0, 1 and 2; it gets no other fd of the agent.
    int stdin_fd;
    int stdout_fd;
    int stderr_fd;
    /// A cgroup v2 directory (O_DIRECTORY fd) the child starts in, or -1: it stays in the caller's cgroup.
    /// clone3(CLONE_INTO_CGROUP) puts it there as it is created (Linux 5.7); where the kernel has no clone3 or no
    /// CLONE_INTO_CGROUP, the child writes itself into the cgroup's cgroup.procs before exec — never after.
    int cgroup_fd;
    /// NULL: the agent's user. Applied by the child last before exec (see apply_credentials in spawn.c).
    const struct mcm_credentials *credentials;
} mcm_spawn_request;

/// Starts an exec command as `request` says, in a process group of its own, every signal unblocked and at its
/// default disposition. No shell is involved. vfork-fast (clone3 CLONE_VM | CLONE_VFORK): blocks the caller until
/// the child has called exec(2). Returns 0 and sets `*pid` and `*pidfd` (-1 where the kernel has no pidfds), or
/// an errno value (ENOENT, EACCES, ENOEXEC, ...) when the command cannot start.
int mcm_spawn_command(const mcm_spawn_request *request, pid_t *pid, int *pidfd);

/// mcm_spawn_command without a cgroup, credentials or pidfd (kept for tests that start a bare child).
int mcm_spawn(const char *path, char *const argv[], char *const extra_env[], int stdin_fd, int stdout_fd,
              int stderr_fd, pid_t *pid);

/// As mcm_spawn_command, for a long-lived worker: the child also gets SIGTERM when the thread that started it
/// dies (PR_SET_PDEATHSIG) — when the agent dies without destroying the module, the kernel tells the worker to
/// end (besides the end of its stdin); what ignores it is killed at the module's next start. Call it from a
/// thread that lives as long as the process. Fork-like (clone3 into the cgroup, or fork): the child makes only
/// async-signal-safe calls before exec. Returns at once: `*report_fd` (non-blocking) reads end of file once
/// exec(2) succeeded, or its errno (4 bytes) if it failed — an exec stuck in the kernel does not block the caller.
int mcm_spawn_worker(const mcm_spawn_request *request, pid_t *pid, int *report_fd);

/// Whether clone3(CLONE_INTO_CGROUP) has served (1), failed over to placing the child before exec (0), or not
/// been tried yet (-1) in this process.
int mcm_clone_into_cgroup_status(void);

/// pidfd_open(2): a file descriptor that becomes readable when `pid` exits. -1 with errno on failure
/// (ENOSYS before Linux 5.3).
int mcm_pidfd_open(pid_t pid);

/// pidfd_send_signal(2): sends `sig` to the very process `pidfd` was opened on — never to a process that reused
/// its pid. -1 with errno on failure (ENOSYS before Linux 5.1; ESRCH once it has exited).
int mcm_pidfd_send_signal(int pidfd, int sig);

/// Whether `pid` (our child) has exited, without reaping it: 1 exited, 0 still running, -1 with errno (ECHILD:
/// it is not, or no longer, our child — e.g. SIGCHLD is ignored and the kernel reaped it).
/// Leaving the zombie in place keeps its pid, and so its process group id, from being reused while we may
/// still signal that group.
int mcm_child_exited(pid_t pid);

/// How `pid` (our child) ended, without reaping it: 1 and `*exited` 1 with its exit code in `*value`, or
/// `*exited` 0 with the signal that killed it; 0 while it runs; -1 with errno (ECHILD: the status is lost).
int mcm_peek_exit(pid_t pid, int *exited, int *value);

/// Reaps `pid` (blocking) and returns its raw wait status in `*status`; 0, or -1 with errno (ECHILD when the
/// exit status is lost: SIGCHLD ignored in this process, or somebody else reaped it).
int mcm_reap(pid_t pid, int *status);

/// As mcm_reap, also giving the user + system CPU time (µs) of `pid` and of the children it waited for
/// (wait4's rusage).
int mcm_reap_usage(pid_t pid, int *status, uint64_t *cpu_usec);

/// Decoding of a raw wait status (the W* macros are not visible to Swift).
int mcm_wifexited(int status);
int mcm_wexitstatus(int status);
int mcm_wifsignaled(int status);
int mcm_wtermsig(int status);

/// pipe2(fds, O_CLOEXEC), with O_NONBLOCK on the end this process keeps: the read end when `our_end` is 0,
/// the write end when it is 1. The command's end stays blocking.
int mcm_pipe(int fds[2], int our_end);

/// socketpair(AF_UNIX, SOCK_STREAM) for a worker's stdin: fds[0] is the worker's end, fds[1] ours (non-blocking).
/// A socket, not a pipe, so that writing to a worker that died gives EPIPE from any thread, never a SIGPIPE
/// (see mcm_send).
int mcm_socketpair(int fds[2]);

/// send(fd, bytes, length, MSG_NOSIGNAL | MSG_DONTWAIT), retrying EINTR.
ssize_t mcm_send(int fd, const void *bytes, size_t length);

/// A non-blocking CLOCK_MONOTONIC timerfd, and arming it at an absolute time (0 disarms).
int mcm_timerfd(void);
int mcm_timerfd_arm(int fd, uint64_t deadline_ns);

/// openat(dir_fd, name, O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW | O_CLOEXEC, 0600): a new private file.
int mcm_create_file_at(int dir_fd, const char *name);

/// openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC): never blocks, even on a FIFO.
int mcm_open_read_at(int dir_fd, const char *name);

/// open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC).
int mcm_open_directory(const char *path);

/// epoll, with the 64-bit user data as the only payload (struct epoll_event is packed on x86-64).
int mcm_epoll_create(void);
/// Registers `fd` for reading (`writable` 0) or writing (`writable` 1).
int mcm_epoll_add(int epoll_fd, int fd, uint64_t data, int writable);
int mcm_epoll_remove(int epoll_fd, int fd);
/// Waits up to `timeout_ms` (-1: forever); fills `data` with up to `capacity` ready entries' user data.
int mcm_epoll_wait(int epoll_fd, uint64_t *data, int capacity, int timeout_ms);

/// A non-blocking, close-on-exec eventfd.
int mcm_eventfd(void);

/// Whether `path` is the root or a directory of a cgroup v2 hierarchy (statfs magic CGROUP2_SUPER_MAGIC): 1 or 0;
/// -1 with errno when it cannot be told.
int mcm_is_cgroup2(const char *path);

/// A non-blocking, close-on-exec inotify fd; a watch for IN_MODIFY of `path` (its descriptor, or -1 with errno);
/// removing one.
int mcm_inotify_create(void);
int mcm_inotify_watch_modify(int fd, const char *path);
int mcm_inotify_unwatch(int fd, int wd);
/// Reads pending inotify events: up to `capacity` watch descriptors into `wds` (repeats possible). Returns how
/// many, 0 when none are pending, -1 with errno.
int mcm_inotify_read(int fd, int *wds, int capacity);

/// Names the calling thread (15 characters at most), as `ps -T` and /proc/<pid>/task/*/comm show it.
void mcm_name_thread(const char *name);

/* A flag of the calling thread (thread-local): set while an event's task is created to start on this thread
   (EventExecution), taken — read and cleared — by the event loop's executor when it is handed the task's first job. */
void mcm_set_start_here(int value);
int mcm_take_start_here(void);
/* Another flag of the calling thread: set while it runs a job of the event loop's executor in the loop's stead. */
void mcm_set_running_loop_job(int value);
int mcm_running_loop_job(void);

#ifdef __cplusplus
}
#endif

#endif
