/* A lower bound for qus's work: the system calls of the checks qus makes
 * on a cold `qus register`, made with no logic between them. Reads the
 * same register lines as registrar.c and, for every interpreter they
 * name, does what qus does to it: the safety walk's lstat (parent
 * directories once), one open, one 4 KiB read and a close. Around that
 * the rest of qus's cold start: look for the configuration directories,
 * take the state-dir lock, look at binfmt_misc (mounted? enabled? which
 * entries?), read the host's own ELF header, write the lines through one
 * descriptor, and replace the ownership records atomically (fsync +
 * rename). The native question (two memfds and an exec) is left out, so
 * this is below what any implementation of the same checks can reach.
 *
 *   checks_floor REGISTER LINES-FILE STATE-DIR
 *
 * Built by the benchmark with `cc -O2 -static`; never shipped. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

static void read_small(const char *path)
{
    char buf[64];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        while (read(fd, buf, sizeof buf) > 0)
            ;
        close(fd);
    }
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    const char *reg = argv[1];
    static char lines[64][4096];
    int n = 0;
    FILE *in = fopen(argv[2], "r");
    if (!in)
        return 1;
    while (n < 64 && fgets(lines[n], sizeof lines[n], in)) {
        size_t len = strlen(lines[n]);
        if (len > 0 && lines[n][len - 1] == '\n')
            lines[n][--len] = '\0';
        if (len > 0 && lines[n][0] == ':')
            n++;
    }
    fclose(in);

    /* Configuration: four drop-in directories, none there. */
    const char *conf[] = {"/usr/lib/qus.d", "/run/qus.d", "/etc/qus.d", "/root/.config/qus.d"};
    for (int i = 0; i < 4; i++) {
        int fd = open(conf[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0)
            close(fd);
    }
    read_small("/proc/self/uid_map");
    read_small("/proc/sys/kernel/arch");

    /* State dir (made if missing) and its lock. */
    struct stat st;
    char path[4096];
    if (lstat(argv[3], &st) != 0)
        mkdir(argv[3], 0700);
    snprintf(path, sizeof path, "%s/lock", argv[3]);
    int lock = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (lock >= 0)
        flock(lock, LOCK_EX | LOCK_NB);
    snprintf(path, sizeof path, "%s/owned.json", argv[3]);
    int old = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (old >= 0)
        close(old);

    /* binfmt_misc: mounted, enabled, its entries. */
    char root[4096];
    snprintf(root, sizeof root, "%s", reg);
    char *slash = strrchr(root, '/');
    if (slash)
        *slash = '\0';
    struct statfs sf;
    statfs(root, &sf);
    snprintf(path, sizeof path, "%s/status", root);
    stat(path, &st);
    read_small(path);
    DIR *d = opendir(root);
    if (d) {
        while (readdir(d))
            ;
        closedir(d);
    }

    /* Every interpreter: the safety walk and one look at its head. */
    char head[4096];
    char parent[4096] = "";
    for (int i = 0; i < n; i++) {
        char copy[4096];
        snprintf(copy, sizeof copy, "%s", lines[i]);
        char *field = copy, *interp = NULL;
        for (int f = 0; f < 7 && field; f++) {
            char *next = strchr(field, ':');
            if (next)
                *next++ = '\0';
            if (f == 6)
                interp = field;
            field = next;
        }
        if (!interp || interp[0] != '/')
            continue;
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", interp);
        char *end = strrchr(dir, '/');
        *end = '\0';
        if (strcmp(dir, parent) != 0) {
            /* Each directory on the way, once per pass. */
            snprintf(parent, sizeof parent, "%s", dir);
            lstat("/", &st);
            for (char *p = dir + 1; *p; p++) {
                if (*p == '/') {
                    *p = '\0';
                    lstat(dir, &st);
                    *p = '/';
                }
            }
            lstat(dir, &st);
        }
        lstat(interp, &st);
        int fd = open(interp, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            if (read(fd, head, sizeof head) < 0)
                return 1;
            close(fd);
        }
    }
    /* The host's own header (no entry may catch it). */
    int self = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (self >= 0) {
        if (read(self, head, sizeof head) < 0)
            return 1;
        close(self);
    }

    /* The registrations, through one descriptor. */
    int fd = open(reg, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return 1;
    int status = 0;
    for (int i = 0; i < n; i++)
        if (write(fd, lines[i], strlen(lines[i])) != (ssize_t)strlen(lines[i]))
            status = 1;
    close(fd);

    /* The records: the lines again, replaced atomically. */
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s/.owned.json.tmp", argv[3]);
    snprintf(path, sizeof path, "%s/owned.json", argv[3]);
    int rec = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (rec < 0)
        return 1;
    for (int i = 0; i < n; i++)
        if (write(rec, lines[i], strlen(lines[i])) < 0)
            status = 1;
    fsync(rec);
    rename(tmp, path);
    close(rec);
    if (lock >= 0)
        close(lock);
    return status;
}
