/* Training schedules (betas -> ᾱ -> σ) and step schedules (the sigmas a
 * sampler visits). Formulas follow the references named in schedule.h; each
 * function says which one it reproduces. */
#include "schedule.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* ---- training schedules ---- */

static const char *const beta_names[DF_BETA_KIND_COUNT] = {
    [DF_BETA_LINEAR] = "linear",
    [DF_BETA_SCALED_LINEAR] = "scaled_linear",
    [DF_BETA_SQUAREDCOS_CAP_V2] = "squaredcos_cap_v2",
};

int df_beta_kind_from_name(const char *name)
{
    if (!name) return -1;
    for (int i = 0; i < DF_BETA_KIND_COUNT; i++)
        if (!strcmp(name, beta_names[i])) return i;
    return -1;
}

const char *df_beta_kind_name(int kind) { return (unsigned)kind < DF_BETA_KIND_COUNT ? beta_names[kind] : "?"; }

df_train_schedule_params df_train_schedule_default_params(void)
{
    return (df_train_schedule_params){DF_BETA_SCALED_LINEAR, 1000, 0.00085, 0.012, 0};
}

static df_noise_schedule *schedule_alloc(int n)
{
    df_noise_schedule *s = df_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->n = n;
    s->betas = df_calloc((size_t)n, sizeof(double));
    s->alphas_cumprod = df_calloc((size_t)n, sizeof(double));
    s->sigmas = df_calloc((size_t)n, sizeof(double));
    s->log_sigmas = df_calloc((size_t)n, sizeof(double));
    if (!s->betas || !s->alphas_cumprod || !s->sigmas || !s->log_sigmas) {
        df_noise_schedule_free(s);
        return NULL;
    }
    return s;
}

void df_noise_schedule_free(df_noise_schedule *s)
{
    if (!s) return;
    df_free(s->betas);
    df_free(s->alphas_cumprod);
    df_free(s->sigmas);
    df_free(s->log_sigmas);
    df_free(s);
}

/* σ and log σ from ᾱ; ᾱ = 0 (zero terminal SNR) is taken as 2^-24. */
static void fill_sigmas(df_noise_schedule *s)
{
    for (int i = 0; i < s->n; i++) {
        double ac = s->alphas_cumprod[i] > 0 ? s->alphas_cumprod[i] : ldexp(1.0, -24);
        s->sigmas[i] = sqrt((1 - ac) / ac);
        s->log_sigmas[i] = log(s->sigmas[i]);
    }
}

static double cos_alpha_bar(double t)
{
    double c = cos((t + 0.008) / 1.008 * M_PI / 2);
    return c * c;
}

