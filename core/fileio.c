#include "fileio.h"

#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int qh_read_file(const char *path, size_t max_bytes, char **out, size_t *out_len)
{
    *out = NULL;
    if (out_len) *out_len = 0;
    /* O_NONBLOCK so that a FIFO in place of the file is refused below instead of blocking
     * open() forever; cleared again before reading. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return qh_fail_errno(QH_EINPUT, "%s: cannot open", path);
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return qh_fail(QH_EINPUT, "%s: not a regular file", path);
    }
    int fl = fcntl(fd, F_GETFL);
    FILE *fp = fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0 ? NULL : fdopen(fd, "rb");
    if (!fp) {
        int rc = qh_fail_errno(QH_ESYS, "%s: cannot open", path);
        close(fd);
        return rc;
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fclose(fp);
        return qh_fail(QH_EINPUT, "%s: file is %lld bytes, more than the %zu allowed", path,
                       (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(fp);
        return qh_fail(QH_ESYS, "%s: out of memory reading %zu bytes", path, n);
    }
    if (n && fread(buf, 1, n, fp) != n) {
        free(buf);
        fclose(fp);
        return qh_fail_errno(QH_EINPUT, "%s: read failed", path);
    }
    fclose(fp);
    buf[n] = '\0';
    *out = buf;
    if (out_len) *out_len = n;
    return QH_OK;
}

int qh_tmp_name(const char *path, char *tmp, size_t tmp_size)
{
    int n = snprintf(tmp, tmp_size, "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= tmp_size) return qh_fail(QH_EINPUT, "%s: path too long", path);
    return QH_OK;
}

static int fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* fsync the directory holding path so the rename itself survives a power cut. */
static void fsync_parent(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
    (void)fsync_path(dir);
}

int qh_commit_tmp(const char *tmp, const char *path)
{
    if (fsync_path(tmp) != 0) {
        int rc = qh_fail_errno(QH_ESYS, "%s: cannot sync", tmp);
        unlink(tmp);
        return rc;
    }
    if (rename(tmp, path) != 0) {
        int rc = qh_fail_errno(QH_ESYS, "%s: cannot rename into place", path);
        unlink(tmp);
        return rc;
    }
    fsync_parent(path);
    return QH_OK;
}

int qh_atomic_begin(qh_atomic_file *af, const char *path)
{
    memset(af, 0, sizeof *af);
    if (strlen(path) >= sizeof af->path) return qh_fail(QH_EINPUT, "%s: path too long", path);
    snprintf(af->path, sizeof af->path, "%s", path);
    if (qh_tmp_name(path, af->tmp_path, sizeof af->tmp_path)) return QH_EINPUT;
    af->fp = fopen(af->tmp_path, "wb");
    if (!af->fp) return qh_fail_errno(QH_EINPUT, "%s: cannot write", af->tmp_path);
    return QH_OK;
}

int qh_atomic_commit(qh_atomic_file *af)
{
    if (!af->fp) return qh_fail(QH_ESYS, "%s: not open", af->path);
    int bad = ferror(af->fp);
    if (fflush(af->fp) != 0) bad = 1;
    if (!bad && fsync(fileno(af->fp)) != 0) bad = 1;
    int saved = errno;
    if (fclose(af->fp) != 0) bad = 1;
    af->fp = NULL;
    if (bad) {
        unlink(af->tmp_path);
        errno = saved ? saved : EIO;
        return qh_fail_errno(QH_ESYS, "%s: write failed", af->path);
    }
    if (rename(af->tmp_path, af->path) != 0) {
        int rc = qh_fail_errno(QH_ESYS, "%s: cannot rename into place", af->path);
        unlink(af->tmp_path);
        return rc;
    }
    fsync_parent(af->path);
    return QH_OK;
}

void qh_atomic_abort(qh_atomic_file *af)
{
    if (af->fp) {
        fclose(af->fp);
        af->fp = NULL;
    }
    if (af->tmp_path[0]) unlink(af->tmp_path);
    af->tmp_path[0] = '\0';
}

int qh_path_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

int qh_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int qh_mkdirs(const char *path)
{
    char buf[4096];
    if (strlen(path) >= sizeof buf) return qh_fail(QH_EINPUT, "%s: path too long", path);
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return qh_fail_errno(QH_EINPUT, "%s: cannot create directory", buf);
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return qh_fail_errno(QH_EINPUT, "%s: cannot create directory", buf);
    if (!qh_is_dir(buf)) return qh_fail(QH_EINPUT, "%s: exists and is not a directory", buf);
    return QH_OK;
}
