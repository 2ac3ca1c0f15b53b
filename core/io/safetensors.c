/* safetensors: map the file, validate the whole header (JSON, every entry,
 * the ranges against each other and the data area), then hand out tensors
 * that borrow the mapping; the writer builds the header and renames a
 * temporary file into place. */
#include "safetensors.h"

#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The largest header accepted (the reference implementation's limit). */
#define ST_MAX_HEADER ((uint64_t)100 << 20)

static const char METADATA_KEY[] = "__metadata__";

/* ---- the mapping: shared by the file object and every zero-copy tensor ---- */

typedef struct st_mapping {
    atomic_int refs;
    void *addr;
    size_t size;
} st_mapping;

static void mapping_release(void *owner)
{
    st_mapping *m = owner;
    if (!m || atomic_fetch_sub(&m->refs, 1) != 1) return;
    munmap(m->addr, m->size);
    df_free(m);
}

typedef struct st_meta {
    char *key, *value;
} st_meta;

struct df_safetensors {
    char *path;
    st_mapping *map;
    unsigned char *data; /* start of the data area inside the mapping */
    size_t data_size;
    int n;
    df_st_info *info;            /* n entries, by data offset */
    const df_st_info **by_name;  /* n entries, by name (strcmp) */
    int n_meta;
    st_meta *meta;               /* in file order */
    const st_meta **meta_by_key; /* by key (strcmp) */
};

