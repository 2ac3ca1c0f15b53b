/* The plugin loader and the sampler registry: dlopen, the ABI checks on the
 * plugin descriptor and on every sampler descriptor, registration by name,
 * and the default search path. A plugin is all or nothing: if its init fails
 * or any of its samplers is refused, none of them stays registered and the
 * library is unloaded. */
#include "internal.h"

#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Sizes of the structs of ABI version <major>.0: the smallest a plugin or a
 * host of this major version may hand over. */
#define PLUGIN_DESC_SIZE_1_0 (offsetof(df_plugin_desc, fini) + sizeof(void (*)(void)))
#define SAMPLER_DESC_SIZE_1_0 (offsetof(df_sampler_desc, user) + sizeof(void *))

typedef struct plugin {
    void *handle;
    char *path, *real, *name;
    const df_plugin_desc *desc;
} plugin;

struct df_registry {
    plugin *plugins;
    int n_plugins, cap_plugins;
    df_sampler_entry *entries;
    int n_entries, cap_entries;
    char **failures;
    int n_failures, cap_failures;
};

/* What init registers into: the samplers are staged and only committed when
 * the whole plugin loaded. */
struct df_plugin_registrar {
    df_registry *reg;
    const char *path, *plugin_name;
    int first;  /* index of this plugin's first staged entry */
    int failed; /* a registration was refused (message in err) */
    char err[768];
};

int df_registry_new(df_registry **out)
{
    if (!out) return df_error(DF_EINVAL, "registry: 'out' is NULL");
    *out = df_calloc(1, sizeof **out);
    return *out ? DF_OK : DF_ENOMEM;
}

static void free_entry(df_sampler_entry *e)
{
    df_free((char *)e->info.name);
    df_free((char *)e->info.description);
}

static void unload(plugin *p)
{
    if (p->desc && p->desc->fini) p->desc->fini();
    if (p->handle) dlclose(p->handle);
    df_free(p->path);
    df_free(p->real);
    df_free(p->name);
}

void df_registry_free(df_registry *r)
{
    if (!r) return;
    for (int i = 0; i < r->n_entries; i++) free_entry(&r->entries[i]);
    df_free(r->entries);
    for (int i = r->n_plugins - 1; i >= 0; i--) unload(&r->plugins[i]);
    df_free(r->plugins);
    for (int i = 0; i < r->n_failures; i++) df_free(r->failures[i]);
    df_free(r->failures);
    df_free(r);
}

static int grow(void **arr, int *cap, int need, size_t elem)
{
    if (need <= *cap) return DF_OK;
    int nc = *cap ? *cap * 2 : 8;
    while (nc < need) nc *= 2;
    void *p = df_realloc(*arr, (size_t)nc * elem);
    if (!p) return DF_ENOMEM;
    *arr = p;
    *cap = nc;
    return DF_OK;
}

int df_registry_count(const df_registry *r) { return r ? r->n_entries : 0; }

const df_sampler_info *df_registry_get(const df_registry *r, int i)
{
    if (!r || i < 0 || i >= r->n_entries) return NULL;
    return &r->entries[i].info;
}

const df_sampler_info *df_registry_find(const df_registry *r, const char *name)
{
    if (!r || !name) return NULL;
    for (int i = 0; i < r->n_entries; i++)
        if (!strcmp(r->entries[i].info.name, name)) return &r->entries[i].info;
    return NULL;
}

int df_registry_failure_count(const df_registry *r) { return r ? r->n_failures : 0; }

const char *df_registry_failure(const df_registry *r, int i)
{
    if (!r || i < 0 || i >= r->n_failures) return NULL;
    return r->failures[i];
}

/* ---- registration ---- */

static int valid_name(const char *s)
{
    if (!s || !*s || strlen(s) > 64) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_')) return 0;
    return 1;
}

static int refuse(df_plugin_registrar *g, const char *fmt, const char *a, const char *b)
{
    g->failed = 1;
    snprintf(g->err, sizeof g->err, fmt, a ? a : "?", b ? b : "?");
    return df_error(DF_EINVAL, "%s", g->err);
}

