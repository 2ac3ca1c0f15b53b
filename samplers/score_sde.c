/* Score-based samplers of Song et al. 2021 (score_sde's sampling.py): the VE,
 * VP and sub-VP SDEs, a predictor-corrector sampler (score_pc) and a
 * probability-flow ODE sampler with scipy's adaptive RK45 (score_ode).
 *
 * Each SDE is seen through the run's denoiser: its sample y = m(t) x is the
 * variance-exploding x scaled by the SDE's mean coefficient m(t), with noise
 * level σ(t) = std(t) / m(t) in the VE parameterisation, so its score is
 *   ∇ log p_t(y) = (m D(y/m, σ) − y) / std²
 * for any denoiser (a VE score model through the model wrapper's
 * DF_PRED_SCORE, a VP model through its schedule):
 *   VE      m = 1, std = σ_min (σ_max/σ_min)^t, f = 0, g² = 2 std² log(σ_max/σ_min)
 *   VP      m = exp(−¼ t² (β₁ − β₀) − ½ t β₀), std = √(1 − m²), f = −½ β(t), g² = β(t)
 *   sub-VP  m as VP, std = 1 − m², f = −½ β(t), g² = β(t) (1 − m⁴)
 * with β(t) = β₀ + t (β₁ − β₀). The times are t(σ_i) of the run's sigmas (for
 * VE, σ_max is sigmas[0]); like score_sde, the discrete tables (VE's
 * geometric sigmas, VP's betas linspace(β₀/N, β₁/N, N)) and Euler–Maruyama's
 * dt = −1/N use N = the number of steps, so score_sde's own grid is the
 * sigmas σ(linspace(1, eps, N)) followed by 0. */
#include "common.h"

#include <stdlib.h>

enum { SDE_VE = 0, SDE_VP = 1, SDE_SUBVP = 2 };

typedef struct sde {
    int kind;
    double b0, b1;     /* VP, sub-VP */
    double smin, smax; /* VE */
    int n;             /* the discrete tables' size */
} sde;

static double log_mean(const sde *s, double t)
{
    return s->kind == SDE_VE ? 0 : -0.25 * t * t * (s->b1 - s->b0) - 0.5 * t * s->b0;
}

static double mean_coeff(const sde *s, double t) { return exp(log_mean(s, t)); }

static double std_of(const sde *s, double t)
{
    if (s->kind == SDE_VE) return s->smin * pow(s->smax / s->smin, t);
    double e = -expm1(2 * log_mean(s, t)); /* 1 − m² */
    return s->kind == SDE_VP ? sqrt(e) : e;
}

static double beta_of(const sde *s, double t) { return s->b0 + t * (s->b1 - s->b0); }

/* drift f(t) y and diffusion g(t)² */
static double drift_coeff(const sde *s, double t) { return s->kind == SDE_VE ? 0 : -0.5 * beta_of(s, t); }

static double g2_of(const sde *s, double t)
{
    if (s->kind == SDE_VE) {
        double sd = std_of(s, t);
        return sd * sd * 2 * log(s->smax / s->smin);
    }
    if (s->kind == SDE_VP) return beta_of(s, t);
    return beta_of(s, t) * -expm1(4 * log_mean(s, t));
}

/* The time at which the SDE's VE noise level std/m is sigma. */
static double t_of_sigma(const sde *s, double sigma)
{
    if (s->kind == SDE_VE) return log(sigma / s->smin) / log(s->smax / s->smin);
    double l; /* −2 log m */
    if (s->kind == SDE_VP) l = log1p(sigma * sigma);
    else l = -2 * log((sqrt(sigma * sigma + 4) - sigma) / 2); /* m² + σ m − 1 = 0 */
    double db = s->b1 - s->b0;
    return (sqrt(s->b0 * s->b0 + 2 * db * l) - s->b0) / db;
}

/* score_sde's discrete tables at timestep k = ⌊t (N − 1)⌋. */
static int timestep_of(const sde *s, double t)
{
    int k = (int)floor(t * (s->n - 1) + 1e-9);
    return k < 0 ? 0 : k > s->n - 1 ? s->n - 1 : k;
}

static double disc_beta(const sde *s, int k)
{
    double lo = s->b0 / s->n, hi = s->b1 / s->n;
    return s->n > 1 ? lo + k * (hi - lo) / (s->n - 1) : lo;
}

static double disc_sigma(const sde *s, int k)
{
    double lo = log(s->smin), hi = log(s->smax);
    return exp(s->n > 1 ? lo + k * (hi - lo) / (s->n - 1) : lo);
}

