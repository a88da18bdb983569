/* http_static.c - static files under static_dir.
 *
 * The lookup works on the decoded path segments (so "%2F" inside a segment is
 * refused, not taken for a separator) and confines the result to the real
 * path of static_dir (symbolic links leading out are refused).
 *
 * Not mg_send_mime_file2 (which would add Range, ETag and 304): it answers
 * its own errors in HTML rather than the JSON errors of docs/protocol.md,
 * does not report the bytes it wrote (the stats and the access log count
 * them), picks "file.gz" when the client accepts gzip, and writes its own
 * head, which the CORS and middleware headers of the response would have to
 * be copied into. Static files stay 200-or-404, whole, as before.
 */
#include <civetweb.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>
#include "clock.h"
#include "component.h"
#include "json.h"
#include "daebus/log.h"
#include "http_parse.h"
#include "http_private.h"

/* ---- static files ---- */

/* Resolves the static file for the request path. Returns: 1 and a malloc'd
 * real path in *out, 0 when the path is not under the prefix or no file
 * exists, -1 for an escape attempt (answered 404 too). */
int daebus__http_static_lookup(daebus_http *h, const char *const *segs, const size_t *lens,
                               int nsegs, char **out)
{
    *out = NULL;
    if (!h->static_root)
        return 0;
    /* Skip the prefix's segments. */
    const char *pre = h->static_prefix + 1;
    int i = 0;
    while (*pre) {
        const char *end = strchr(pre, '/');
        size_t len = end ? (size_t)(end - pre) : strlen(pre);
        if (len) {
            if (i >= nsegs || lens[i] != len || memcmp(segs[i], pre, len) != 0)
                return 0;
            i++;
        }
        if (!end)
            break;
        pre = end + 1;
    }
    size_t need = strlen(h->static_root) + 16 + sizeof "index.html";
    for (int k = i; k < nsegs; k++)
        need += lens[k] + 1;
    char *path = malloc(need);
    if (!path)
        return 0;
    size_t o = (size_t)snprintf(path, need, "%s", h->static_root);
    for (int k = i; k < nsegs; k++) {
        if (memchr(segs[k], '/', lens[k]) || memchr(segs[k], '\\', lens[k]) ||
            (lens[k] && segs[k][0] == '.')) {
            free(path);
            return -1; /* "..", ".", hidden files, encoded slashes */
        }
        path[o++] = '/';
        memcpy(path + o, segs[k], lens[k]);
        o += lens[k];
    }
    path[o] = '\0';
    if (!daebus__http_static_path_safe(path + strlen(h->static_root), false)) {
        free(path);
        return -1;
    }
    if (i == nsegs || lens[nsegs - 1] == 0)
        o += (size_t)snprintf(path + o, need - o, "%sindex.html", path[o - 1] == '/' ? "" : "/");
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        snprintf(path + o, need - o, "/index.html");
    char *real = realpath(path, NULL);
    free(path);
    if (!real)
        return 0;
    size_t rl = strlen(h->static_root);
    if (strncmp(real, h->static_root, rl) != 0 || real[rl] != '/') {
        free(real); /* a symbolic link leading out of the directory */
        return -1;
    }
    if (stat(real, &st) != 0 || !S_ISREG(st.st_mode)) {
        free(real);
        return 0;
    }
    *out = real;
    return 1;
}

void daebus__http_send_file(daebus_http_response *res, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0)
            close(fd);
        daebus_http_send_error(res, 404, "Not Found");
        return;
    }
    /* CivetWeb worker stacks are small (about 100 KiB): buffer on the heap. */
    enum { CHUNK = 65536 };
    char *buf = malloc(CHUNK);
    if (!buf) {
        close(fd);
        daebus_http_send_error(res, 500, "Internal server error");
        return;
    }
    if (daebus__http_send_head(res, 200, daebus__http_mime_type(path), (long long)st.st_size,
                               false) == 0 &&
        !res->head_only) {
        off_t left = st.st_size;
        while (left > 0) {
            ssize_t n = read(fd, buf, CHUNK);
            if (n <= 0 || daebus__http_write_all(res, buf, (size_t)n) != 0)
                break;
            left -= n;
        }
    }
    free(buf);
    close(fd);
}