int df_noise_schedule_new(const df_train_schedule_params *p, df_noise_schedule **out)
{
    if (!out) return df_error(DF_EINVAL, "noise schedule: 'out' is NULL");
    *out = NULL;
    df_train_schedule_params dp = df_train_schedule_default_params();
    if (!p) p = &dp;
    if (p->num_timesteps < 2 || p->num_timesteps > 1000000)
        return df_error(DF_EINVAL, "noise schedule: num_timesteps %d must be in [2, 1000000]", p->num_timesteps);
    if ((unsigned)p->kind >= DF_BETA_KIND_COUNT)
        return df_error(DF_EINVAL, "noise schedule: unknown beta schedule kind %d", p->kind);
    if (p->kind != DF_BETA_SQUAREDCOS_CAP_V2 &&
        !(p->beta_start > 0 && p->beta_end > 0 && p->beta_start < 1 && p->beta_end < 1))
        return df_error(DF_EINVAL, "noise schedule: beta_start %g and beta_end %g must be in (0, 1)", p->beta_start,
                        p->beta_end);
    int n = p->num_timesteps;
    df_noise_schedule *s = schedule_alloc(n);
    if (!s) return DF_ENOMEM;
    for (int i = 0; i < n; i++) {
        double f = (double)i / (n - 1);
        switch (p->kind) {
        case DF_BETA_LINEAR: s->betas[i] = p->beta_start + f * (p->beta_end - p->beta_start); break;
        case DF_BETA_SCALED_LINEAR: {
            double r = sqrt(p->beta_start) + f * (sqrt(p->beta_end) - sqrt(p->beta_start));
            s->betas[i] = r * r;
            break;
        }
        default: {
            double b = 1 - cos_alpha_bar((double)(i + 1) / n) / cos_alpha_bar((double)i / n);
            s->betas[i] = b < 0.999 ? b : 0.999;
        }
        }
    }
    double ac = 1;
    for (int i = 0; i < n; i++) s->alphas_cumprod[i] = ac *= 1 - s->betas[i];
    if (p->rescale_zero_terminal_snr) {
        /* Lin et al. 2023, Algorithm 1, on √ᾱ: shift the last to 0, keep the first. */
        double a0 = sqrt(s->alphas_cumprod[0]), aT = sqrt(s->alphas_cumprod[n - 1]);
        for (int i = 0; i < n; i++) {
            double a = (sqrt(s->alphas_cumprod[i]) - aT) * (a0 / (a0 - aT));
            s->alphas_cumprod[i] = a * a;
        }
        s->alphas_cumprod[n - 1] = 0;
        for (int i = 0; i < n; i++)
            s->betas[i] = 1 - (i ? s->alphas_cumprod[i] / s->alphas_cumprod[i - 1] : s->alphas_cumprod[0]);
    }
    fill_sigmas(s);
    *out = s;
    return DF_OK;
}

int df_noise_schedule_from_alphas_cumprod(const double *ac, int n, df_noise_schedule **out)
{
    if (!out) return df_error(DF_EINVAL, "noise schedule: 'out' is NULL");
    *out = NULL;
    if (!ac || n < 2) return df_error(DF_EINVAL, "noise schedule: need at least 2 alphas_cumprod, got %d", n);
    for (int i = 0; i < n; i++)
        if (!(ac[i] >= 0 && ac[i] <= 1) || (i && ac[i] > ac[i - 1]) || (i < n - 1 && ac[i] == 0))
            return df_error(DF_EINVAL,
                            "noise schedule: alphas_cumprod[%d] = %g: values must decrease in (0, 1] "
                            "(only the last may be 0)",
                            i, ac[i]);
    df_noise_schedule *s = schedule_alloc(n);
    if (!s) return DF_ENOMEM;
    for (int i = 0; i < n; i++) {
        s->alphas_cumprod[i] = ac[i];
        s->betas[i] = 1 - (i ? ac[i] / ac[i - 1] : ac[0]);
    }
    fill_sigmas(s);
    *out = s;
    return DF_OK;
}

double df_noise_schedule_sigma_min(const df_noise_schedule *s) { return s->sigmas[0]; }
double df_noise_schedule_sigma_max(const df_noise_schedule *s) { return s->sigmas[s->n - 1]; }

double df_noise_schedule_t_to_sigma(const df_noise_schedule *s, double t)
{
    if (!(t > 0)) t = 0; /* NaN too */
    if (t > s->n - 1) t = s->n - 1;
    int lo = (int)floor(t), hi = (int)ceil(t);
    double w = t - lo;
    return exp((1 - w) * s->log_sigmas[lo] + w * s->log_sigmas[hi]);
}

double df_noise_schedule_sigma_to_t(const df_noise_schedule *s, double sigma)
{
    double ls = log(sigma);
    /* the last i with log σ >= log_sigmas[i], at most n-2 (k-diffusion's sigma_to_t) */
    int lo = 0;
    for (int i = 0; i < s->n; i++)
        if (ls >= s->log_sigmas[i]) lo = i;
    if (lo > s->n - 2) lo = s->n - 2;
    double l = s->log_sigmas[lo], h = s->log_sigmas[lo + 1];
    double w = (l - ls) / (l - h);
    if (!(w > 0)) w = 0;
    if (w > 1) w = 1;
    return (1 - w) * lo + w * (lo + 1);
}