static int read_sde(const df_host_api *h, df_sampler_run *run, const double *sigmas, int n_steps, sde *s)
{
    s->kind = (int)h->option(run, "sde");
    s->b0 = h->option(run, "beta_min");
    s->b1 = h->option(run, "beta_max");
    s->smin = h->option(run, "sigma_min");
    s->smax = sigmas[0];
    s->n = n_steps;
    if (s->kind == SDE_VE && !(s->smax > s->smin))
        return h->error(run, DF_PLUGIN_EINVAL, "VE SDE: sigmas[0] = %g must exceed sigma_min = %g", s->smax, s->smin);
    if (s->kind != SDE_VE && !(s->b1 > s->b0))
        return h->error(run, DF_PLUGIN_EINVAL, "beta_max %g must exceed beta_min %g", s->b1, s->b0);
    return 0;
}

/* score = ∇ log p_t(y), through the denoiser; xv is scratch, den receives D. */
static int score_at(const df_host_api *h, df_sampler_run *run, const sde *s, double t, const df_tensor *y,
                    df_tensor *xv, df_tensor *den, df_tensor *score)
{
    double m = mean_coeff(s, t), sd = std_of(s, t);
    int rc;
    if ((rc = h->lincomb(xv, 1, (const double[]){1 / m}, (const df_tensor *const[]){y}))) return rc;
    if ((rc = h->denoise(run, xv, sd / m, den))) return rc;
    return h->lincomb(score, 2, (const double[]){m / (sd * sd), -1 / (sd * sd)}, (const df_tensor *const[]){den, y});
}

/* The number of nonzero sigmas (the grid); whether the schedule ends at 0. */
static int grid_size(const double *sigmas, int n)
{
    int g = n;
    while (g > 0 && sigmas[g - 1] == 0) g--;
    return g;
}

/* ---- predictor-corrector ---- */

enum { PRED_REVERSE_DIFFUSION = 0, PRED_EULER_MARUYAMA = 1, PRED_ANCESTRAL = 2, PRED_NONE = 3 };
enum { CORR_LANGEVIN = 0, CORR_ALD = 1, CORR_NONE = 2 };

/* mean over the batch of the per-item L2 norms (score_sde's grad_norm);
 * ss: scratch for one value per item */
static int mean_norm(const df_host_api *h, const df_tensor *t, double *ss, double *out)
{
    int64_t dims[4];
    h->shape(t, dims);
    int rc = h->sum_squares(t, 1, ss);
    if (rc) return rc;
    double m = 0;
    for (int64_t i = 0; i < dims[0]; i++) m += sqrt(ss[i]);
    *out = m / (double)dims[0];
    return 0;
}