static int check_option(df_plugin_registrar *g, const df_sampler_desc *d, const df_sampler_option *o)
{
    char buf[160];
    if (!valid_name(o->name)) return refuse(g, "sampler %s: an option has an invalid name '%s'", d->name, o->name);
    if (o->type < DF_OPT_NUMBER || o->type > DF_OPT_CHOICE) {
        snprintf(buf, sizeof buf, "%s (type %d)", o->name, o->type);
        return refuse(g, "sampler %s: option %s has an unknown type", d->name, buf);
    }
    if (o->type == DF_OPT_CHOICE) {
        int n = 0;
        for (const char *c = o->choices; c && *c; c++) n += *c == '|';
        if (!o->choices || !*o->choices || o->default_value < 0 || o->default_value > n ||
            o->default_value != floor(o->default_value))
            return refuse(g, "sampler %s: choice option %s needs choices and a default index among them", d->name,
                          o->name);
        return DF_OK;
    }
    if (isnan(o->min_value) || isnan(o->max_value) || o->min_value > o->max_value ||
        !(o->default_value >= o->min_value && o->default_value <= o->max_value))
        return refuse(g, "sampler %s: option %s has a default outside its range", d->name, o->name);
    return DF_OK;
}

int df_registry_register_sampler(df_plugin_registrar *g, const df_sampler_desc *d)
{
    if (!g) return df_error(DF_EINVAL, "register_sampler: registrar is NULL");
    if (!d) return refuse(g, "plugin %s: register_sampler got a NULL descriptor%s", g->plugin_name, "");
    char v[64];
    if ((d->abi_version >> 16) != DF_PLUGIN_ABI_MAJOR) {
        snprintf(v, sizeof v, "%u.%u (host %d.%d)", d->abi_version >> 16, d->abi_version & 0xffff, DF_PLUGIN_ABI_MAJOR,
                 DF_PLUGIN_ABI_MINOR);
        return refuse(g, "plugin %s: a sampler descriptor has ABI version %s", g->plugin_name, v);
    }
    if (d->struct_size < SAMPLER_DESC_SIZE_1_0) {
        snprintf(v, sizeof v, "%u (at least %zu)", d->struct_size, (size_t)SAMPLER_DESC_SIZE_1_0);
        return refuse(g, "plugin %s: a sampler descriptor has struct_size %s", g->plugin_name, v);
    }
    if (!valid_name(d->name))
        return refuse(g, "plugin %s: invalid sampler name '%s' (want [a-z0-9_]+, at most 64)", g->plugin_name,
                      d->name);
    if (!d->sample) return refuse(g, "plugin %s: sampler %s has no sample function", g->plugin_name, d->name);
    if (d->n_options < 0 || d->n_options > 64 || (d->n_options && !d->options))
        return refuse(g, "plugin %s: sampler %s has a bad option table", g->plugin_name, d->name);
    for (int i = 0; i < d->n_options; i++) {
        int rc = check_option(g, d, &d->options[i]);
        if (rc) return rc;
        for (int j = 0; j < i; j++)
            if (!strcmp(d->options[i].name, d->options[j].name))
                return refuse(g, "sampler %s: option %s is declared twice", d->name, d->options[i].name);
    }
    df_registry *r = g->reg;
    for (int i = 0; i < r->n_entries; i++) {
        if (strcmp(r->entries[i].info.name, d->name)) continue;
        char other[600];
        snprintf(other, sizeof other, "%s (plugin %s, %s)", d->name, r->entries[i].info.plugin,
                 r->entries[i].info.path);
        return refuse(g, "plugin %s: sampler name %s is already registered", g->plugin_name, other);
    }
    if (grow((void **)&r->entries, &r->cap_entries, r->n_entries + 1, sizeof *r->entries)) {
        g->failed = 1;
        snprintf(g->err, sizeof g->err, "%s", df_last_error());
        return DF_ENOMEM;
    }
    df_sampler_entry *e = &r->entries[r->n_entries];
    memset(e, 0, sizeof *e);
    e->info.name = df_strdup(d->name);
    e->info.description = df_strdup(d->description ? d->description : "");
    if (!e->info.name || !e->info.description) {
        free_entry(e);
        g->failed = 1;
        snprintf(g->err, sizeof g->err, "%s", df_last_error());
        return DF_ENOMEM;
    }
    e->info.options = d->options;
    e->info.n_options = d->n_options;
    e->info.flags = d->flags;
    e->info.plugin = g->plugin_name; /* owned by the plugin record once committed */
    e->info.path = g->path;
    e->sample = d->sample;
    e->user = d->user;
    r->n_entries++;
    return DF_OK;
}