/* ---- the incomplete beta function (for the "beta" step schedule) ---- */

/* Continued fraction for I_x(a, b) (modified Lentz). */
static double betacf(double a, double b, double x)
{
    const double tiny = 1e-300;
    double qab = a + b, qap = a + 1, qam = a - 1, c = 1, d = 1 - qab * x / qap;
    if (fabs(d) < tiny) d = tiny;
    d = 1 / d;
    double h = d;
    for (int m = 1; m <= 1000; m++) {
        int m2 = 2 * m;
        double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1 + aa * d;
        if (fabs(d) < tiny) d = tiny;
        c = 1 + aa / c;
        if (fabs(c) < tiny) c = tiny;
        d = 1 / d;
        h *= d * c;
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1 + aa * d;
        if (fabs(d) < tiny) d = tiny;
        c = 1 + aa / c;
        if (fabs(c) < tiny) c = tiny;
        d = 1 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1) < 1e-16) break;
    }
    return h;
}

double df_betainc(double a, double b, double x)
{
    if (!(a > 0 && b > 0) || isnan(x)) return NAN;
    if (x <= 0) return 0;
    if (x >= 1) return 1;
    double lbt = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x);
    if (x < (a + 1) / (a + b + 2)) return exp(lbt) * betacf(a, b, x) / a;
    return 1 - exp(lbt) * betacf(b, a, 1 - x) / b;
}

double df_betaincinv(double a, double b, double p)
{
    if (!(a > 0 && b > 0) || !(p >= 0 && p <= 1)) return NAN;
    if (p == 0) return 0;
    if (p == 1) return 1;
    /* a symmetric distribution: solve on the lower half, so ppf(0.5) is 0.5
     * exactly and ppf(1 - p) = 1 - ppf(p) (rounding ties then agree with scipy) */
    if (a == b && p > 0.5) return 1 - df_betaincinv(a, b, 1 - p);
    if (a == b && p == 0.5) return 0.5;
    /* Bisection to the last bit: I_x is monotone, and 200 halvings of [0, 1]
     * reach every double in (0, 1). */
    double lo = 0, hi = 1;
    for (int i = 0; i < 200; i++) {
        double mid = 0.5 * (lo + hi);
        if (mid <= lo || mid >= hi) break;
        if (df_betainc(a, b, mid) < p) lo = mid;
        else hi = mid;
    }
    return 0.5 * (lo + hi);
}

/* ---- step schedules ---- */

static const char *const sigmas_names[DF_SIGMAS_KIND_COUNT] = {
    [DF_SIGMAS_NORMAL] = "normal",
    [DF_SIGMAS_KARRAS] = "karras",
    [DF_SIGMAS_EXPONENTIAL] = "exponential",
    [DF_SIGMAS_POLYEXPONENTIAL] = "polyexponential",
    [DF_SIGMAS_SIMPLE] = "simple",
    [DF_SIGMAS_SGM_UNIFORM] = "sgm_uniform",
    [DF_SIGMAS_DDIM_UNIFORM] = "ddim_uniform",
    [DF_SIGMAS_BETA] = "beta",
    [DF_SIGMAS_KL_OPTIMAL] = "kl_optimal",
    [DF_SIGMAS_AYS_SD15] = "ays_sd15",
    [DF_SIGMAS_AYS_SDXL] = "ays_sdxl",
    [DF_SIGMAS_LEADING] = "leading",
    [DF_SIGMAS_TRAILING] = "trailing",
    [DF_SIGMAS_LINSPACE] = "linspace",
    [DF_SIGMAS_VP] = "vp",
    [DF_SIGMAS_LINEAR_QUADRATIC] = "linear_quadratic",
};
_Static_assert(sizeof sigmas_names / sizeof sigmas_names[0] == DF_SIGMAS_KIND_COUNT, "sigmas name table out of step");

