#ifndef MCM_CREDENTIALS_H
#define MCM_CREDENTIALS_H

#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/// The user a command runs as (`<event>_user`): its uid, primary gid and supplementary groups, as the user
/// database gave them at load.
struct mcm_credentials {
    uid_t uid;
    gid_t gid;
    /// `groups[0 ..< group_count]`: every group of the user, the primary one included (getgrouplist).
    const gid_t *groups;
    size_t group_count;
    /// 1: become `uid`, `gid` and `groups` (the module runs as root); 0: keep the ids (the module's own user,
    /// which it already runs as), only set no_new_privs.
    int change_ids;
};

/// In a new child, before exec: setgroups, setresgid, setresuid — in that order, real, effective and saved ids
/// alike, through raw system calls (async-signal-safe, and they change the calling thread only, which is what a
/// child of a multi-threaded process must do) — then PR_SET_NO_NEW_PRIVS, and checks the result: every uid and
/// gid is the user's, no_new_privs is set, and uid 0 cannot be regained. Returns 0, or an errno value (EPERM when
/// a check fails). Call it only in a child that will exec or _exit.
int mcm_apply_credentials(const struct mcm_credentials *credentials);

/// Whether the user of `credentials` can access `path` with `mode` (R_OK, W_OK, X_OK, as access(2)), checked
/// by the kernel itself — modes, ACLs, every directory above — in a short-lived child that becomes the user.
/// Returns 0 if it can, the errno the user would get (EACCES, ENOENT, ...) if not, or -1 with errno if the
/// check could not be made (no fork, or the child's status is lost because SIGCHLD is ignored).
int mcm_access_as(const struct mcm_credentials *credentials, const char *path, int mode);

#ifdef __cplusplus
}
#endif

#endif