static int sample_score_pc(const df_host_api *h, df_sampler_run *run, void *user, df_tensor *x, const double *sigmas,
                           int n)
{
    (void)user;
    int grid = grid_size(sigmas, n), rc = 0;
    sde s;
    if (grid < 1) return h->error(run, DF_PLUGIN_EINVAL, "score_pc: no nonzero sigma");
    if ((rc = read_sde(h, run, sigmas, grid, &s))) return rc;
    int pred = (int)h->option(run, "predictor"), corr = (int)h->option(run, "corrector");
    int corr_steps = (int)h->option(run, "n_steps"), denoise = h->option(run, "denoise") != 0;
    double snr = h->option(run, "snr");
    if (pred == PRED_ANCESTRAL && s.kind == SDE_SUBVP)
        return h->error(run, DF_PLUGIN_EINVAL, "score_pc: the ancestral predictor supports the VE and VP SDEs only");
    int64_t dims[4];
    h->shape(x, dims);
    double *ss = malloc((size_t)(dims[0] > 0 ? dims[0] : 1) * sizeof *ss);
    if (!ss) return h->error(run, DF_PLUGIN_ENOMEM, "score_pc: out of memory");
    df_tensor *xv = NULL, *den = NULL, *score = NULL, *z = NULL;
    NEW_LIKE(xv, x);
    NEW_LIKE(den, x);
    NEW_LIKE(score, x);
    NEW_LIKE(z, x);
    for (int i = 0; i < grid; i++) {
        double t = t_of_sigma(&s, sigmas[i]), m = mean_coeff(&s, t);
        int k = timestep_of(&s, t), last = i == grid - 1;
        TRY(h->scale(x, m)); /* VE x -> the SDE's y */
        /* corrector */
        double alpha = s.kind == SDE_VE ? 1 : 1 - disc_beta(&s, k);
        for (int c = 0; corr != CORR_NONE && c < corr_steps; c++) {
            TRY(score_at(h, run, &s, t, x, xv, den, score));
            TRY(h->randn(run, z));
            double step;
            if (corr == CORR_LANGEVIN) {
                double gn, nn;
                TRY(mean_norm(h, score, ss, &gn));
                TRY(mean_norm(h, z, ss, &nn));
                step = (snr * nn / gn) * (snr * nn / gn) * 2 * alpha;
            } else {
                double sd = std_of(&s, t);
                step = (snr * sd) * (snr * sd) * 2 * alpha;
            }
            TRY(h->lincomb(x, 3, (const double[]){1, step, sqrt(2 * step)}, (const df_tensor *const[]){x, score, z}));
        }
        /* predictor: x_mean = cx x + cs score, then + cz z */
        double cx = 1, cs = 0, cz = 0;
        if (pred != PRED_NONE) {
            TRY(score_at(h, run, &s, t, x, xv, den, score));
            if (pred == PRED_EULER_MARUYAMA) {
                double g2 = g2_of(&s, t) / s.n;
                cx = 1 - drift_coeff(&s, t) / s.n;
                cs = g2;
                cz = sqrt(g2);
            } else if (s.kind == SDE_VE) {
                double sg = disc_sigma(&s, k), adj = k ? disc_sigma(&s, k - 1) : 0, d2 = sg * sg - adj * adj;
                cs = d2;
                cz = pred == PRED_ANCESTRAL ? sqrt(adj * adj * d2 / (sg * sg)) : sqrt(d2);
            } else if (s.kind == SDE_VP) {
                double b = disc_beta(&s, k);
                if (pred == PRED_ANCESTRAL) {
                    cx = 1 / sqrt(1 - b);
                    cs = b / sqrt(1 - b);
                } else {
                    cx = 2 - sqrt(1 - b);
                    cs = b;
                }
                cz = sqrt(b);
            } else { /* sub-VP reverse diffusion: the SDE's Euler discretisation, dt = 1/N */
                double g2 = g2_of(&s, t) / s.n;
                cx = 1 - drift_coeff(&s, t) / s.n;
                cs = g2;
                cz = sqrt(g2);
            }
            TRY(h->lincomb(x, 2, (const double[]){cx, cs}, (const df_tensor *const[]){x, score}));
            if (!(last && denoise)) {
                TRY(h->randn(run, z));
                TRY(h->axpy(x, cz, z));
            }
        }
        /* back to VE at the next sigma (the last step's result is the sample) */
        if (!last) TRY(h->scale(x, 1 / mean_coeff(&s, t_of_sigma(&s, sigmas[i + 1]))));
        TRY(h->step(run, i, grid, sigmas[i], i + 1 < n ? sigmas[i + 1] : 0, x, den));
    }
done:
    free(ss);
    h->free(xv);
    h->free(den);
    h->free(score);
    h->free(z);
    return rc;
}

/* ---- probability-flow ODE, scipy's RK45 ---- */

/* Dormand–Prince 5(4) as scipy.integrate.RK45. */
static const double RK_C[6] = {0, 1.0 / 5, 3.0 / 10, 4.0 / 5, 8.0 / 9, 1};
static const double RK_A[6][5] = {
    {0},
    {1.0 / 5},
    {3.0 / 40, 9.0 / 40},
    {44.0 / 45, -56.0 / 15, 32.0 / 9},
    {19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729},
    {9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656},
};
static const double RK_B[6] = {35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84};
static const double RK_E[7] = {-71.0 / 57600, 0, 71.0 / 16695, -71.0 / 1920, 17253.0 / 339200, -22.0 / 525, 1.0 / 40};

typedef struct ode {
    const df_host_api *h;
    df_sampler_run *run;
    const sde *s;
    df_tensor *xv, *den, *score;
    int nfev;
} ode;

/* out = f(t) y − ½ g(t)² score(y, t): the probability-flow drift */
static int pf_drift(ode *o, double t, const df_tensor *y, df_tensor *out)
{
    int rc = score_at(o->h, o->run, o->s, t, y, o->xv, o->den, o->score);
    o->nfev++;
    if (rc) return rc;
    return o->h->lincomb(out, 2, (const double[]){drift_coeff(o->s, t), -0.5 * g2_of(o->s, t)},
                         (const df_tensor *const[]){y, o->score});
}