int df_sigmas_kind_from_name(const char *name)
{
    if (!name) return -1;
    if (!strcmp(name, "discrete")) return DF_SIGMAS_NORMAL;
    if (!strcmp(name, "ays")) return DF_SIGMAS_AYS_SD15;
    for (int i = 0; i < DF_SIGMAS_KIND_COUNT; i++)
        if (!strcmp(name, sigmas_names[i])) return i;
    return -1;
}

const char *df_sigmas_kind_name(int kind) { return (unsigned)kind < DF_SIGMAS_KIND_COUNT ? sigmas_names[kind] : "?"; }

int df_sigmas_kind_needs_schedule(int kind)
{
    switch (kind) {
    case DF_SIGMAS_NORMAL:
    case DF_SIGMAS_SIMPLE:
    case DF_SIGMAS_SGM_UNIFORM:
    case DF_SIGMAS_DDIM_UNIFORM:
    case DF_SIGMAS_BETA:
    case DF_SIGMAS_LEADING:
    case DF_SIGMAS_TRAILING:
    case DF_SIGMAS_LINSPACE: return 1;
    default: return 0;
    }
}

df_sigmas_params df_sigmas_default_params(void)
{
    df_sigmas_params p;
    memset(&p, 0, sizeof p);
    p.kind = DF_SIGMAS_KARRAS;
    p.steps = 20;
    p.alpha = p.beta = 0.6;
    p.steps_offset = 0;
    p.beta_d = 19.9;
    p.beta_min = 0.1;
    p.eps_s = 1e-3;
    p.threshold_noise = 0.025;
    return p;
}

void df_sigmas_free(double *sigmas) { df_free(sigmas); }

static int range_ok(const char *what, double smin, double smax)
{
    if (!(smin > 0 && smax > smin && isfinite(smax)))
        return df_error(DF_EINVAL, "%s schedule: need 0 < sigma_min < sigma_max, got %g and %g", what, smin, smax);
    return DF_OK;
}

/* k-diffusion get_sigmas_karras. */
int df_sigmas_karras(int steps, double smin, double smax, double rho, double *out)
{
    int rc;
    if (steps < 1) return df_error(DF_EINVAL, "karras schedule: steps %d must be >= 1", steps);
    if ((rc = range_ok("karras", smin, smax))) return rc;
    if (!(rho > 0)) return df_error(DF_EINVAL, "karras schedule: rho %g must be > 0", rho);
    double lo = pow(smin, 1 / rho), hi = pow(smax, 1 / rho);
    for (int i = 0; i < steps; i++) {
        double ramp = steps > 1 ? (double)i / (steps - 1) : 0;
        out[i] = pow(hi + ramp * (lo - hi), rho);
    }
    out[steps] = 0;
    return DF_OK;
}

/* k-diffusion get_sigmas_exponential. */
int df_sigmas_exponential(int steps, double smin, double smax, double *out)
{
    int rc;
    if (steps < 1) return df_error(DF_EINVAL, "exponential schedule: steps %d must be >= 1", steps);
    if ((rc = range_ok("exponential", smin, smax))) return rc;
    double a = log(smax), b = log(smin);
    for (int i = 0; i < steps; i++) out[i] = exp(steps > 1 ? a + (b - a) * i / (steps - 1) : a);
    out[steps] = 0;
    return DF_OK;
}

/* k-diffusion get_sigmas_polyexponential. */
int df_sigmas_polyexponential(int steps, double smin, double smax, double rho, double *out)
{
    int rc;
    if (steps < 1) return df_error(DF_EINVAL, "polyexponential schedule: steps %d must be >= 1", steps);
    if ((rc = range_ok("polyexponential", smin, smax))) return rc;
    if (!(rho > 0)) return df_error(DF_EINVAL, "polyexponential schedule: rho %g must be > 0", rho);
    for (int i = 0; i < steps; i++) {
        double ramp = pow(steps > 1 ? 1 - (double)i / (steps - 1) : 1, rho);
        out[i] = exp(ramp * (log(smax) - log(smin)) + log(smin));
    }
    out[steps] = 0;
    return DF_OK;
}