/* ---- loading ---- */

static int add_failure(df_registry *r, const char *path, const char *msg)
{
    if (grow((void **)&r->failures, &r->cap_failures, r->n_failures + 1, sizeof *r->failures)) return DF_ENOMEM;
    size_t n = strlen(path) + strlen(msg) + 3;
    char *s = df_malloc(n);
    if (!s) return DF_ENOMEM;
    snprintf(s, n, "%s: %s", path, msg);
    r->failures[r->n_failures++] = s;
    return DF_OK;
}

/* Records the failure and sets the message "<path>: <msg>". */
static int fail(df_registry *r, const char *path, int code, const char *msg)
{
    char copy[1024];
    snprintf(copy, sizeof copy, "%s", msg);
    add_failure(r, path, copy);
    return df_error(code, "%s: %s", path, copy);
}

static int load_file(df_registry *r, const char *path)
{
    char real[PATH_MAX];
    if (!realpath(path, real)) return fail(r, path, DF_EIO, "cannot resolve the path");
    for (int i = 0; i < r->n_plugins; i++)
        if (!strcmp(r->plugins[i].real, real)) return DF_OK; /* the same file twice: already loaded */

    dlerror();
    void *h = dlopen(real, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        return fail(r, path, DF_EIO, e ? e : "dlopen failed");
    }
    char msg[1024];
    union {
        void *obj;
        df_plugin_entry_fn fn;
    } sym;
    dlerror();
    sym.obj = dlsym(h, DF_PLUGIN_ENTRY_SYMBOL);
    if (!sym.obj) {
        dlclose(h);
        snprintf(msg, sizeof msg, "not a difusa plugin: no symbol %s", DF_PLUGIN_ENTRY_SYMBOL);
        return fail(r, path, DF_EFORMAT, msg);
    }
    const df_plugin_desc *d = sym.fn();
    if (!d) {
        dlclose(h);
        return fail(r, path, DF_EFORMAT, DF_PLUGIN_ENTRY_SYMBOL " returned NULL");
    }
    /* (the descriptor lives in the library: read it before dlclose) */
    if ((d->abi_version >> 16) != DF_PLUGIN_ABI_MAJOR) {
        snprintf(msg, sizeof msg, "plugin ABI version %u.%u, but this host speaks %d.%d (the major versions differ)",
                 d->abi_version >> 16, d->abi_version & 0xffff, DF_PLUGIN_ABI_MAJOR, DF_PLUGIN_ABI_MINOR);
        dlclose(h);
        return fail(r, path, DF_EFORMAT, msg);
    }
    if (d->struct_size < PLUGIN_DESC_SIZE_1_0) {
        snprintf(msg, sizeof msg, "plugin descriptor struct_size %u is smaller than the %zu of ABI %d.0",
                 d->struct_size, (size_t)PLUGIN_DESC_SIZE_1_0, DF_PLUGIN_ABI_MAJOR);
        dlclose(h);
        return fail(r, path, DF_EFORMAT, msg);
    }
    if (!d->name || !*d->name || !d->init) {
        dlclose(h);
        return fail(r, path, DF_EFORMAT, "plugin descriptor has no name or no init function");
    }
    int rc = grow((void **)&r->plugins, &r->cap_plugins, r->n_plugins + 1, sizeof *r->plugins);
    char *pname = df_strdup(d->name), *ppath = df_strdup(path), *preal = df_strdup(real);
    if (rc || !pname || !ppath || !preal) {
        df_free(pname);
        df_free(ppath);
        df_free(preal);
        dlclose(h);
        return DF_ENOMEM;
    }
    df_plugin_registrar g = {.reg = r, .path = ppath, .plugin_name = pname, .first = r->n_entries};
    df_clear_error();
    int irc = d->init(df_host_api_table(), &g);
    if (irc || g.failed) {
        for (int i = g.first; i < r->n_entries; i++) free_entry(&r->entries[i]);
        r->n_entries = g.first;
        if (g.failed) snprintf(msg, sizeof msg, "%s", g.err);
        else
            snprintf(msg, sizeof msg, "plugin %s: init failed (status %d)%s%s", pname, irc,
                     df_last_error()[0] ? ": " : "", df_last_error());
        if (d->fini) d->fini();
        dlclose(h);
        df_free(pname);
        df_free(preal);
        rc = fail(r, path, g.failed ? DF_EINVAL : (irc < 0 ? irc : DF_EINVAL), msg);
        df_free(ppath);
        return rc;
    }
    r->plugins[r->n_plugins++] = (plugin){h, ppath, preal, pname, d};
    return DF_OK;
}

