/* The host side of a sampler run: the host table's functions (tensor
 * arithmetic over core ops, the denoiser call, noise, the step hook, options,
 * logging) and df_sample, which sets up a run and calls the plugin.
 *
 * Arithmetic on host-memory f32 tensors is a direct loop; on other backends
 * it is composed from core ops (scale, binary) and the backend's copy, with
 * reductions done on a downloaded copy. */
#include "internal.h"

#include "backend.h"
#include "ops.h"
#include "sched/brownian.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OPTIONS 64

struct df_sampler_run {
    const df_sampler_entry *entry;
    const df_sample_params *p;
    double opt[MAX_OPTIONS];
    int64_t numel;
    df_brownian *tree;
    float *scratch; /* numel floats for host-side noise */
    char err[1024]; /* the sampler's own error message (host->error) */
};

static int force_generic;
void df_host_force_generic_ops(int on) { force_generic = on; }

/* ---- tensors ---- */

static df_tensor *h_new_like(const df_tensor *t)
{
    if (!t) {
        df_error(DF_EINVAL, "new_like: tensor is NULL");
        return NULL;
    }
    return df_tensor_new(df_tensor_backend(t), DF_F32, t->ndim, t->shape);
}

static void h_free(df_tensor *t) { df_tensor_free(t); }

static int64_t h_numel(const df_tensor *t) { return t ? df_tensor_numel(t) : 0; }

static int h_shape(const df_tensor *t, int64_t dims[4])
{
    if (!t) return 0;
    for (int i = 0; i < 4; i++) dims[i] = i < t->ndim ? t->shape[i] : 1;
    return t->ndim;
}

static int direct(const df_tensor *t) { return !force_generic && df_tensor_backend(t)->is_host; }

static int check_args(const char *op, int n, const df_tensor *const *ts)
{
    for (int i = 0; i < n; i++) {
        if (!ts[i]) return df_error(DF_EINVAL, "%s: tensor argument %d is NULL", op, i + 1);
        if (ts[i]->dtype != DF_F32)
            return df_error(DF_EDTYPE, "%s: tensor argument %d is %s, not F32", op, i + 1, df_dtype_name(ts[i]->dtype));
        if (i && !df_tensor_same_shape(ts[0], ts[i])) {
            char a[64], b[64];
            return df_error(DF_ESHAPE, "%s: shapes %s and %s differ", op, df_tensor_shape_str(ts[0], a, sizeof a),
                            df_tensor_shape_str(ts[i], b, sizeof b));
        }
        if (i && df_tensor_backend(ts[0]) != df_tensor_backend(ts[i]))
            return df_error(DF_EBACKEND, "%s: tensors on different backends (%s and %s)", op,
                            df_tensor_backend(ts[0])->name, df_tensor_backend(ts[i])->name);
    }
    return DF_OK;
}

#define F(t) ((float *)df_tensor_data(t))

/* dst <- src (same shape, same backend), generic path. */
static int backend_copy(df_tensor *dst, const df_tensor *src)
{
    if (dst == src) return DF_OK;
    df_backend *be = df_tensor_backend(dst);
    return be->copy_dim(be, src, 0, 0, 1, dst);
}

/* dst <- t and free t (generic path). */
static int take(df_tensor *dst, df_tensor *t, int rc)
{
    if (!rc) rc = backend_copy(dst, t);
    df_tensor_free(t);
    return rc;
}

static int h_copy(df_tensor *dst, const df_tensor *src)
{
    int rc = check_args("copy", 2, (const df_tensor *[]){dst, src});
    if (rc || dst == src) return rc;
    if (direct(dst)) {
        memcpy(F(dst), F(src), df_tensor_nbytes(dst));
        return DF_OK;
    }
    return backend_copy(dst, src);
}

static int h_fill(df_tensor *x, double v)
{
    int rc = check_args("fill", 1, (const df_tensor *[]){x});
    if (rc) return rc;
    return df_fill(x, (float)v);
}

static int h_scale(df_tensor *x, double a)
{
    int rc = check_args("scale", 1, (const df_tensor *[]){x});
    if (rc) return rc;
    if (direct(x)) {
        float *p = F(x), s = (float)a;
        int64_t n = df_tensor_numel(x);
        for (int64_t i = 0; i < n; i++) p[i] *= s;
        return DF_OK;
    }
    df_tensor *t = NULL;
    rc = df_scale(x, (float)a, 0, &t);
    return take(x, t, rc);
}