/* np.interp(x, arange(n), ys): linear between integer points, clamped. */
static double interp_index(const double *ys, int n, double x)
{
    if (!(x > 0)) return ys[0];
    if (x >= n - 1) return ys[n - 1];
    int i = (int)floor(x);
    double w = x - i;
    return ys[i] + w * (ys[i + 1] - ys[i]);
}

/* ComfyUI's AYS: log-linear interpolation of a decreasing table to m points. */
static void loglinear_interp(const double *table, int len, int m, double *out)
{
    /* xs = linspace(0, 1, len) over log(table reversed); new xs = linspace(0, 1, m) */
    for (int j = 0; j < m; j++) {
        double x = m > 1 ? (double)j / (m - 1) : 0;
        double pos = x * (len - 1);
        int i = (int)floor(pos);
        if (i >= len - 1) i = len - 2;
        double w = pos - i;
        double y0 = log(table[len - 1 - i]), y1 = log(table[len - 2 - i]);
        out[m - 1 - j] = exp(y0 + w * (y1 - y0));
    }
}

static const double ays_sd15[11] = {14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520,
                                    1.8841921177,  1.3943805092, 0.9642583904, 0.6523686016,
                                    0.3977456272,  0.1515232662, 0.0291671582};
static const double ays_sdxl[11] = {14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769,
                                    1.3405244945,  0.8620721141, 0.5550693289, 0.3798540708,
                                    0.2332364134,  0.1114188177, 0.0291671582};

