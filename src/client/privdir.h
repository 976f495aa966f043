/* Directories only this user can change, used through a descriptor.

   The client reads back what is in the server directory (the socket it
   hands its fds and environment to, the lock and refusal marks), so the
   directory must be one no other user can plant files in or swap: its
   path is walked from "/" one component at a time without following
   symlinks, every component owned by root or by us and writable by no
   one else unless sticky (as /tmp), and the directory itself ours with
   no permission for group or others.  After that, everything is relative
   to the descriptor.  src/warmstart/privdir.py is the same walk. */
#ifndef WS_PRIVDIR_H
#define WS_PRIVDIR_H

#include <stddef.h>

/* Open path (absolute; symlinks in it are resolved first, and a missing
   last component is created 0700 when create is set) as a private
   directory.  Its resolved path goes to out.  Returns the descriptor
   (O_CLOEXEC), or -1 with *why saying which component failed and how. */
int ws_private_dir_open(const char *path, int create, char *out,
                        size_t size, const char **why);

/* The path under which the kernel resolves name inside the directory
   open as dirfd, for calls that take no descriptor (connect, bind). */
int ws_dir_address(char *out, size_t size, int dirfd, const char *name);

#endif /* WS_PRIVDIR_H */
