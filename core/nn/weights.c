#include "weights.h"

#include "../backend.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct alias {
    char *alias, *real;
} alias;

struct df_weights {
    char *path;
    int n_files;
    df_safetensors **files;
    char *config;
    alias *aliases; /* sorted by alias when `sorted` */
    int n_aliases, cap_aliases, sorted;
};

static int cmp_alias(const void *a, const void *b) { return strcmp(((const alias *)a)->alias, ((const alias *)b)->alias); }

int df_weights_add_alias(df_weights *w, const char *a, const char *real)
{
    if (w->n_aliases == w->cap_aliases) {
        int cap = w->cap_aliases ? 2 * w->cap_aliases : 256;
        alias *n = df_realloc(w->aliases, (size_t)cap * sizeof *n);
        if (!n) return DF_ENOMEM;
        w->aliases = n;
        w->cap_aliases = cap;
    }
    alias *e = &w->aliases[w->n_aliases];
    e->alias = df_strdup(a);
    e->real = e->alias ? df_strdup(real) : NULL;
    if (!e->real) {
        df_free(e->alias);
        return DF_ENOMEM;
    }
    w->n_aliases++;
    w->sorted = 0;
    return DF_OK;
}

/* The stored name behind `name` (itself when it is no alias). */
static const char *resolve(const df_weights *w, const char *name)
{
    if (!w->n_aliases) return name;
    if (!w->sorted) { /* sorting is not a visible change: the set is the same */
        df_weights *mw = (df_weights *)w;
        qsort(mw->aliases, (size_t)mw->n_aliases, sizeof *mw->aliases, cmp_alias);
        mw->sorted = 1;
    }
    alias key = {(char *)name, NULL};
    const alias *hit = bsearch(&key, w->aliases, (size_t)w->n_aliases, sizeof key, cmp_alias);
    return hit ? hit->real : name;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

char *df_read_text_file(const char *path, long max_bytes)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (n >= 0 && n <= max_bytes && fseek(f, 0, SEEK_SET) == 0 && (buf = df_malloc((size_t)n + 1))) {
        if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
            df_free(buf);
            buf = NULL;
        } else {
            buf[n] = '\0';
        }
    }
    fclose(f);
    return buf;
}

static int add_file(df_weights *w, const char *path)
{
    df_safetensors **nf = df_realloc(w->files, (size_t)(w->n_files + 1) * sizeof *nf);
    if (!nf) return DF_ENOMEM;
    w->files = nf;
    int rc = df_safetensors_open(path, &w->files[w->n_files]);
    if (rc == DF_OK) w->n_files++;
    return rc;
}

/* The .safetensors files of a folder, in name order; a half-precision variant
 * ("x.fp16.safetensors") only when its full-precision twin is absent. */