static uint64_t load_u64le(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* Maps st->path and checks the length prefix; sets st->map and returns the
 * header text and its length. */
static int map_file(df_safetensors *st, const char **hdr, size_t *hlen)
{
    const char *path = st->path;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return df_error(DF_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return df_error(DF_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return df_error(DF_EIO, "%s: not a regular file", path);
    }
    if (sb.st_size < 8) {
        close(fd);
        return df_error(DF_EFORMAT, "%s: file too short (%lld bytes) for the 8-byte header length", path,
                        (long long)sb.st_size);
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return df_error(DF_EIO, "%s: file too large to map", path);
    }
    size_t size = (size_t)sb.st_size;
    /* Private and writable: a caller writing into a zero-copy tensor gets its
     * own copy of the page instead of a crash, and the file never changes. */
    void *addr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (addr == MAP_FAILED) return df_error(DF_EIO, "%s: cannot map: %s", path, strerror(e));
    st->map = df_malloc(sizeof *st->map);
    if (!st->map) {
        munmap(addr, size);
        return df_error_prefix(DF_ENOMEM, "%s", path);
    }
    atomic_init(&st->map->refs, 1);
    st->map->addr = addr;
    st->map->size = size;

    const unsigned char *base = addr;
    uint64_t n = load_u64le(base);
    if (n > ST_MAX_HEADER)
        return df_error(DF_EFORMAT, "%s: header too large (%llu bytes; the limit is %llu)", path,
                        (unsigned long long)n, (unsigned long long)ST_MAX_HEADER);
    if (n > size - 8)
        return df_error(DF_EFORMAT, "%s: header length %llu extends past the end of the file (%zu bytes)", path,
                        (unsigned long long)n, size);
    *hdr = (const char *)base + 8;
    *hlen = (size_t)n;
    st->data = (unsigned char *)addr + 8 + n;
    st->data_size = size - 8 - (size_t)n;
    return DF_OK;
}

/* ---- header validation ---- */

/* One tensor entry {"dtype": .., "shape": [..], "data_offsets": [b, e]} into
 * inf (whose name is set). */
static int parse_entry(const df_safetensors *st, const df_json *e, df_st_info *inf)
{
    const char *path = st->path, *name = inf->name, *why;
    if (e->type != DF_JSON_OBJECT)
        return df_error(DF_EFORMAT, "%s: tensor '%s': entry is not a JSON object", path, name);
    static const char *const fields[3] = {"dtype", "shape", "data_offsets"};
    const df_json *f[3] = {NULL, NULL, NULL};
    for (size_t i = 0; i < e->n; i++) /* other keys are ignored */
        for (int k = 0; k < 3; k++)
            if (!strcmp(e->items[i].key, fields[k])) {
                if (f[k]) return df_error(DF_EFORMAT, "%s: tensor '%s': duplicate '%s'", path, name, fields[k]);
                f[k] = &e->items[i];
            }
    for (int k = 0; k < 3; k++)
        if (!f[k]) return df_error(DF_EFORMAT, "%s: tensor '%s': missing '%s'", path, name, fields[k]);

    /* dtype */
    if (f[0]->type != DF_JSON_STRING)
        return df_error(DF_EFORMAT, "%s: tensor '%s': 'dtype' is not a string", path, name);
    int dt = df_dtype_from_name(f[0]->str);
    if (dt < 0) return df_error(DF_EFORMAT, "%s: tensor '%s': unknown dtype '%s'", path, name, f[0]->str);
    inf->dtype = (df_dtype)dt;

    /* shape: its element count and byte size must fit int64 (and so size_t) */
    const df_json *sh = f[1];
    if (sh->type != DF_JSON_ARRAY)
        return df_error(DF_EFORMAT, "%s: tensor '%s': 'shape' is not an array", path, name);
    if (sh->n > DF_ST_MAX_DIMS)
        return df_error(DF_EFORMAT, "%s: tensor '%s': too many dimensions (%zu; at most %d)", path, name, sh->n,
                        DF_ST_MAX_DIMS);
    inf->ndim = (int)sh->n;
    bool has_zero = false;
    for (int d = 0; d < inf->ndim; d++) {
        uint64_t v = 0;
        if (df_json_u64(&sh->items[d], &v, &why) != DF_OK || v > INT64_MAX)
            return df_error(DF_EFORMAT, "%s: tensor '%s': dimension %d %s", path, name, d,
                            v > INT64_MAX ? "is too large" : why);
        inf->shape[d] = (int64_t)v;
        has_zero |= v == 0;
    }
    uint64_t limit = INT64_MAX < SIZE_MAX ? (uint64_t)INT64_MAX : (uint64_t)SIZE_MAX;
    uint64_t nbytes = df_dtype_size(inf->dtype);
    if (has_zero) nbytes = 0;
    for (int d = 0; d < inf->ndim && nbytes; d++) {
        uint64_t v = (uint64_t)inf->shape[d];
        if (nbytes > limit / v)
            return df_error(DF_EFORMAT, "%s: tensor '%s': shape overflows (more than %llu bytes)", path, name,
                            (unsigned long long)limit);
        nbytes *= v;
    }

    /* data_offsets */
    const df_json *off = f[2];
    if (off->type != DF_JSON_ARRAY || off->n != 2)
        return df_error(DF_EFORMAT, "%s: tensor '%s': 'data_offsets' is not an array of two integers", path, name);
    uint64_t be[2];
    for (int k = 0; k < 2; k++)
        if (df_json_u64(&off->items[k], &be[k], &why) != DF_OK)
            return df_error(DF_EFORMAT, "%s: tensor '%s': data_offsets %s %s", path, name, k ? "end" : "begin", why);
    if (be[1] < be[0])
        return df_error(DF_EFORMAT, "%s: tensor '%s': data_offsets end %llu is before begin %llu", path, name,
                        (unsigned long long)be[1], (unsigned long long)be[0]);
    if (be[1] - be[0] != nbytes)
        return df_error(DF_EFORMAT,
                        "%s: tensor '%s': size mismatch: %s with %llu elements needs %llu bytes, "
                        "data_offsets [%llu, %llu] hold %llu",
                        path, name, df_dtype_name(inf->dtype),
                        (unsigned long long)(nbytes / df_dtype_size(inf->dtype)), (unsigned long long)nbytes,
                        (unsigned long long)be[0], (unsigned long long)be[1], (unsigned long long)(be[1] - be[0]));
    if (be[1] > st->data_size)
        return df_error(DF_EFORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] go past the end of the data area (%zu bytes)",
                        path, name, (unsigned long long)be[0], (unsigned long long)be[1], st->data_size);
    inf->offset = (size_t)be[0];
    inf->nbytes = (size_t)nbytes;
    return DF_OK;
}

static int parse_metadata(df_safetensors *st, df_json *m)
{
    if (m->type != DF_JSON_OBJECT) return df_error(DF_EFORMAT, "%s: '%s' is not a JSON object", st->path, METADATA_KEY);
    if (m->n > 0 && !(st->meta = df_calloc(m->n, sizeof *st->meta))) return df_error_prefix(DF_ENOMEM, "%s", st->path);
    for (size_t i = 0; i < m->n; i++) {
        df_json *v = &m->items[i];
        if (v->type != DF_JSON_STRING)
            return df_error(DF_EFORMAT, "%s: '%s' value for key '%s' is not a string", st->path, METADATA_KEY, v->key);
        /* take the decoded strings from the tree */
        st->meta[i].key = v->key;
        st->meta[i].value = v->str;
        v->key = v->str = NULL;
        st->n_meta++;
    }
    return DF_OK;
}

static int cmp_info_name(const void *a, const void *b)
{
    return strcmp((*(const df_st_info *const *)a)->name, (*(const df_st_info *const *)b)->name);
}

static int cmp_info_offset(const void *a, const void *b)
{
    const df_st_info *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_meta_key(const void *a, const void *b)
{
    return strcmp((*(const st_meta *const *)a)->key, (*(const st_meta *const *)b)->key);
}

/* The lookup tables, and the checks that need them: unique names and keys,
 * ranges that do not overlap. */
static int index_entries(df_safetensors *st)
{
    const char *path = st->path;
    if (st->n > 0 && !(st->by_name = df_malloc((size_t)st->n * sizeof *st->by_name)))
        return df_error_prefix(DF_ENOMEM, "%s", path);
    for (int i = 0; i < st->n; i++) st->by_name[i] = &st->info[i];
    if (st->n > 1) qsort(st->by_name, (size_t)st->n, sizeof *st->by_name, cmp_info_name);
    for (int i = 1; i < st->n; i++)
        if (!strcmp(st->by_name[i - 1]->name, st->by_name[i]->name))
            return df_error(DF_EFORMAT, "%s: duplicate tensor name '%s'", path, st->by_name[i]->name);

    if (st->n_meta > 0 && !(st->meta_by_key = df_malloc((size_t)st->n_meta * sizeof *st->meta_by_key)))
        return df_error_prefix(DF_ENOMEM, "%s", path);
    for (int i = 0; i < st->n_meta; i++) st->meta_by_key[i] = &st->meta[i];
    if (st->n_meta > 1) qsort(st->meta_by_key, (size_t)st->n_meta, sizeof *st->meta_by_key, cmp_meta_key);
    for (int i = 1; i < st->n_meta; i++)
        if (!strcmp(st->meta_by_key[i - 1]->key, st->meta_by_key[i]->key))
            return df_error(DF_EFORMAT, "%s: duplicate '%s' key '%s'", path, METADATA_KEY, st->meta_by_key[i]->key);

    /* by offset; empty ranges overlap nothing */
    if (st->n > 1) qsort(st->info, (size_t)st->n, sizeof *st->info, cmp_info_offset);
    const df_st_info *last = NULL; /* the non-empty range reaching furthest so far */
    for (int i = 0; i < st->n; i++) {
        const df_st_info *c = &st->info[i];
        if (!c->nbytes) continue;
        if (last && c->offset < last->offset + last->nbytes)
            return df_error(DF_EFORMAT, "%s: tensors '%s' [%zu, %zu) and '%s' [%zu, %zu) overlap", path, last->name,
                            last->offset, last->offset + last->nbytes, c->name, c->offset, c->offset + c->nbytes);
        if (!last || c->offset + c->nbytes > last->offset + last->nbytes) last = c;
    }
    /* the sort moved the entries: point the name index at them again */
    for (int i = 0; i < st->n; i++) st->by_name[i] = &st->info[i];
    if (st->n > 1) qsort(st->by_name, (size_t)st->n, sizeof *st->by_name, cmp_info_name);
    return DF_OK;
}

static int parse_header(df_safetensors *st, const char *hdr, size_t hlen)
{
    const char *path = st->path;
    df_json *root = NULL;
    int rc = df_json_parse(hdr, hlen, &root);
    if (rc) return df_error_prefix(rc, "%s: header", path);
    if (root->type != DF_JSON_OBJECT) {
        df_json_free(root);
        return df_error(DF_EFORMAT, "%s: header is not a JSON object", path);
    }
    df_json *meta = NULL;
    size_t n = 0;
    for (size_t i = 0; i < root->n && !rc; i++) {
        if (strcmp(root->items[i].key, METADATA_KEY)) n++;
        else if (meta) rc = df_error(DF_EFORMAT, "%s: duplicate '%s'", path, METADATA_KEY);
        else meta = &root->items[i];
    }
    if (!rc && n > (size_t)INT32_MAX) rc = df_error(DF_EFORMAT, "%s: too many tensors", path);
    if (!rc && n > 0 && !(st->info = df_calloc(n, sizeof *st->info))) rc = df_error_prefix(DF_ENOMEM, "%s", path);
    for (size_t i = 0; i < root->n && !rc; i++) {
        df_json *e = &root->items[i];
        if (e == meta) continue;
        df_st_info *inf = &st->info[st->n++];
        inf->name = e->key; /* taken from the tree */
        e->key = NULL;
        rc = parse_entry(st, e, inf);
    }
    if (!rc && meta) rc = parse_metadata(st, meta);
    df_json_free(root);
    return rc ? rc : index_entries(st);
}

int df_safetensors_open(const char *path, df_safetensors **out)
{
    if (!out) return df_error(DF_EINVAL, "df_safetensors_open: out is NULL");
    *out = NULL;
    if (!path) return df_error(DF_EINVAL, "df_safetensors_open: path is NULL");
    df_safetensors *st = df_calloc(1, sizeof *st);
    if (!st) return df_error_prefix(DF_ENOMEM, "%s", path);
    const char *hdr = NULL;
    size_t hlen = 0;
    int rc = (st->path = df_strdup(path)) ? DF_OK : df_error_prefix(DF_ENOMEM, "%s", path);
    if (!rc) rc = map_file(st, &hdr, &hlen);
    if (!rc) rc = parse_header(st, hdr, hlen);
    if (rc) {
        df_safetensors_close(st);
        return rc;
    }
    *out = st;
    return DF_OK;
}

void df_safetensors_close(df_safetensors *st)
{
    if (!st) return;
    for (int i = 0; i < st->n; i++) df_free((char *)st->info[i].name);
    for (int i = 0; i < st->n_meta; i++) {
        df_free(st->meta[i].key);
        df_free(st->meta[i].value);
    }
    df_free(st->info);
    df_free(st->by_name);
    df_free(st->meta);
    df_free(st->meta_by_key);
    mapping_release(st->map);
    df_free(st->path);
    df_free(st);
}

/* ---- queries ---- */

const char *df_safetensors_path(const df_safetensors *st) { return st ? st->path : NULL; }

int df_safetensors_count(const df_safetensors *st) { return st ? st->n : 0; }

const df_st_info *df_safetensors_info(const df_safetensors *st, int i)
{
    return st && i >= 0 && i < st->n ? &st->info[i] : NULL;
}

static int cmp_name_key(const void *key, const void *elem)
{
    return strcmp(key, (*(const df_st_info *const *)elem)->name);
}

const df_st_info *df_safetensors_find(const df_safetensors *st, const char *name)
{
    if (!st || !name || !st->n) return NULL;
    const df_st_info *const *p = bsearch(name, st->by_name, (size_t)st->n, sizeof *st->by_name, cmp_name_key);
    return p ? *p : NULL;
}

const void *df_safetensors_data(const df_safetensors *st, const df_st_info *info)
{
    return st && info ? st->data + info->offset : NULL;
}

static int cmp_meta_find(const void *key, const void *elem)
{
    return strcmp(key, (*(const st_meta *const *)elem)->key);
}

const char *df_safetensors_metadata(const df_safetensors *st, const char *key)
{
    if (!st || !key || !st->n_meta) return NULL;
    const st_meta *const *p = bsearch(key, st->meta_by_key, (size_t)st->n_meta, sizeof *st->meta_by_key, cmp_meta_find);
    return p ? (*p)->value : NULL;
}

int df_safetensors_metadata_count(const df_safetensors *st) { return st ? st->n_meta : 0; }

void df_safetensors_metadata_at(const df_safetensors *st, int i, const char **key, const char **value)
{
    bool ok = st && i >= 0 && i < st->n_meta;
    if (key) *key = ok ? st->meta[i].key : NULL;
    if (value) *value = ok ? st->meta[i].value : NULL;
}

/* ---- tensors ---- */

int df_safetensors_get(df_safetensors *st, const char *name, df_tensor **out)
{
    if (!out) return df_error(DF_EINVAL, "df_safetensors_get: out is NULL");
    *out = NULL;
    if (!st || !name) return df_error(DF_EINVAL, "df_safetensors_get: NULL file or name");
    const df_st_info *inf = df_safetensors_find(st, name);
    if (!inf) return df_error(DF_ENOTFOUND, "%s: no tensor named '%s'", st->path, name);
    if (inf->ndim > DF_MAX_DIMS)
        return df_error(DF_ESHAPE, "%s: tensor '%s' has %d dims (tensors have at most %d)", st->path, name, inf->ndim,
                        DF_MAX_DIMS);
    unsigned char *p = st->data + inf->offset;
    df_tensor *t;
    if ((uintptr_t)p % df_dtype_size(inf->dtype) == 0) {
        atomic_fetch_add(&st->map->refs, 1); /* the buffer's reference */
        t = df_tensor_wrap(inf->dtype, inf->ndim, inf->shape, p, mapping_release, st->map);
        if (!t) mapping_release(st->map);
    } else {
        t = df_tensor_from_data(inf->dtype, inf->ndim, inf->shape, p);
    }
    if (!t) return df_error_prefix(DF_ENOMEM, "%s: tensor '%s'", st->path, name);
    *out = t;
    return DF_OK;
}

int df_safetensors_get_f32(df_safetensors *st, const char *name, df_tensor **out)
{
    if (!out) return df_error(DF_EINVAL, "df_safetensors_get_f32: out is NULL");
    *out = NULL;
    if (!st || !name) return df_error(DF_EINVAL, "df_safetensors_get_f32: NULL file or name");
    const df_st_info *inf = df_safetensors_find(st, name);
    if (!inf) return df_error(DF_ENOTFOUND, "%s: no tensor named '%s'", st->path, name);
    if (inf->dtype != DF_F32 && inf->dtype != DF_F16 && inf->dtype != DF_BF16 && inf->dtype != DF_F64)
        return df_error(DF_EDTYPE, "%s: tensor '%s' is %s, not a float dtype that converts to F32", st->path, name,
                        df_dtype_name(inf->dtype));
    /* the raw tensor is aligned (a view or a copy), so the conversion reads aligned data */
    df_tensor *raw;
    int rc = df_safetensors_get(st, name, &raw);
    if (rc) return rc;
    df_tensor *t = df_tensor_new(NULL, DF_F32, raw->ndim, raw->shape);
    if (!t) rc = df_error_prefix(DF_ENOMEM, "%s: tensor '%s'", st->path, name);
    else rc = df_convert_to_f32(raw->dtype, df_tensor_data(raw), df_tensor_data(t), df_tensor_numel(raw));
    df_tensor_free(raw);
    if (rc) {
        df_tensor_free(t);
        return rc;
    }
    *out = t;
    return DF_OK;
}

/* ---- writing ---- */

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n < ((size_t)1 << 30) ? n : ((size_t)1 << 30));
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int cmp_str_ptr(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* The first string that occurs twice in s[0, n) (in sorted order), NULL when
 * none; sets *rc to DF_ENOMEM when the scratch array cannot be allocated. */
static const char *find_duplicate(const char *const *s, int n, int *rc)
{
    *rc = DF_OK;
    if (n < 2) return NULL;
    const char **v = df_malloc((size_t)n * sizeof *v);
    if (!v) {
        *rc = DF_ENOMEM;
        return NULL;
    }
    memcpy(v, s, (size_t)n * sizeof *v);
    qsort(v, (size_t)n, sizeof *v, cmp_str_ptr);
    const char *dup = NULL;
    for (int i = 1; i < n && !dup; i++)
        if (!strcmp(v[i - 1], v[i])) dup = v[i];
    df_free(v);
    return dup;
}

/* Arguments checked before anything touches the disk. */
static int check_save_args(const char *path, int n, const char *const *names, const df_tensor *const *tensors,
                           int n_meta, const char *const *meta_keys, const char *const *meta_values)
{
    if (n < 0 || n_meta < 0 || (n > 0 && (!names || !tensors)) || (n_meta > 0 && (!meta_keys || !meta_values)))
        return df_error(DF_EINVAL, "%s: save: bad tensor or metadata arrays", path);
    for (int i = 0; i < n; i++) {
        if (!names[i] || !tensors[i]) return df_error(DF_EINVAL, "%s: save: tensor %d has no name or no tensor", path, i);
        if (!df_json_utf8_valid(names[i], strlen(names[i])))
            return df_error(DF_EINVAL, "%s: save: tensor name %d is not valid UTF-8", path, i);
        if (!strcmp(names[i], METADATA_KEY))
            return df_error(DF_EINVAL, "%s: save: '%s' is reserved and cannot name a tensor", path, METADATA_KEY);
        const df_tensor *t = tensors[i];
        if ((unsigned)t->dtype >= DF_DTYPE_COUNT || t->ndim < 0 || t->ndim > DF_MAX_DIMS)
            return df_error(DF_EINVAL, "%s: save: tensor '%s' has a bad dtype or rank", path, names[i]);
    }
    for (int i = 0; i < n_meta; i++) {
        if (!meta_keys[i] || !meta_values[i])
            return df_error(DF_EINVAL, "%s: save: metadata entry %d has no key or no value", path, i);
        if (!df_json_utf8_valid(meta_keys[i], strlen(meta_keys[i])) ||
            !df_json_utf8_valid(meta_values[i], strlen(meta_values[i])))
            return df_error(DF_EINVAL, "%s: save: metadata entry '%s' is not valid UTF-8", path, meta_keys[i]);
    }
    int rc;
    const char *dup = find_duplicate(names, n, &rc);
    if (!rc && dup) return df_error(DF_EINVAL, "%s: save: duplicate tensor name '%s'", path, dup);
    if (!rc) dup = find_duplicate(meta_keys, n_meta, &rc);
    if (!rc && dup) return df_error(DF_EINVAL, "%s: save: duplicate metadata key '%s'", path, dup);
    return rc ? df_error_prefix(rc, "%s: save", path) : DF_OK;
}

/* The padded header: {"__metadata__": {..}, "name": {"dtype", "shape", "data_offsets"}, ..}. */
static int build_header(const char *path, int n, const char *const *names, const df_tensor *const *tensors,
                        const int *order, int n_meta, const char *const *meta_keys, const char *const *meta_values,
                        df_json_buf *b)
{
    df_json_buf_raw(b, "{", 1);
    if (n_meta > 0) {
        df_json_buf_string(b, METADATA_KEY);
        df_json_buf_raw(b, ":{", 2);
        for (int i = 0; i < n_meta; i++) {
            if (i) df_json_buf_raw(b, ",", 1);
            df_json_buf_string(b, meta_keys[i]);
            df_json_buf_raw(b, ":", 1);
            df_json_buf_string(b, meta_values[i]);
        }
        df_json_buf_raw(b, "}", 1);
    }
    size_t offset = 0;
    for (int k = 0; k < n; k++) {
        int i = order[k];
        const df_tensor *t = tensors[i];
        size_t nb = df_tensor_nbytes(t);
        if (k || n_meta > 0) df_json_buf_raw(b, ",", 1);
        df_json_buf_string(b, names[i]);
        df_json_buf_printf(b, ":{\"dtype\":\"%s\",\"shape\":[", df_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++) df_json_buf_printf(b, d ? ",%lld" : "%lld", (long long)t->shape[d]);
        df_json_buf_printf(b, "],\"data_offsets\":[%zu,%zu]}", offset, offset + nb);
        offset += nb;
    }
    df_json_buf_raw(b, "}", 1);
    while (!b->failed && b->len % 8) df_json_buf_raw(b, " ", 1);
    if (b->failed) return df_error_prefix(DF_ENOMEM, "%s: save", path);
    if (b->len > ST_MAX_HEADER)
        return df_error(DF_EINVAL, "%s: save: header too large (%zu bytes; the limit is %llu)", path, b->len,
                        (unsigned long long)ST_MAX_HEADER);
    return DF_OK;
}

int df_safetensors_save(const char *path, int n, const char *const *names, const df_tensor *const *tensors,
                        int n_meta, const char *const *meta_keys, const char *const *meta_values)
{
    if (!path) return df_error(DF_EINVAL, "df_safetensors_save: path is NULL");
    int rc = check_save_args(path, n, names, tensors, n_meta, meta_keys, meta_values);
    if (rc) return rc;

    int *order = df_malloc((size_t)(n > 0 ? n : 1) * sizeof *order);
    if (!order) return df_error_prefix(DF_ENOMEM, "%s: save", path);
    /* Data order: 8-byte elements first, then 4, 2, 1 (each in argument order),
     * so with the 8-aligned data area every tensor is aligned and loads zero-copy. */
    size_t max_bytes = 0;
    int placed = 0;
    for (size_t es = 8; es >= 1; es /= 2)
        for (int i = 0; i < n; i++)
            if (df_dtype_size(tensors[i]->dtype) == es) order[placed++] = i;
    if (placed != n) { /* only if a dtype of another element size is ever added */
        df_free(order);
        return df_error(DF_EINVAL, "%s: save: a tensor has an element size other than 1, 2, 4 or 8", path);
    }
    for (int i = 0; i < n; i++) {
        size_t nb = df_tensor_nbytes(tensors[i]);
        if (nb > max_bytes) max_bytes = nb;
    }

    df_json_buf hdr = {0};
    char *scratch = NULL, *tmp = NULL;
    int fd = -1;
    rc = build_header(path, n, names, tensors, order, n_meta, meta_keys, meta_values, &hdr);
    if (!rc && !(scratch = df_malloc(max_bytes))) rc = df_error_prefix(DF_ENOMEM, "%s: save", path);
    size_t tlen = strlen(path) + 32;
    if (!rc) {
        if (!(tmp = df_malloc(tlen))) {
            rc = df_error_prefix(DF_ENOMEM, "%s: save", path);
        } else {
            snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
            fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
            if (fd < 0) rc = df_error(DF_EIO, "%s: cannot create '%s': %s", path, tmp, strerror(errno));
        }
    }
    if (!rc) {
        unsigned char len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hdr.len >> (8 * i));
        if (write_all(fd, len8, 8) || write_all(fd, hdr.data, hdr.len))
            rc = df_error(DF_EIO, "%s: write failed: %s", path, strerror(errno));
    }
    for (int k = 0; k < n && !rc; k++) {
        const df_tensor *t = tensors[order[k]];
        size_t nb = df_tensor_nbytes(t);
        if (!nb) continue;
        if ((rc = df_tensor_read(t, scratch, nb)))
            rc = df_error_prefix(rc, "%s: save: reading tensor '%s'", path, names[order[k]]);
        else if (write_all(fd, scratch, nb))
            rc = df_error(DF_EIO, "%s: write failed: %s", path, strerror(errno));
    }
    if (!rc && fsync(fd) != 0) rc = df_error(DF_EIO, "%s: fsync failed: %s", path, strerror(errno));
    if (fd >= 0 && close(fd) != 0 && !rc) rc = df_error(DF_EIO, "%s: close failed: %s", path, strerror(errno));
    if (!rc && rename(tmp, path) != 0) rc = df_error(DF_EIO, "%s: cannot rename '%s' into place: %s", path, tmp, strerror(errno));
    if (rc && fd >= 0) unlink(tmp);
    df_free(tmp);
    df_free(scratch);
    df_json_buf_free(&hdr);
    df_free(order);
    return rc;
}