static int h_axpby(df_tensor *y, double a, const df_tensor *x, double b)
{
    int rc = check_args("axpby", 2, (const df_tensor *[]){y, x});
    if (rc) return rc;
    if (direct(y)) {
        float *py = F(y), fa = (float)a, fb = (float)b;
        const float *px = F(x);
        int64_t n = df_tensor_numel(y);
        if (b == 1)
            for (int64_t i = 0; i < n; i++) py[i] += fa * px[i];
        else
            for (int64_t i = 0; i < n; i++) py[i] = fa * px[i] + fb * py[i];
        return DF_OK;
    }
    df_tensor *ax = NULL, *by = NULL, *s = NULL;
    rc = df_scale(x, (float)a, 0, &ax);
    if (!rc) rc = b == 1 ? df_add(ax, y, &s) : df_scale(y, (float)b, 0, &by);
    if (!rc && !s) rc = df_add(ax, by, &s);
    df_tensor_free(ax);
    df_tensor_free(by);
    return take(y, s, rc);
}

static int h_axpy(df_tensor *y, double a, const df_tensor *x) { return h_axpby(y, a, x, 1); }

static int h_lincomb(df_tensor *out, int n, const double *c, const df_tensor *const *xs)
{
    if (n < 1 || n > 64 || !c || !xs) return df_error(DF_EINVAL, "lincomb: need 1 to 64 terms, got %d", n);
    const df_tensor *all[65];
    all[0] = out;
    for (int i = 0; i < n; i++) all[i + 1] = xs[i];
    int rc = check_args("lincomb", n + 1, all);
    if (rc) return rc;
    if (direct(out)) {
        int64_t m = df_tensor_numel(out);
        float *po = F(out);
        float fc[64];
        const float *px[64];
        for (int j = 0; j < n; j++) fc[j] = (float)c[j], px[j] = F(xs[j]);
        for (int64_t i = 0; i < m; i++) {
            float s = fc[0] * px[0][i];
            for (int j = 1; j < n; j++) s += fc[j] * px[j][i];
            po[i] = s;
        }
        return DF_OK;
    }
    df_tensor *acc = NULL;
    rc = df_scale(xs[0], (float)c[0], 0, &acc);
    for (int j = 1; j < n && !rc; j++) {
        df_tensor *t = NULL, *s = NULL;
        rc = df_scale(xs[j], (float)c[j], 0, &t);
        if (!rc) rc = df_add(acc, t, &s);
        df_tensor_free(t);
        df_tensor_free(acc);
        acc = s;
    }
    return take(out, acc, rc);
}

static int h_mul(df_tensor *out, const df_tensor *a, const df_tensor *b)
{
    int rc = check_args("mul", 3, (const df_tensor *[]){out, a, b});
    if (rc) return rc;
    if (direct(out)) {
        float *po = F(out);
        const float *pa = F(a), *pb = F(b);
        int64_t n = df_tensor_numel(out);
        for (int64_t i = 0; i < n; i++) po[i] = pa[i] * pb[i];
        return DF_OK;
    }
    df_tensor *t = NULL;
    rc = df_mul(a, b, &t);
    return take(out, t, rc);
}

/* A host copy of t's data (direct: the data itself, *owned = NULL). */
static const float *host_view(const df_tensor *t, float **owned)
{
    *owned = NULL;
    if (direct(t)) return F(t);
    float *h = df_malloc(df_tensor_nbytes(t));
    if (!h) return NULL;
    if (df_tensor_read(t, h, df_tensor_nbytes(t))) {
        df_free(h);
        return NULL;
    }
    *owned = h;
    return h;
}

static int h_sum_squares(const df_tensor *x, int per_item, double *out)
{
    int rc = check_args("sum_squares", 1, (const df_tensor *[]){x});
    if (rc) return rc;
    if (!out) return df_error(DF_EINVAL, "sum_squares: 'out' is NULL");
    float *own;
    const float *p = host_view(x, &own);
    if (!p) return DF_ENOMEM;
    int64_t n = df_tensor_numel(x), items = per_item && x->ndim ? x->shape[0] : 1, per = items ? n / items : 0;
    for (int64_t b = 0; b < items; b++) {
        double s = 0;
        for (int64_t i = 0; i < per; i++) s += (double)p[b * per + i] * p[b * per + i];
        out[b] = s;
    }
    df_free(own);
    return DF_OK;
}