static int is_plugin_name(const char *n)
{
    size_t l = strlen(n);
    return l > 3 && n[0] != '.' && !strcmp(n + l - 3, ".so");
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int load_dir(df_registry *r, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return fail(r, dir, DF_EIO, "cannot open the folder");
    char **names = NULL;
    int n = 0, cap = 0, rc = DF_OK;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!is_plugin_name(de->d_name)) continue;
        if (grow((void **)&names, &cap, n + 1, sizeof *names) || !(names[n] = df_strdup(de->d_name))) {
            rc = DF_ENOMEM;
            break;
        }
        n++;
    }
    closedir(d);
    if (n > 1) qsort(names, (size_t)n, sizeof *names, cmp_str);
    int failures = 0, last = DF_OK;
    for (int i = 0; i < n && rc != DF_ENOMEM; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        int frc = load_file(r, path);
        if (frc) failures++, last = frc;
    }
    for (int i = 0; i < n; i++) df_free(names[i]);
    df_free(names);
    if (rc) return rc;
    if (failures) {
        /* name every failure of this folder in the message */
        char msg[2048];
        size_t at = (size_t)snprintf(msg, sizeof msg, "%d of %d plugins in %s failed to load", failures, n, dir);
        for (int i = r->n_failures - failures; i < r->n_failures && at < sizeof msg; i++)
            at += (size_t)snprintf(msg + at, sizeof msg - at, "; %s", r->failures[i]);
        return df_error(last, "%s", msg);
    }
    return DF_OK;
}

int df_registry_load(df_registry *r, const char *path)
{
    if (!r || !path || !*path) return df_error(DF_EINVAL, "registry_load: registry and path are required");
    struct stat st;
    if (stat(path, &st)) return fail(r, path, DF_EIO, "no such file or folder");
    return S_ISDIR(st.st_mode) ? load_dir(r, path) : load_file(r, path);
}

static int is_dir(const char *p)
{
    struct stat st;
    return !stat(p, &st) && S_ISDIR(st.st_mode);
}

