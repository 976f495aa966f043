/* Parsing a Python command line and naming its server; see command.h.
   Keep in step with src/warmstart/command.py (a test compares them). */
#define _GNU_SOURCE
#include "command.h"
#include "fields.h"
#include "privdir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Single-letter interpreter options that take no argument and that a
   forked worker reproduces (they are fixed when the server starts, and
   they are part of the key).  -i, -S, -x, -h, -V and anything unknown
   make the command run directly. */
static const char plain_flags[] = "bBdEIOPqsuvR";

static int
make_absolute(char *out, size_t size, const char *cwd, const char *path)
{
    int n;

    if (path[0] == '/')
        n = snprintf(out, size, "%s", path);
    else if (strcmp(cwd, "/") == 0)
        n = snprintf(out, size, "/%s", path);
    else
        n = snprintf(out, size, "%s/%s", cwd, path);
    return (n < 0 || (size_t)n >= size) ? -1 : 0;
}

/* The file execvp would run for name: the first executable regular file
   on $PATH (empty entries skipped), or name itself if it has a slash. */
static int
find_executable(ws_command *cmd, const char *name)
{
    const char *path, *p, *end;
    char dir[PATH_MAX], cand[PATH_MAX];
    struct stat st;
    size_t n;

    if (strchr(name, '/')) {
        snprintf(cmd->found, sizeof cmd->found, "%s", name);
        return make_absolute(cmd->exe, sizeof cmd->exe, cmd->cwd, name);
    }
    path = getenv("PATH");
    if (path == NULL)
        return -1;
    for (p = path; *p; p = *end ? end + 1 : end) {
        end = strchr(p, ':');
        if (end == NULL)
            end = p + strlen(p);
        n = (size_t)(end - p);
        if (n == 0 || n >= sizeof dir)
            continue;
        memcpy(dir, p, n);
        dir[n] = '\0';
        if (snprintf(cand, sizeof cand, "%s/%s", dir, name) >= (int)sizeof cand)
            continue;
        if (access(cand, X_OK) == 0 && stat(cand, &st) == 0
            && S_ISREG(st.st_mode)) {
            snprintf(cmd->found, sizeof cmd->found, "%s", cand);
            return make_absolute(cmd->exe, sizeof cmd->exe, cmd->cwd, cand);
        }
    }
    return -1;
}

/* Is this the name of a Python interpreter (python, python3, python3.14)? */
static int
is_python_name(const char *path)
{
    const char *base = strrchr(path, '/');

    base = base ? base + 1 : path;
    return strncmp(base, "python", 6) == 0
           && strspn(base + 6, "0123456789.") == strlen(base + 6);
}

/* A program given by its path or by a name on $PATH whose "#!" line names
   a Python interpreter (a console script such as /venv/bin/black): the
   command the kernel runs for it, "interpreter [arg] path args...", in
   *out (malloc'ed, kept for the process's life).  "#!/usr/bin/env NAME"
   runs NAME from $PATH, as env does.  Returns 1 when rewritten, 0 when
   the file is not a "#!" script (an interpreter itself), -1 with *why
   when it is one this client does not serve. */