static int h_error_norm(const df_tensor *a, const df_tensor *b, const df_tensor *c, const df_tensor *d, double atol,
                        double rtol, int use_max, double *out)
{
    int rc = d ? check_args("error_norm", 4, (const df_tensor *[]){a, b, c, d})
               : check_args("error_norm", 3, (const df_tensor *[]){a, b, c});
    if (rc) return rc;
    if (!out) return df_error(DF_EINVAL, "error_norm: 'out' is NULL");
    float *oa, *ob, *oc, *od = NULL;
    const float *pa = host_view(a, &oa), *pb = host_view(b, &ob), *pc = host_view(c, &oc);
    const float *pd = d ? host_view(d, &od) : NULL;
    if (!pa || !pb || !pc || (d && !pd)) rc = DF_ENOMEM;
    else {
        int64_t n = df_tensor_numel(a);
        double s = 0;
        for (int64_t i = 0; i < n; i++) {
            double m = fabs(pc[i]);
            if (pd && fabs(pd[i]) > m) m = fabs(pd[i]);
            double tol = use_max ? fmax(atol, rtol * m) : atol + rtol * m;
            double e = ((double)pa[i] - pb[i]) / tol;
            s += e * e;
        }
        *out = n ? sqrt(s / n) : 0;
    }
    df_free(oa);
    df_free(ob);
    df_free(oc);
    df_free(od);
    return rc;
}

/* ---- the run ---- */

static int h_denoise(df_sampler_run *run, const df_tensor *x, double sigma, df_tensor *out)
{
    if (!run) return df_error(DF_EINVAL, "denoise: run is NULL");
    int rc = check_args("denoise", 2, (const df_tensor *[]){out, x});
    if (rc) return rc;
    if (!(sigma >= 0) || !isfinite(sigma)) return df_error(DF_EINVAL, "denoise: sigma %g is not a noise level", sigma);
    df_tensor *y = NULL;
    rc = df_denoiser_call(run->p->denoiser, x, sigma, &y);
    if (rc) return rc;
    rc = direct(out) ? (memcpy(F(out), F(y), df_tensor_nbytes(out)), DF_OK) : backend_copy(out, y);
    df_tensor_free(y);
    return rc;
}

static int upload_scratch(df_sampler_run *run, df_tensor *out)
{
    if (direct(out)) {
        memcpy(F(out), run->scratch, df_tensor_nbytes(out));
        return DF_OK;
    }
    return df_tensor_write(out, run->scratch, df_tensor_nbytes(out));
}

static int check_noise_out(df_sampler_run *run, const char *op, df_tensor *out)
{
    if (!run) return df_error(DF_EINVAL, "%s: run is NULL", op);
    int rc = check_args(op, 1, (const df_tensor *[]){out});
    if (rc) return rc;
    if (df_tensor_numel(out) != run->numel)
        return df_error(DF_ESHAPE, "%s: the tensor has %lld values, the run's sample %lld", op,
                        (long long)df_tensor_numel(out), (long long)run->numel);
    return DF_OK;
}

static int h_randn(df_sampler_run *run, df_tensor *out)
{
    int rc = check_noise_out(run, "randn", out);
    if (rc) return rc;
    if (run->p->noise_fn) return run->p->noise_fn(run->p->noise_user, out, NAN, NAN, 0);
    if (!run->p->rng) return df_error(DF_EINVAL, "randn: the run has no generator (df_sample_params.rng)");
    return df_rng_randn_tensor(run->p->rng, out);
}

/* The Brownian tree, created on first use. */
static int ensure_tree(df_sampler_run *run)
{
    if (run->tree) return DF_OK;
    const df_sample_params *p = run->p;
    uint64_t seed = p->brownian_seed;
    if (!p->brownian_seed_set) {
        if (!p->rng) return df_error(DF_EINVAL, "noise: the run has no generator (df_sample_params.rng)");
        float v[2];
        int rc = df_rng_randn(p->rng, v, 2);
        if (rc) return rc;
        uint32_t a, b;
        memcpy(&a, &v[0], 4);
        memcpy(&b, &v[1], 4);
        seed = ((uint64_t)a << 32) | b;
    }
    double t1 = p->brownian_t1;
    if (!(t1 > 0))
        for (int i = 0; i < p->n_sigmas; i++)
            if (p->sigmas[i] > t1) t1 = p->sigmas[i];
    if (!(t1 > 0)) t1 = 1;
    return df_brownian_new(seed, 0, t1, run->numel, &run->tree);
}

