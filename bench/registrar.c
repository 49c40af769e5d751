/* The floor for the benchmark: the least a registrar can do. Reads
 * binfmt_misc register lines (one per line, as `qus export --format
 * binfmt.d` writes them), opens REGISTER once and writes each line with one
 * write(2). No checks, no state, no output.
 *
 *   registrar REGISTER LINES-FILE
 *
 * Built by the benchmark with `cc -O2 -static`; never shipped. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    FILE *in = fopen(argv[2], "r");
    if (!in)
        return 1;
    int fd = open(argv[1], O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return 1;
    char line[4096];
    int status = 0;
    while (fgets(line, sizeof line, in)) {
        size_t n = strlen(line);
        if (n > 0 && line[n - 1] == '\n')
            line[--n] = '\0';
        if (n == 0 || line[0] != ':')
            continue;
        if (write(fd, line, n) != (ssize_t)n)
            status = 1;
    }
    close(fd);
    fclose(in);
    return status;
}