int df_sigmas_new(const df_noise_schedule *s, const df_sigmas_params *p, double **out, int *nout)
{
    if (!out || !nout) return df_error(DF_EINVAL, "sigmas: 'out' and 'n' must not be NULL");
    *out = NULL;
    *nout = 0;
    df_sigmas_params dp = df_sigmas_default_params();
    if (!p) p = &dp;
    const char *name = df_sigmas_kind_name(p->kind);
    if ((unsigned)p->kind >= DF_SIGMAS_KIND_COUNT) return df_error(DF_EINVAL, "sigmas: unknown kind %d", p->kind);
    if (p->steps < 1 || p->steps > 100000)
        return df_error(DF_EINVAL, "%s schedule: steps %d must be in [1, 100000]", name, p->steps);
    if (df_sigmas_kind_needs_schedule(p->kind) && !s)
        return df_error(DF_EINVAL, "%s schedule: needs the model's training schedule", name);
    int steps = p->steps, rc = DF_OK, n = s ? s->n : 0;
    double smin = p->sigma_min > 0 ? p->sigma_min : (s ? df_noise_schedule_sigma_min(s) : 0);
    double smax = p->sigma_max > 0 ? p->sigma_max : (s ? df_noise_schedule_sigma_max(s) : 0);
    /* ddim_uniform can give a few more than steps + 1 values */
    size_t cap = (size_t)steps + 2 + (p->kind == DF_SIGMAS_DDIM_UNIFORM ? (size_t)steps + (size_t)n : 0);
    double *sig = df_malloc(cap * sizeof(double));
    if (!sig) return DF_ENOMEM;
    int count = steps + 1;

    switch (p->kind) {
    case DF_SIGMAS_KARRAS: rc = df_sigmas_karras(steps, smin, smax, p->rho > 0 ? p->rho : 7.0, sig); break;
    case DF_SIGMAS_EXPONENTIAL: rc = df_sigmas_exponential(steps, smin, smax, sig); break;
    case DF_SIGMAS_POLYEXPONENTIAL:
        rc = df_sigmas_polyexponential(steps, smin, smax, p->rho > 0 ? p->rho : 1.0, sig);
        break;
    case DF_SIGMAS_KL_OPTIMAL: {
        /* AUTOMATIC1111 PR 15608 / ComfyUI kl_optimal_scheduler */
        if ((rc = range_ok(name, smin, smax))) break;
        for (int i = 0; i < steps; i++) {
            double w = steps > 1 ? (double)i / (steps - 1) : 0;
            sig[i] = tan(w * atan(smin) + (1 - w) * atan(smax));
        }
        sig[steps] = 0;
        break;
    }
    case DF_SIGMAS_NORMAL:
    case DF_SIGMAS_SGM_UNIFORM: {
        /* ComfyUI normal_scheduler: timesteps linspace(t(σ_max), t(σ_min)) */
        double t0 = df_noise_schedule_sigma_to_t(s, smax), t1 = df_noise_schedule_sigma_to_t(s, smin);
        int m = p->kind == DF_SIGMAS_SGM_UNIFORM ? steps + 1 : steps;
        for (int i = 0; i < steps; i++) {
            double t = m > 1 ? t0 + (t1 - t0) * i / (m - 1) : t0;
            sig[i] = df_noise_schedule_t_to_sigma(s, t);
        }
        sig[steps] = 0;
        break;
    }
    case DF_SIGMAS_SIMPLE: {
        /* ComfyUI simple_scheduler: sigmas[-(1 + int(i * n / steps))] */
        double ss = (double)n / steps;
        for (int i = 0; i < steps; i++) sig[i] = s->sigmas[n - 1 - (int)(i * ss)];
        sig[steps] = 0;
        break;
    }
    case DF_SIGMAS_DDIM_UNIFORM: {
        /* ComfyUI ddim_scheduler: sigmas[1], sigmas[1 + k], ... reversed, then 0 */
        int k = n / steps > 1 ? n / steps : 1, c = 0;
        for (int x = 1; x < n; x += k) c++;
        for (int x = 1, j = c - 1; x < n; x += k, j--) sig[j] = s->sigmas[x];
        sig[c] = 0;
        count = c + 1;
        break;
    }
    case DF_SIGMAS_BETA: {
        /* ComfyUI beta_scheduler: t = rint(ppf(1 - i/steps; α, β) · (n-1)), repeats dropped */
        if (!(p->alpha > 0 && p->beta > 0)) {
            rc = df_error(DF_EINVAL, "beta schedule: alpha %g and beta %g must be > 0", p->alpha, p->beta);
            break;
        }
        int c = 0;
        double last = -1;
        for (int i = 0; i < steps; i++) {
            double t = nearbyint(df_betaincinv(p->alpha, p->beta, 1 - (double)i / steps) * (n - 1));
            if (t != last) sig[c++] = s->sigmas[(int)t];
            last = t;
        }
        sig[c] = 0;
        count = c + 1;
        break;
    }
    case DF_SIGMAS_AYS_SD15:
    case DF_SIGMAS_AYS_SDXL: {
        /* ComfyUI AlignYourStepsScheduler: the 10-step table, log-linear
         * interpolated to steps + 1 points, the last set to 0 */
        const double *tab = p->kind == DF_SIGMAS_AYS_SD15 ? ays_sd15 : ays_sdxl;
        if (steps + 1 == 11) memcpy(sig, tab, sizeof ays_sd15);
        else loglinear_interp(tab, 11, steps + 1, sig);
        sig[steps] = 0;
        break;
    }
    case DF_SIGMAS_LEADING:
    case DF_SIGMAS_TRAILING:
    case DF_SIGMAS_LINSPACE: {
        /* diffusers EulerDiscreteScheduler.set_timesteps, interpolation "linear" */
        if (p->kind == DF_SIGMAS_LINSPACE) {
            double step = steps > 1 ? (double)(n - 1) / (steps - 1) : 0;
            for (int i = 0; i < steps; i++) {
                double t = (i == steps - 1 && steps > 1) ? n - 1 : i * step;
                sig[steps - 1 - i] = interp_index(s->sigmas, n, (double)(float)t);
            }
        } else if (p->kind == DF_SIGMAS_LEADING) {
            int ratio = n / steps;
            for (int i = 0; i < steps; i++)
                sig[steps - 1 - i] = interp_index(s->sigmas, n, (double)i * ratio + p->steps_offset);
        } else {
            double ratio = (double)n / steps;
            /* np.arange(n, 0, -ratio): ceil(n / ratio) values */
            int len = (int)ceil((0.0 - n) / -ratio);
            if (len > steps) len = steps;
            for (int i = 0; i < len; i++) sig[i] = interp_index(s->sigmas, n, nearbyint(n + i * -ratio) - 1);
            count = len + 1;
            steps = len;
        }
        sig[steps] = 0;
        break;
    }
    case DF_SIGMAS_VP: {
        /* k-diffusion get_sigmas_vp */
        if (!(p->beta_d > 0 && p->beta_min >= 0 && p->eps_s > 0 && p->eps_s < 1)) {
            rc = df_error(DF_EINVAL, "vp schedule: need beta_d > 0, beta_min >= 0, 0 < eps_s < 1");
            break;
        }
        for (int i = 0; i < steps; i++) {
            double t = steps > 1 ? 1 + (p->eps_s - 1) * i / (steps - 1) : 1;
            sig[i] = sqrt(expm1(p->beta_d * t * t / 2 + p->beta_min * t));
        }
        sig[steps] = 0;
        break;
    }
    case DF_SIGMAS_LINEAR_QUADRATIC: {
        /* ComfyUI linear_quadratic_schedule (Mochi), times sigma_max */
        if (!(smax > 0)) {
            rc = df_error(DF_EINVAL, "linear_quadratic schedule: needs sigma_max");
            break;
        }
        double thr = p->threshold_noise;
        if (steps == 1) {
            sig[0] = 1;
            sig[1] = 0;
        } else {
            int ls = p->linear_steps > 0 ? p->linear_steps : steps / 2;
            if (ls >= steps) ls = steps - 1;
            if (ls < 1) ls = 1;
            double diff = ls - thr * steps;
            int qs = steps - ls;
            double qc = diff / ((double)ls * qs * qs), lc = thr / ls - 2 * diff / ((double)qs * qs);
            double c = qc * ls * ls;
            for (int i = 0; i < ls; i++) sig[i] = 1 - i * thr / ls;
            for (int i = ls; i < steps; i++) sig[i] = 1 - (qc * i * i + lc * i + c);
            sig[steps] = 0;
        }
        for (int i = 0; i <= steps; i++) sig[i] *= smax;
        break;
    }
    default: rc = df_error(DF_EINVAL, "sigmas: unknown kind %d", p->kind);
    }
    if (rc) {
        df_free(sig);
        return rc;
    }
    *out = sig;
    *nout = count;
    return DF_OK;
}

int df_sigmas_new_for_strength(const df_noise_schedule *s, const df_sigmas_params *p, double strength,
                               double **out, int *n)
{
    if (!out || !n) return df_error(DF_EINVAL, "sigmas: 'out' and 'n' must not be NULL");
    *out = NULL;
    *n = 0;
    df_sigmas_params dp = df_sigmas_default_params();
    if (!p) p = &dp;
    if (!(strength > 0 && strength <= 1))
        return df_error(DF_EINVAL, "sigmas: strength %g must be in (0, 1]", strength);
    if (strength > 0.9999) return df_sigmas_new(s, p, out, n);
    df_sigmas_params q = *p;
    double total = p->steps / strength;
    if (total > 100000) return df_error(DF_EINVAL, "sigmas: %d steps at strength %g is too many", p->steps, strength);
    q.steps = (int)total;
    double *all = NULL;
    int m = 0, rc = df_sigmas_new(s, &q, &all, &m);
    if (rc) return rc;
    int keep = p->steps + 1 < m ? p->steps + 1 : m;
    memmove(all, all + (m - keep), (size_t)keep * sizeof(double));
    *out = all;
    *n = keep;
    return DF_OK;
}