static int h_noise(df_sampler_run *run, df_tensor *out, double sigma, double sigma_next)
{
    int rc = check_noise_out(run, "noise", out);
    if (rc) return rc;
    if (!isfinite(sigma) || !isfinite(sigma_next) || sigma < 0 || sigma_next < 0)
        return df_error(DF_EINVAL, "noise: interval %g -> %g is not a pair of noise levels", sigma, sigma_next);
    if (run->p->noise_fn) return run->p->noise_fn(run->p->noise_user, out, sigma, sigma_next, 1);
    if ((rc = ensure_tree(run))) return rc;
    if ((rc = df_brownian_increment(run->tree, sigma, sigma_next, run->scratch))) return rc;
    return upload_scratch(run, out);
}

/* x = t + mask·(x − t), t = init + σ_next·noise. */
static int mask_blend(df_sampler_run *run, df_tensor *x, double sigma_next)
{
    const df_sample_params *p = run->p;
    df_tensor *t = h_new_like(x);
    if (!t) return DF_ENOMEM;
    int rc = p->noise ? h_lincomb(t, 2, (double[]){1, sigma_next}, (const df_tensor *[]){p->init, p->noise})
                      : h_copy(t, p->init);
    if (!rc) rc = h_axpy(x, -1, t);
    if (!rc) rc = h_mul(x, x, p->mask);
    if (!rc) rc = h_axpy(x, 1, t);
    df_tensor_free(t);
    return rc;
}

static int h_step(df_sampler_run *run, int i, int n_steps, double sigma, double sigma_next, df_tensor *x,
                  const df_tensor *denoised)
{
    if (!run) return df_error(DF_EINVAL, "step: run is NULL");
    int rc = check_args("step", 1, (const df_tensor *[]){x});
    if (rc) return rc;
    if (run->p->mask && (rc = mask_blend(run, x, sigma_next))) return rc;
    if (run->p->on_step) {
        df_clear_error();
        rc = run->p->on_step(run->p->step_user, i, n_steps, sigma, sigma_next, x, denoised);
        if (rc && !df_last_error()[0]) df_error(rc, "stopped by the step callback at step %d", i);
    }
    return rc;
}

static int option_index(const df_sampler_entry *e, const char *name, size_t len)
{
    for (int i = 0; i < e->info.n_options; i++)
        if (strlen(e->info.options[i].name) == len && !strncmp(e->info.options[i].name, name, len)) return i;
    return -1;
}

static double h_option(df_sampler_run *run, const char *name)
{
    if (!run || !name) {
        df_error(DF_EINVAL, "option: NULL argument");
        return NAN;
    }
    int i = option_index(run->entry, name, strlen(name));
    if (i < 0) {
        df_error(DF_EINVAL, "sampler %s has no option '%s'", run->entry->info.name, name);
        return NAN;
    }
    return run->opt[i];
}

/* ---- the run's model (ABI 1.1) ---- */

static const df_noise_schedule *run_schedule(df_sampler_run *run, const char *op)
{
    if (!run) {
        df_error(DF_EINVAL, "%s: run is NULL", op);
        return NULL;
    }
    const df_noise_schedule *s = run->p->denoiser->schedule;
    if (!s || s->n < 2)
        df_error(DF_EINVAL, "%s: the run's denoiser has no discrete training schedule (sampler %s needs the model's "
                 "timesteps)", op, run->entry->info.name);
    return s && s->n >= 2 ? s : NULL;
}

static double h_sigma_to_t(df_sampler_run *run, double sigma)
{
    const df_noise_schedule *s = run_schedule(run, "sigma_to_t");
    if (!s) return NAN;
    if (!(sigma >= 0) || !isfinite(sigma)) {
        df_error(DF_EINVAL, "sigma_to_t: sigma %g is not a noise level", sigma);
        return NAN;
    }
    return sigma > 0 ? df_noise_schedule_sigma_to_t(s, sigma) : 0;
}