static int
script_command(const ws_command *cmd, const char *path, char ***out,
               const char **why)
{
    char line[256], *p, *interp, *arg = NULL, **argv;
    ssize_t n;
    int fd, k, m = 0;

    fd = open(cmd->exe, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return 0;                   /* the exec will say why */
    n = read(fd, line, sizeof line - 1);
    close(fd);
    if (n < 2 || line[0] != '#' || line[1] != '!')
        return 0;
    line[n] = '\0';
    p = strchr(line, '\n');
    if (p == NULL) {
        *why = "#! line too long";
        return -1;
    }
    *p = '\0';
    /* As the kernel splits it: the interpreter, then at most one
       argument, the rest of the line with its ends trimmed. */
    for (p = line + 2; *p == ' ' || *p == '\t'; p++)
        ;
    interp = p;
    p += strcspn(p, " \t");
    if (*p) {
        *p++ = '\0';
        p += strspn(p, " \t");
        for (k = (int)strlen(p); k > 0 && (p[k - 1] == ' ' || p[k - 1] == '\t'
                                           || p[k - 1] == '\r'); k--)
            p[k - 1] = '\0';
        if (*p)
            arg = p;
    }
    if (strcmp(interp, "/usr/bin/env") == 0 || strcmp(interp, "/bin/env") == 0) {
        if (arg == NULL || arg[0] == '-' || strpbrk(arg, " \t=")) {
            *why = "a #!/usr/bin/env line with options";
            return -1;
        }
        interp = arg;               /* env runs it from $PATH */
        arg = NULL;
    }
    if (!is_python_name(interp)) {
        *why = "a #! script of another interpreter";
        return -1;
    }
    argv = malloc((size_t)(cmd->argc + 3) * sizeof *argv);
    if (argv == NULL) {
        *why = "out of memory";
        return -1;
    }
    argv[m++] = strdup(interp);
    if (arg)
        argv[m++] = strdup(arg);
    argv[m++] = strdup(path);
    for (k = 1; k < cmd->argc; k++)
        argv[m++] = cmd->argv[k];
    argv[m] = NULL;
    for (k = 0; k < m; k++)
        if (argv[k] == NULL) {
            *why = "out of memory";
            return -1;
        }
    *out = argv;
    return m;
}

int
ws_command_parse(ws_command *cmd, int argc, char **argv, const char **why)
{
    char **script_argv;
    int i;

    memset(cmd, 0, sizeof *cmd);
    cmd->argv = argv;
    cmd->argc = argc;
    if (getcwd(cmd->cwd, sizeof cmd->cwd) == NULL) {
        *why = "no current directory";
        return -1;
    }
    if (getenv("PYTHONPROFILEIMPORTTIME")
        && *getenv("PYTHONPROFILEIMPORTTIME")) {
        *why = "PYTHONPROFILEIMPORTTIME is run directly";
        return -1;
    }
    if (find_executable(cmd, argv[0]) < 0) {
        *why = "interpreter not found on PATH";
        return -1;
    }
    /* A name like python3 is the interpreter (a pyenv shim is a "#!"
       script too, and is run as before): only other programs are read. */
    i = is_python_name(argv[0]) ? 0
        : script_command(cmd, cmd->found, &script_argv, why);
    if (i < 0)
        return -1;
    if (i > 0) {
        /* The interpreter is not looked at for a "#!" of its own. */
        cmd->argv = argv = script_argv;
        cmd->argc = argc = i;
        if (find_executable(cmd, argv[0]) < 0) {
            *why = "the #! line's interpreter not found";
            return -1;
        }
    }
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        size_t j;

        if (strcmp(a, "--check-hash-based-pycs") == 0) {
            if (++i >= argc)
                break;
            continue;
        }
        if (a[0] != '-' || strcmp(a, "-") == 0 || strcmp(a, "--") == 0) {
            if (a[0] == '-') {
                *why = strcmp(a, "-") == 0 ? "program read from stdin"
                                           : "'--' before the script";
                return -1;
            }
            cmd->kind = 's';
            cmd->value = a;
            cmd->prog = i;
            if (realpath(a, cmd->script) == NULL) {
                *why = "script not found";
                return -1;
            }
            return 0;
        }
        if (a[1] == '-') {
            *why = "long option";
            return -1;
        }
        for (j = 1; a[j]; j++) {
            char c = a[j];

            if (c == 'c' || c == 'm' || c == 'W' || c == 'X') {
                const char *arg = a + j + 1;

                if (*arg == '\0') {
                    if (++i >= argc) {
                        *why = "option without its argument";
                        return -1;
                    }
                    arg = argv[i];
                }
                if (c == 'X' && strncmp(arg, "importtime", 10) == 0) {
                    /* Its report is of the imports, which the server did. */
                    *why = "-X importtime is run directly";
                    return -1;
                }
                if (c == 'c' || c == 'm') {
                    cmd->kind = c;
                    cmd->value = arg;
                    cmd->prog = i;
                    return 0;
                }
                break;
            }
            if (strchr(plain_flags, c) == NULL) {
                *why = "interpreter option run directly (-i, -S, -x, ...)";
                return -1;
            }
        }
    }
    *why = "no program (interactive interpreter)";
    return -1;
}

/* Environment variables that change how Python starts or what modules
   compute at import time.  WARMSTART_SERVE and WARMSTART_PRELOAD are the
   client's messages to a recording run and WARMSTART_VERBOSE only adds
   diagnostics: not part of the identity. */
