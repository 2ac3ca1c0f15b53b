/* A temporary directory per test, for tests that write files (malformed
 * checkpoints, images, vocabularies). A suite uses it as
 *   static void setup(void) { tmp_init("df_st"); }
 *   TestSuite(name, .init = setup, .fini = tmp_teardown);
 * and builds paths with tmp_path("file"). */
#ifndef DF_TMPDIR_H
#define DF_TMPDIR_H

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "df.h"

static char tmp_dir[256];

static inline void tmp_init(const char *prefix)
{
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/%s_XXXXXX", prefix);
    cr_assert_not_null(mkdtemp(tmp_dir), "mkdtemp failed");
    df_clear_error();
}

/* Removes the directory and its files; also lifts any injected allocation failure. */
static inline void tmp_teardown(void)
{
    df_alloc_fail_after(0);
    DIR *d = opendir(tmp_dir);
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", tmp_dir, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(tmp_dir);
}

/* tmp_dir/name; the last four results stay valid. */
static inline const char *tmp_path(const char *name)
{
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", tmp_dir, name);
    return p[k];
}

static inline int count_files(void)
{
    DIR *d = opendir(tmp_dir);
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static inline const char *write_bytes(const char *name, const void *bytes, size_t n)
{
    const char *path = tmp_path(name);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot create %s", path);
    if (n) cr_assert_eq(fwrite(bytes, 1, n, f), n);
    fclose(f);
    return path;
}

#endif