static double h_t_to_sigma(df_sampler_run *run, double t)
{
    const df_noise_schedule *s = run_schedule(run, "t_to_sigma");
    if (!s) return NAN;
    if (isnan(t)) {
        df_error(DF_EINVAL, "t_to_sigma: the timestep is NaN");
        return NAN;
    }
    return df_noise_schedule_t_to_sigma(s, t);
}

static int h_denoised_uncond(df_sampler_run *run, df_tensor *out)
{
    if (!run) return df_error(DF_EINVAL, "denoised_uncond: run is NULL");
    int rc = check_args("denoised_uncond", 1, (const df_tensor *[]){out});
    if (rc) return rc;
    const df_denoiser *d = run->p->denoiser;
    if (!d->uncond)
        return df_error(DF_EINVAL, "denoised_uncond: the run's denoiser has no classifier-free guidance (sampler %s "
                        "needs its unconditional prediction)", run->entry->info.name);
    df_tensor *u = NULL;
    df_clear_error();
    rc = d->uncond(d->user, &u);
    if (!rc && !u) rc = df_error(DF_EINVAL, "denoised_uncond: the denoiser returned no tensor");
    if (!rc && (!df_tensor_same_shape(u, out) || u->dtype != DF_F32)) {
        char a[64], b[64];
        rc = df_error(DF_ESHAPE, "denoised_uncond: the denoiser's unconditional estimate is %s, the sample %s",
                      df_tensor_shape_str(u, a, sizeof a), df_tensor_shape_str(out, b, sizeof b));
    }
    if (!rc && df_tensor_backend(u) != df_tensor_backend(out))
        rc = df_error(DF_EBACKEND, "denoised_uncond: the estimate is on %s, the sample on %s",
                      df_tensor_backend(u)->name, df_tensor_backend(out)->name);
    if (!rc) rc = direct(out) ? (memcpy(F(out), F(u), df_tensor_nbytes(out)), DF_OK) : backend_copy(out, u);
    if (rc && !df_last_error()[0]) df_error(rc, "denoised_uncond failed (%s)", df_status_name(rc));
    df_tensor_free(u);
    return rc;
}

_Static_assert(DF_PLUGIN_LOG_ERROR == (int)DF_LOG_ERROR && DF_PLUGIN_LOG_WARN == (int)DF_LOG_WARN &&
                   DF_PLUGIN_LOG_INFO == (int)DF_LOG_INFO && DF_PLUGIN_LOG_DEBUG == (int)DF_LOG_DEBUG,
               "plugin log levels out of step with df_log_level");

/* The run's log_fn when it has one, else the library's log (df_log: stderr
 * or the host's df_log_set_handler), prefixed with the sampler's name. */
static void h_log(df_sampler_run *run, int level, const char *fmt, ...)
{
    if (!run || !fmt) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (run->p->log_fn) {
        run->p->log_fn(run->p->log_user, level, msg);
        return;
    }
    if (level < DF_PLUGIN_LOG_ERROR) level = DF_PLUGIN_LOG_ERROR;
    if (level > DF_PLUGIN_LOG_DEBUG) level = DF_PLUGIN_LOG_DEBUG;
    df_log((df_log_level)level, "sampler %s: %s", run->entry->info.name, msg);
}

static int h_error(df_sampler_run *run, int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt ? fmt : "error", ap);
    va_end(ap);
    if (run) snprintf(run->err, sizeof run->err, "%s", msg);
    return df_error(code < 0 ? code : DF_EINVAL, "%s", msg);
}

static const df_host_api host_api = {
    .abi_version = DF_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(df_host_api),
    .register_sampler = df_registry_register_sampler,
    .new_like = h_new_like,
    .free = h_free,
    .numel = h_numel,
    .shape = h_shape,
    .copy = h_copy,
    .fill = h_fill,
    .scale = h_scale,
    .axpy = h_axpy,
    .axpby = h_axpby,
    .lincomb = h_lincomb,
    .mul = h_mul,
    .sum_squares = h_sum_squares,
    .error_norm = h_error_norm,
    .denoise = h_denoise,
    .randn = h_randn,
    .noise = h_noise,
    .step = h_step,
    .option = h_option,
    .log = h_log,
    .error = h_error,
    .sigma_to_t = h_sigma_to_t,
    .t_to_sigma = h_t_to_sigma,
    .denoised_uncond = h_denoised_uncond,
};