static int open_folder(df_weights *w, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return df_error(DF_EIO, "%s: cannot open folder", dir);
    char **names = NULL;
    int n = 0, rc = DF_OK;
    struct dirent *e;
    while ((e = readdir(d)) && rc == DF_OK) {
        if (!ends_with(e->d_name, ".safetensors")) continue;
        char **nn = df_realloc(names, (size_t)(n + 1) * sizeof *nn);
        if (!nn || !(nn[n] = df_strdup(e->d_name))) {
            if (nn) names = nn;
            rc = DF_ENOMEM;
            break;
        }
        names = nn;
        n++;
    }
    closedir(d);
    if (rc == DF_OK) qsort(names, (size_t)n, sizeof *names, cmp_str);
    for (int i = 0; i < n && rc == DF_OK; i++) {
        const char *variant = strstr(names[i], ".fp16.");
        if (!variant) variant = strstr(names[i], ".bf16.");
        if (variant) { /* skip when the full-precision twin exists */
            char twin[512];
            snprintf(twin, sizeof twin, "%.*s%s", (int)(variant - names[i]), names[i], variant + 5);
            int found = 0;
            for (int j = 0; j < n; j++) found |= !strcmp(names[j], twin);
            if (found) continue;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        rc = add_file(w, path);
    }
    for (int i = 0; i < n; i++) df_free(names[i]);
    df_free(names);
    if (rc == DF_OK && w->n_files == 0) rc = df_error(DF_ENOTFOUND, "%s: no .safetensors file in the folder", dir);
    if (rc == DF_OK) {
        char path[4096];
        snprintf(path, sizeof path, "%s/config.json", dir);
        w->config = df_read_text_file(path, 64 << 20);
    }
    return rc;
}

int df_weights_open(const char *path, df_weights **out)
{
    *out = NULL;
    if (!path) return df_error(DF_EINVAL, "weights: no path given");
    struct stat st;
    if (stat(path, &st) != 0) return df_error(DF_EIO, "%s: no such file or folder", path);
    df_weights *w = df_calloc(1, sizeof *w);
    if (!w || !(w->path = df_strdup(path))) {
        df_free(w);
        return DF_ENOMEM;
    }
    int rc = S_ISDIR(st.st_mode) ? open_folder(w, path) : add_file(w, path);
    if (rc != DF_OK) {
        df_weights_free(w);
        return rc;
    }
    *out = w;
    return DF_OK;
}

void df_weights_free(df_weights *w)
{
    if (!w) return;
    for (int i = 0; i < w->n_files; i++) df_safetensors_close(w->files[i]);
    for (int i = 0; i < w->n_aliases; i++) {
        df_free(w->aliases[i].alias);
        df_free(w->aliases[i].real);
    }
    df_free(w->aliases);
    df_free(w->files);
    df_free(w->config);
    df_free(w->path);
    df_free(w);
}

const char *df_weights_path(const df_weights *w) { return w->path; }

static const df_st_info *find(const df_weights *w, const char *name, df_safetensors **file)
{
    name = resolve(w, name);
    for (int i = 0; i < w->n_files; i++) {
        const df_st_info *info = df_safetensors_find(w->files[i], name);
        if (info) {
            if (file) *file = w->files[i];
            return info;
        }
    }
    return NULL;
}

const df_st_info *df_weights_find(const df_weights *w, const char *name) { return find(w, name, NULL); }

const df_st_info *df_weights_findf(const df_weights *w, const char *fmt, ...)
{
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return find(w, name, NULL);
}

int df_weights_count(const df_weights *w)
{
    int n = 0;
    for (int i = 0; i < w->n_files; i++) n += df_safetensors_count(w->files[i]);
    return n;
}

const df_st_info *df_weights_at(const df_weights *w, int i)
{
    for (int f = 0; f < w->n_files; f++) {
        int n = df_safetensors_count(w->files[f]);
        if (i < n) return df_safetensors_info(w->files[f], i);
        i -= n;
    }
    return NULL;
}

const char *df_weights_metadata(const df_weights *w, const char *key)
{
    for (int i = 0; i < w->n_files; i++) {
        const char *v = df_safetensors_metadata(w->files[i], key);
        if (v) return v;
    }
    return NULL;
}

const char *df_weights_config(const df_weights *w) { return w->config; }

int df_weights_get(const df_weights *w, const char *name, df_backend *be, int want_f32, df_tensor **out)
{
    *out = NULL;
    df_safetensors *file = NULL;
    const df_st_info *info = find(w, name, &file);
    if (!info) return df_error(DF_ENOTFOUND, "%s: tensor '%s' not found", w->path, name);
    /* DIFUSA_WEIGHTS=f32 widens f16 / bf16 weights once, at load, instead of per op: twice the memory
     * (SD1.5: 3.4 GB instead of 1.7), no per-step conversion. A benchmark lever (make bench-full). */
    const char *mode = getenv("DIFUSA_WEIGHTS");
    if (mode && !strcmp(mode, "f32") && (info->dtype == DF_F16 || info->dtype == DF_BF16)) want_f32 = 1;
    df_tensor *t = NULL;
    const char *real = resolve(w, name);
    int rc = want_f32 ? df_safetensors_get_f32(file, real, &t) : df_safetensors_get(file, real, &t);
    if (rc != DF_OK) return rc;
    if (!be || be == df_backend_cpu()) {
        *out = t;
        return DF_OK;
    }
    rc = df_tensor_to(t, be, out);
    df_tensor_free(t);
    if (rc != DF_OK) return df_error_prefix(rc, "%s: uploading '%s'", w->path, name);
    return DF_OK;
}
