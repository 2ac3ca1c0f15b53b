/* libFuzzer: the checks the host makes on what a plugin registers (plugins/registry.c's register_sampler:
 * ABI version, struct size, name, option table: types, defaults, ranges, choices, duplicates), on sampler
 * descriptors built from the input, then --list-samplers' description of whatever was accepted. The
 * registry's source is included to reach its registrar, which only the loader builds. */
#include "../plugins/registry.c"

#include <stdint.h>

typedef struct {
    const uint8_t *p;
    size_t n;
} rd;

static unsigned u8(rd *r)
{
    if (!r->n) return 0;
    r->n--;
    return *r->p++;
}

static double num(rd *r)
{
    double d = 0;
    if (r->n >= sizeof d) {
        memcpy(&d, r->p, sizeof d);
        r->p += sizeof d, r->n -= sizeof d;
    }
    return d;
}

/* A NUL-terminated string of up to 80 bytes from the input, or NULL (kept in pool). */
static const char *str(rd *r, char *pool, size_t *used, size_t cap)
{
    unsigned len = u8(r);
    if (len == 255) return NULL;
    len %= 81;
    if (*used + len + 1 > cap) return "";
    char *s = pool + *used;
    for (unsigned i = 0; i < len; i++) s[i] = (char)u8(r);
    s[len] = '\0';
    *used += len + 1;
    return s;
}

static int dummy_sample(const df_host_api *h, df_sampler_run *run, void *user, df_tensor *x, const double *sigmas,
                        int n)
{
    (void)h, (void)run, (void)user, (void)x, (void)sigmas, (void)n;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    df_log_set_level(DF_LOG_ERROR);
    df_registry *reg = NULL;
    if (df_registry_new(&reg) != DF_OK) return 0;
    rd r = {data, size};
    char pool[8192];
    size_t used = 0;
    static df_sampler_option tables[4][70]; /* a plugin's option tables outlive registration: one each */
    df_sampler_desc descs[4];
    for (int k = 0; k < 4 && r.n; k++) {
        df_plugin_registrar g = {.reg = reg, .path = "fuzz.so", .plugin_name = "fuzz", .first = reg->n_entries};
        df_sampler_desc *d = &descs[k];
        df_sampler_option *opts = tables[k];
        memset(d, 0, sizeof *d);
        unsigned flags = u8(&r);
        d->abi_version = flags & 1 ? DF_PLUGIN_ABI_VERSION : (uint32_t)u8(&r) << 16 | u8(&r);
        d->struct_size = flags & 2 ? sizeof *d : u8(&r);
        d->name = str(&r, pool, &used, sizeof pool);
        d->description = str(&r, pool, &used, sizeof pool);
        d->flags = u8(&r);
        d->sample = flags & 4 ? NULL : dummy_sample;
        int n_opt = (int)(u8(&r) % 70) - 2;
        d->n_options = n_opt;
        d->options = flags & 8 ? NULL : opts;
        for (int i = 0; i < n_opt && i < 70; i++) {
            opts[i].name = str(&r, pool, &used, sizeof pool);
            opts[i].type = (int)u8(&r) % 6 - 1;
            opts[i].default_value = num(&r);
            opts[i].min_value = num(&r);
            opts[i].max_value = num(&r);
            opts[i].choices = str(&r, pool, &used, sizeof pool);
            opts[i].help = str(&r, pool, &used, sizeof pool);
        }
        (void)df_registry_register_sampler(&g, d);
        if (g.failed) { /* as the loader does: drop what this plugin staged */
            for (int i = g.first; i < reg->n_entries; i++) free_entry(&reg->entries[i]);
            reg->n_entries = g.first;
        }
        char buf[4096];
        for (int i = 0; i < df_registry_count(reg); i++) (void)df_sampler_describe(df_registry_get(reg, i), buf, sizeof buf);
    }
    df_registry_free(reg);
    df_clear_error();
    return 0;
}