const df_host_api *df_host_api_table(void) { return &host_api; }

/* ---- options ---- */

/* Parses "a=1 b=heun, c=0.5" against the sampler's declared options. */
static int parse_options(const df_sampler_entry *e, const char *s, double *vals)
{
    const char *sname = e->info.name;
    for (int i = 0; i < e->info.n_options; i++) vals[i] = e->info.options[i].default_value;
    if (!s) return DF_OK;
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == ',' || *p == '\t') p++;
        if (!*p) break;
        const char *k = p;
        while (*p && *p != '=' && *p != ' ' && *p != ',') p++;
        size_t klen = (size_t)(p - k);
        if (*p != '=')
            return df_error(DF_EINVAL, "sampler %s: option '%.*s' needs a value (name=value)", sname, (int)klen, k);
        p++;
        const char *v = p;
        while (*p && *p != ' ' && *p != ',' && *p != '\t') p++;
        size_t vlen = (size_t)(p - v);
        char val[128];
        if (vlen == 0 || vlen >= sizeof val)
            return df_error(DF_EINVAL, "sampler %s: option '%.*s' has no usable value", sname, (int)klen, k);
        memcpy(val, v, vlen);
        val[vlen] = '\0';
        int i = option_index(e, k, klen);
        if (i < 0) {
            char known[512] = "";
            size_t at = 0;
            for (int j = 0; j < e->info.n_options && at < sizeof known; j++)
                at += (size_t)snprintf(known + at, sizeof known - at, "%s%s", j ? ", " : "", e->info.options[j].name);
            return df_error(DF_EINVAL, "sampler %s has no option '%.*s' (its options: %s)", sname, (int)klen, k,
                            e->info.n_options ? known : "none");
        }
        const df_sampler_option *o = &e->info.options[i];
        double d;
        char *end = NULL;
        if (o->type == DF_OPT_CHOICE) {
            int idx = -1, at = 0;
            for (const char *c = o->choices; c && *c; at++) {
                const char *bar = strchr(c, '|');
                size_t cl = bar ? (size_t)(bar - c) : strlen(c);
                if (cl == vlen && !strncmp(c, val, vlen)) idx = at;
                c = bar ? bar + 1 : c + cl;
            }
            if (idx < 0) {
                long li = strtol(val, &end, 10);
                if (*end || li < 0 || li >= at)
                    return df_error(DF_EINVAL, "sampler %s: option %s is one of %s, got '%s'", sname, o->name,
                                    o->choices, val);
                idx = (int)li;
            }
            vals[i] = idx;
            continue;
        }
        if (o->type == DF_OPT_BOOL && (!strcmp(val, "true") || !strcmp(val, "false")))
            d = val[0] == 't';
        else {
            d = strtod(val, &end);
            if (*end || isnan(d))
                return df_error(DF_EINVAL, "sampler %s: option %s needs a number, got '%s'", sname, o->name, val);
        }
        if (o->type == DF_OPT_INT && d != floor(d))
            return df_error(DF_EINVAL, "sampler %s: option %s needs an integer, got '%s'", sname, o->name, val);
        if (o->type == DF_OPT_BOOL && d != 0 && d != 1)
            return df_error(DF_EINVAL, "sampler %s: option %s is 0 or 1, got '%s'", sname, o->name, val);
        if (d < o->min_value || d > o->max_value)
            return df_error(DF_EINVAL, "sampler %s: option %s = %s is outside [%g, %g]", sname, o->name, val,
                            o->min_value, o->max_value);
        vals[i] = d;
    }
    return DF_OK;
}

/* ---- df_sample ---- */

df_sample_params df_sample_default_params(void)
{
    df_sample_params p;
    memset(&p, 0, sizeof p);
    return p;
}