static int
is_key_variable(const char *entry)
{
    static const char *const prefixes[] = {"PYTHON", "LC_", "LD_",
                                           "WARMSTART_", NULL};
    static const char *const names[] = {"LANG", "LANGUAGE", "PATH", "TZ",
                                        "TERM", "HOME", "VIRTUAL_ENV",
                                        "TMPDIR", "TEMP", "TMP", NULL};
    static const char *const not_key[] = {"WARMSTART_SERVE",
                                          "WARMSTART_PRELOAD",
                                          "WARMSTART_VERBOSE", NULL};
    const char *eq = strchr(entry, '=');
    size_t n;
    int k;

    if (eq == NULL)
        return 0;
    n = (size_t)(eq - entry);
    for (k = 0; not_key[k]; k++)
        if (strlen(not_key[k]) == n && strncmp(entry, not_key[k], n) == 0)
            return 0;
    for (k = 0; prefixes[k]; k++)
        if (strncmp(entry, prefixes[k], strlen(prefixes[k])) == 0)
            return 1;
    for (k = 0; names[k]; k++)
        if (strlen(names[k]) == n && strncmp(entry, names[k], n) == 0)
            return 1;
    return 0;
}

static int
compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char *
ws_command_key_material(const ws_command *cmd, char **envp, size_t *len)
{
    ws_fields b = {NULL, 0, 0};
    struct stat st;
    char id[96], uid[24], kind[2] = {cmd->kind, '\0'};
    char **vars = NULL;
    size_t nvars = 0, k;
    int i, err = 0;

    if (stat(cmd->exe, &st) < 0)
        memset(&st, 0, sizeof st);
    snprintf(id, sizeof id, "%llu:%llu:%lld:%lld",
             (unsigned long long)st.st_dev, (unsigned long long)st.st_ino,
             (long long)st.st_size,
             (long long)st.st_mtim.tv_sec * 1000000000LL
             + st.st_mtim.tv_nsec);
    snprintf(uid, sizeof uid, "%lu", (unsigned long)getuid());
    err |= ws_fields_put(&b, "warmstart-exec 1", "");
    err |= ws_fields_put(&b, "uid=", uid);
    err |= ws_fields_put(&b, "exe=", cmd->exe);
    err |= ws_fields_put(&b, "exe-id=", id);
    for (i = 1; i <= cmd->prog; i++)
        err |= ws_fields_put(&b, "arg=", cmd->argv[i]);
    err |= ws_fields_put(&b, "kind=", kind);
    if (cmd->kind == 's')
        err |= ws_fields_put(&b, "script=", cmd->script);
    else
        err |= ws_fields_put(&b, "cwd=", cmd->cwd);
    {
        /* Whether 0-2 are terminals: modules ask at import (colours,
           prompts), and a server preloads with terminals where its
           launches have them. */
        char tty[4] = {isatty(0) ? '1' : '0', isatty(1) ? '1' : '0',
                       isatty(2) ? '1' : '0', '\0'};

        err |= ws_fields_put(&b, "tty=", tty);
    }
    for (k = 0; envp[k]; k++)
        nvars += is_key_variable(envp[k]);
    vars = malloc((nvars + 1) * sizeof *vars);
    if (vars == NULL)
        goto fail;
    nvars = 0;
    for (k = 0; envp[k]; k++)
        if (is_key_variable(envp[k]))
            vars[nvars++] = envp[k];
    qsort(vars, nvars, sizeof *vars, compare_strings);
    for (k = 0; k < nvars; k++)
        err |= ws_fields_put(&b, "env=", vars[k]);
    free(vars);
    if (err)
        goto fail;
    *len = b.len;
    return b.data;

fail:
    free(b.data);
    return NULL;
}

int
ws_server_dir(char *out, size_t size, const char **why)
{
    const char *d = getenv("WARMSTART_SERVER_DIR");
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    const char *first_why = NULL;
    char cand[2][PATH_MAX];
    int n = 0, k, fd;

    if (d && *d) {
        snprintf(cand[n++], PATH_MAX, "%s", d);
    }
    else {
        if (xdg && *xdg == '/'
            && snprintf(cand[n], PATH_MAX, "%s/warmstart", xdg) < PATH_MAX)
            n++;
        snprintf(cand[n++], PATH_MAX, "/tmp/warmstart-%lu",
                 (unsigned long)getuid());
    }
    for (k = 0; k < n; k++) {
        fd = ws_private_dir_open(cand[k], 1, out, size, why);
        if (fd >= 0)
            return fd;
        if (first_why == NULL) {
            /* Kept: the first candidate is the one the user expects. */
            static char saved[PATH_MAX + 96];

            snprintf(saved, sizeof saved, "%s", *why);
            first_why = saved;
        }
    }
    *why = first_why;
    return -1;
}