int df_registry_default_dir(char *buf, size_t size)
{
    if (!buf || size == 0) return df_error(DF_EINVAL, "registry_default_dir: no buffer");
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char cand[PATH_MAX];
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
        /* build tree; make install (<prefix>/bin -> <prefix>/lib/difusa); a LuaRocks tree (<tree>/bin ->
         * <tree>/lib/lua/5.4/difusa, beside the Lua module) */
        const char *rel[] = {"samplers", "../samplers", "../lib/difusa/samplers", "../lib/lua/5.4/difusa/samplers"};
        for (int i = 0; i < 4; i++) {
            if (snprintf(cand, sizeof cand, "%s/%s", exe, rel[i]) >= (int)sizeof cand) continue;
            char res[PATH_MAX];
            if (is_dir(cand) && realpath(cand, res)) {
                if (strlen(res) >= size) return df_error(DF_EINVAL, "registry_default_dir: buffer too small");
                strcpy(buf, res);
                return DF_OK;
            }
        }
    }
    Dl_info info;
    if (dladdr((void *)df_registry_default_dir, &info) && info.dli_fname) {
        char lib[PATH_MAX];
        snprintf(lib, sizeof lib, "%s", info.dli_fname);
        char *slash = strrchr(lib, '/');
        if (slash) {
            *slash = '\0';
            if (snprintf(cand, sizeof cand, "%s/difusa/samplers", lib) < (int)sizeof cand && is_dir(cand)) {
                if (strlen(cand) >= size) return df_error(DF_EINVAL, "registry_default_dir: buffer too small");
                strcpy(buf, cand);
                return DF_OK;
            }
        }
    }
    buf[0] = '\0';
    return df_error(DF_ENOTFOUND, "no samplers folder next to the executable (%s)", n > 0 ? exe : "unknown");
}

int df_registry_load_default(df_registry *r)
{
    if (!r) return df_error(DF_EINVAL, "registry_load_default: registry is NULL");
    char dir[PATH_MAX], msg[2048] = "";
    int last = DF_OK;
    if (df_registry_default_dir(dir, sizeof dir) == DF_OK) {
        int rc = df_registry_load(r, dir);
        if (rc) last = rc, snprintf(msg, sizeof msg, "%s", df_last_error());
    }
    const char *env = getenv("DIFUSA_PLUGIN_PATH");
    if (env) {
        const char *p = env;
        while (*p) {
            const char *colon = strchr(p, ':');
            size_t len = colon ? (size_t)(colon - p) : strlen(p);
            if (len > 0 && len < PATH_MAX) {
                char one[PATH_MAX];
                memcpy(one, p, len);
                one[len] = '\0';
                int rc = df_registry_load(r, one);
                if (rc) {
                    last = rc;
                    size_t at = strlen(msg);
                    snprintf(msg + at, sizeof msg - at, "%s%s", at ? "; " : "", df_last_error());
                }
            }
            p += len + (colon ? 1 : 0);
        }
    }
    if (last) return df_error(last, "%s", msg);
    return DF_OK;
}

/* ---- description ---- */

size_t df_sampler_describe(const df_sampler_info *s, char *buf, size_t size)
{
    static const char *const tnames[] = {"number", "integer", "bool", "choice"};
    size_t at = 0;
    char tmp[1024];
    if (!s) return 0;
    for (int i = 0; i < s->n_options; i++) {
        const df_sampler_option *o = &s->options[i];
        char def[128], range[160] = "";
        if (o->type == DF_OPT_CHOICE) {
            /* the default's name */
            int idx = (int)o->default_value, k = 0;
            const char *c = o->choices;
            while (k < idx && c && (c = strchr(c, '|'))) c++, k++;
            size_t l = c ? strcspn(c, "|") : 0;
            snprintf(def, sizeof def, "%.*s", (int)l, c ? c : "");
            snprintf(range, sizeof range, ": %s", o->choices);
        } else {
            snprintf(def, sizeof def, "%g", o->default_value);
            if (o->type != DF_OPT_BOOL) snprintf(range, sizeof range, " in [%g, %g]", o->min_value, o->max_value);
        }
        int n = snprintf(tmp, sizeof tmp, "  %s = %s  (%s%s) %s\n", o->name, def,
                         (unsigned)o->type < 4 ? tnames[o->type] : "?", range, o->help ? o->help : "");
        if (n < 0) continue;
        if (buf && at < size) snprintf(buf + at, size - at, "%s", tmp);
        at += (size_t)n;
    }
    if (buf && size && at == 0) buf[0] = '\0';
    return at;
}