static int sample_score_ode(const df_host_api *h, df_sampler_run *run, void *user, df_tensor *x, const double *sigmas,
                            int n)
{
    (void)user;
    int grid = grid_size(sigmas, n), rc = 0;
    sde s;
    if (grid < 1) return h->error(run, DF_PLUGIN_EINVAL, "score_ode: no nonzero sigma");
    if ((rc = read_sde(h, run, sigmas, (int)h->option(run, "n_table"), &s))) return rc;
    double rtol = h->option(run, "rtol"), atol = h->option(run, "atol");
    int denoise = h->option(run, "denoise") != 0 && grid < n;
    double t = t_of_sigma(&s, sigmas[0]), t_end = t_of_sigma(&s, sigmas[grid - 1]), dir = t_end < t ? -1 : 1;
    ode o = {h, run, &s, NULL, NULL, NULL, 0};
    df_tensor *k[7] = {NULL}, *y_new = NULL, *tmp = NULL, *err = NULL, *zero = NULL;
    for (int j = 0; j < 7; j++) NEW_LIKE(k[j], x);
    NEW_LIKE(y_new, x);
    NEW_LIKE(tmp, x);
    NEW_LIKE(err, x);
    NEW_LIKE(zero, x);
    NEW_LIKE(o.xv, x);
    NEW_LIKE(o.den, x);
    NEW_LIKE(o.score, x);
    TRY(h->fill(zero, 0));
    TRY(h->scale(x, mean_coeff(&s, t))); /* y */
    TRY(pf_drift(&o, t, x, k[0]));
    /* scipy's select_initial_step (order 4) */
    double d0, d1, d2, h0, h1, h_abs;
    TRY(h->error_norm(x, zero, x, NULL, atol, rtol, 0, &d0));
    TRY(h->error_norm(k[0], zero, x, NULL, atol, rtol, 0, &d1));
    h0 = d0 < 1e-5 || d1 < 1e-5 ? 1e-6 : 0.01 * d0 / d1;
    TRY(h->lincomb(tmp, 2, (const double[]){1, h0 * dir}, (const df_tensor *const[]){x, k[0]}));
    TRY(pf_drift(&o, t + h0 * dir, tmp, k[1]));
    TRY(h->error_norm(k[1], k[0], x, NULL, atol, rtol, 0, &d2));
    d2 /= h0;
    if (d1 <= 1e-15 && d2 <= 1e-15) h1 = fmax(1e-6, h0 * 1e-3);
    else h1 = pow(0.01 / fmax(d1, d2), 1.0 / 5);
    h_abs = fmin(100 * h0, h1);
    int step_i = 0;
    while (dir * (t_end - t) > 0) {
        double min_step = 10 * fabs(nextafter(t, dir * INFINITY) - t), t_new = t, hh = 0;
        if (h_abs < min_step) h_abs = min_step;
        int accepted = 0, rejected = 0;
        while (!accepted) {
            if (h_abs < min_step) {
                rc = h->error(run, DF_PLUGIN_EINVAL, "score_ode: step size too small at t = %g", t);
                goto done;
            }
            t_new = t + h_abs * dir;
            if (dir * (t_new - t_end) > 0) t_new = t_end;
            hh = t_new - t;
            h_abs = fabs(hh);
            /* the stages; k[0] is f(t, y) */
            for (int st = 1; st < 6; st++) {
                double c[6];
                const df_tensor *terms[6];
                c[0] = 1;
                terms[0] = x;
                for (int j = 0; j < st; j++) c[j + 1] = hh * RK_A[st][j], terms[j + 1] = k[j];
                TRY(h->lincomb(tmp, st + 1, c, terms));
                TRY(pf_drift(&o, t + RK_C[st] * hh, tmp, k[st]));
            }
            double c[7];
            const df_tensor *terms[7];
            c[0] = 1;
            terms[0] = x;
            for (int j = 0; j < 6; j++) c[j + 1] = hh * RK_B[j], terms[j + 1] = k[j];
            TRY(h->lincomb(y_new, 7, c, terms));
            TRY(pf_drift(&o, t_new, y_new, k[6]));
            for (int j = 0; j < 7; j++) c[j] = hh * RK_E[j], terms[j] = k[j];
            TRY(h->lincomb(err, 7, c, terms));
            double en;
            TRY(h->error_norm(err, zero, x, y_new, atol, rtol, 0, &en));
            if (en < 1) {
                double factor = en == 0 ? 10 : fmin(10, 0.9 * pow(en, -0.2));
                if (rejected) factor = fmin(1, factor);
                h_abs *= factor;
                accepted = 1;
            } else {
                h_abs *= fmax(0.2, 0.9 * pow(en, -0.2));
                rejected = 1;
            }
        }
        TRY(h->copy(x, y_new));
        df_tensor *f = k[0];
        k[0] = k[6];
        k[6] = f;
        double sg_new = std_of(&s, t_new) / mean_coeff(&s, t_new);
        /* progress in VE terms (the hook sees y as it is: y ≈ x at small t for VP) */
        TRY(h->step(run, step_i, 0, std_of(&s, t) / mean_coeff(&s, t), sg_new, x, o.den));
        step_i++;
        t = t_new;
    }
    if (denoise) {
        /* score_sde's denoise_update_fn: the reverse-diffusion predictor's mean at t_end */
        int kk = timestep_of(&s, t);
        double cx = 1, cs;
        TRY(score_at(h, run, &s, t, x, o.xv, o.den, o.score));
        if (s.kind == SDE_VE) {
            double sg = disc_sigma(&s, kk), adj = kk ? disc_sigma(&s, kk - 1) : 0;
            cs = sg * sg - adj * adj;
        } else if (s.kind == SDE_VP) {
            double b = disc_beta(&s, kk);
            cx = 2 - sqrt(1 - b);
            cs = b;
        } else {
            cx = 1 - drift_coeff(&s, t) / s.n;
            cs = g2_of(&s, t) / s.n;
        }
        TRY(h->lincomb(x, 2, (const double[]){cx, cs}, (const df_tensor *const[]){x, o.score}));
    } else {
        TRY(h->scale(x, 1 / mean_coeff(&s, t))); /* back to VE at the last sigma */
    }
    h->log(run, DF_PLUGIN_LOG_DEBUG, "score_ode: %d steps, %d evaluations", step_i, o.nfev);
done:
    for (int j = 0; j < 7; j++) h->free(k[j]);
    h->free(y_new);
    h->free(tmp);
    h->free(err);
    h->free(zero);
    h->free(o.xv);
    h->free(o.den);
    h->free(o.score);
    return rc;
}

