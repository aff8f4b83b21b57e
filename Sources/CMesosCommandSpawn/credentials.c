#define _GNU_SOURCE
#include "mcm_credentials.h"

#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Raw system calls, not glibc's wrappers: glibc's setuid family signals every thread of the process to change
   theirs too (setxid), which a child of a multi-threaded process — or one sharing its memory (CLONE_VM) — must
   not attempt; the kernel changes the calling thread's credentials, the only thread of a new child. */
int mcm_apply_credentials(const struct mcm_credentials *credentials) {
    if (credentials->change_ids) {
        if (syscall(SYS_setgroups, credentials->group_count, credentials->groups) != 0) return errno;
        if (syscall(SYS_setresgid, credentials->gid, credentials->gid, credentials->gid) != 0) return errno;
        if (syscall(SYS_setresuid, credentials->uid, credentials->uid, credentials->uid) != 0) return errno;
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return errno;

    /* What the kernel now says, not what we asked for. */
    uid_t ruid, euid, suid;
    gid_t rgid, egid, sgid;
    if (syscall(SYS_getresuid, &ruid, &euid, &suid) != 0 || syscall(SYS_getresgid, &rgid, &egid, &sgid) != 0) {
        return errno;
    }
    if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1) return EPERM;
    if (!credentials->change_ids) return 0;
    if (ruid != credentials->uid || euid != credentials->uid || suid != credentials->uid) return EPERM;
    if (rgid != credentials->gid || egid != credentials->gid || sgid != credentials->gid) return EPERM;
    if (syscall(SYS_getgroups, 0, NULL) != (long)credentials->group_count) return EPERM;
    /* A user other than root must not be able to become root again (no saved uid 0, no capability kept). */
    if (credentials->uid != 0 && syscall(SYS_setresuid, (uid_t)-1, (uid_t)0, (uid_t)-1) == 0) return EPERM;
    return 0;
}

int mcm_access_as(const struct mcm_credentials *credentials, const char *path, int mode) {
    /* The child never execs: it must not run one of the process's signal handlers; it keeps every signal
       blocked until it exits. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t child = fork();
    if (child == 0) {
        if (mcm_apply_credentials(credentials) != 0) _exit(255);
        _exit(access(path, mode) == 0 ? 0 : (errno > 0 && errno < 255 ? errno : EACCES));
    }
    int fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (child < 0) {
        errno = fork_errno;
        return -1;
    }
    int status = 0;
    pid_t reaped;
    do {
        reaped = waitpid(child, &status, 0);
    } while (reaped == -1 && errno == EINTR);
    if (reaped != child) return -1;
    if (!WIFEXITED(status) || WEXITSTATUS(status) == 255) {
        errno = EPERM;
        return -1;
    }
    return WEXITSTATUS(status);
}