static int check_params(const df_sampler_entry *e, const df_sample_params *p, const df_tensor *x)
{
    const char *n = e->info.name;
    if (!p->denoiser || !p->denoiser->denoise) return df_error(DF_EINVAL, "sampler %s: no denoiser", n);
    if (!p->sigmas || p->n_sigmas < 2)
        return df_error(DF_EINVAL, "sampler %s: need at least 2 sigmas, got %d", n, p->sigmas ? p->n_sigmas : 0);
    for (int i = 0; i < p->n_sigmas; i++) {
        if (!(p->sigmas[i] >= 0) || !isfinite(p->sigmas[i]))
            return df_error(DF_EINVAL, "sampler %s: sigmas[%d] = %g is not a noise level", n, i, p->sigmas[i]);
        if (i && p->sigmas[i] > p->sigmas[i - 1])
            return df_error(DF_EINVAL, "sampler %s: sigmas must not increase (sigmas[%d] = %g > sigmas[%d] = %g)", n,
                            i, p->sigmas[i], i - 1, p->sigmas[i - 1]);
    }
    if (!(p->sigmas[0] > 0)) return df_error(DF_EINVAL, "sampler %s: sigmas[0] must be > 0", n);
    if (!x) return df_error(DF_EINVAL, "sampler %s: x is NULL", n);
    if (x->dtype != DF_F32) return df_error(DF_EDTYPE, "sampler %s: x must be F32, got %s", n, df_dtype_name(x->dtype));
    if (!!p->mask != !!p->init) return df_error(DF_EINVAL, "sampler %s: mask and init go together", n);
    const df_tensor *extra[3] = {p->mask, p->init, p->noise};
    const char *names[3] = {"mask", "init", "noise"};
    for (int i = 0; i < 3; i++) {
        if (!extra[i]) continue;
        char a[64], b[64];
        if (extra[i]->dtype != DF_F32 || !df_tensor_same_shape(extra[i], x) ||
            df_tensor_backend(extra[i]) != df_tensor_backend(x))
            return df_error(DF_ESHAPE, "sampler %s: %s must be an F32 %s on %s like x, got %s %s on %s", n, names[i],
                            df_tensor_shape_str(x, a, sizeof a), df_tensor_backend(x)->name,
                            df_dtype_name(extra[i]->dtype), df_tensor_shape_str(extra[i], b, sizeof b),
                            df_tensor_backend(extra[i])->name);
    }
    return DF_OK;
}

int df_sample(const df_registry *r, const char *name, const df_sample_params *p, df_tensor *x)
{
    if (!r || !name || !p) return df_error(DF_EINVAL, "df_sample: registry, name and params are required");
    const df_sampler_info *info = df_registry_find(r, name);
    if (!info) return df_error(DF_ENOTFOUND, "no sampler named '%s' (%d registered)", name, df_registry_count(r));
    const df_sampler_entry *e = (const df_sampler_entry *)info; /* info is the entry's first member */
    int rc = check_params(e, p, x);
    if (rc) return rc;
    if (e->info.n_options > MAX_OPTIONS)
        return df_error(DF_EINVAL, "sampler %s declares %d options (at most %d)", name, e->info.n_options, MAX_OPTIONS);
    df_sampler_run run;
    memset(&run, 0, sizeof run);
    run.entry = e;
    run.p = p;
    run.numel = df_tensor_numel(x);
    if ((rc = parse_options(e, p->options, run.opt))) return rc;
    run.scratch = df_malloc((size_t)(run.numel ? run.numel : 1) * sizeof(float));
    if (!run.scratch) return DF_ENOMEM;
    df_clear_error();
    rc = e->sample(&host_api, &run, e->user, x, p->sigmas, p->n_sigmas);
    if (rc) {
        if (rc > 0) rc = DF_EINVAL;
        if (!df_last_error()[0]) df_error(rc, "failed (%s)", df_status_name(rc));
        df_error_prefix(rc, "sampler %s", name);
    }
    df_brownian_free(run.tree);
    df_free(run.scratch);
    return rc;
}

int df_sample_start(const df_tensor *init, const df_tensor *noise, double sigma, int max_denoise, df_tensor **out)
{
    if (!out) return df_error(DF_EINVAL, "sample_start: 'out' is NULL");
    *out = NULL;
    if (!noise) return df_error(DF_EINVAL, "sample_start: 'noise' is NULL");
    if (!(sigma >= 0) || !isfinite(sigma)) return df_error(DF_EINVAL, "sample_start: sigma %g is not a noise level", sigma);
    double s = max_denoise ? sqrt(1 + sigma * sigma) : sigma;
    df_tensor *n = NULL;
    int rc = df_scale(noise, (float)s, 0, &n);
    if (rc || !init) {
        *out = n;
        return rc;
    }
    rc = df_add(init, n, out);
    df_tensor_free(n);
    return rc;
}