#define OPTIONS_SDE                                                                                                    \
    {"sde", DF_OPT_CHOICE, 0, 0, 2, "ve|vp|subvp", "the SDE (Song et al. 2021)"},                                     \
        {"beta_min", DF_OPT_NUMBER, 0.1, 0, 1000, NULL, "VP / sub-VP: beta(0)"},                                      \
        {"beta_max", DF_OPT_NUMBER, 20, 0, 1000, NULL, "VP / sub-VP: beta(1)"},                                       \
        {"sigma_min", DF_OPT_NUMBER, 0.01, 1e-6, 1e6, NULL, "VE: sigma(0) (sigma(1) is the first sigma)"}

static const df_sampler_option pc_options[] = {
    OPTIONS_SDE,
    {"predictor", DF_OPT_CHOICE, 0, 0, 3, "reverse_diffusion|euler_maruyama|ancestral|none", "predictor step"},
    {"corrector", DF_OPT_CHOICE, 0, 0, 2, "langevin|ald|none", "corrector: Langevin, annealed Langevin, none"},
    {"snr", DF_OPT_NUMBER, 0.16, 0, 100, NULL, "corrector signal-to-noise ratio"},
    {"n_steps", DF_OPT_INT, 1, 1, 100, NULL, "corrector steps per noise level"},
    {"denoise", DF_OPT_BOOL, 1, 0, 1, NULL, "return the last predictor's mean (no final noise)"},
};

static const df_sampler_option ode_options[] = {
    OPTIONS_SDE,
    {"rtol", DF_OPT_NUMBER, 1e-5, 1e-12, 1, NULL, "RK45 relative tolerance"},
    {"atol", DF_OPT_NUMBER, 1e-5, 1e-12, 1, NULL, "RK45 absolute tolerance"},
    {"denoise", DF_OPT_BOOL, 1, 0, 1, NULL, "when the schedule ends at 0: a final reverse-diffusion mean step"},
    {"n_table", DF_OPT_INT, 1000, 2, 100000, NULL, "size of the SDE's discrete tables (the final denoise step)"},
};

static const df_sampler_desc samplers[] = {
    {DF_SAMPLER_DESC_INIT, .name = "score_pc",
     .description = "score SDE predictor-corrector sampler (Song et al. 2021)", .options = pc_options,
     .n_options = N_OPTIONS(pc_options), .flags = DF_SAMPLER_STOCHASTIC, .sample = sample_score_pc},
    {DF_SAMPLER_DESC_INIT, .name = "score_ode",
     .description = "probability-flow ODE of a score SDE, adaptive RK45 (scipy's)", .options = ode_options,
     .n_options = N_OPTIONS(ode_options), .flags = DF_SAMPLER_ADAPTIVE, .sample = sample_score_ode},
};

DF_SAMPLER_PLUGIN("difusa-score-sde", samplers)
