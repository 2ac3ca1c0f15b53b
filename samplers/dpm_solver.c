/* DPM-Solver (Lu et al. 2022) as k-diffusion's DPMSolver class runs it:
 * dpm_fast (fixed steps of orders 3, 3, ..., 2/1 in t = −log σ) and
 * dpm_adaptive (embedded orders 2/3 with a PID step-size controller). Both use
 * only sigmas[0] and the smallest nonzero sigma of the schedule, and stop at
 * that sigma (they do not denoise to 0), as ComfyUI calls them. */
#include "common.h"

#include <string.h>

typedef struct solver {
    const df_host_api *h;
    df_sampler_run *run;
    df_tensor *eps, *eps_r1, *eps_r2, *u; /* eps cache and scratch */
    int have_eps;                         /* eps of the current x is cached */
    int nfe;
} solver;

static double sig(double t) { return exp(-t); }

/* eps = (x − D(x, σ(t))) / σ(t) into out. */
static int eval_eps(solver *S, df_tensor *out, const df_tensor *x, double t)
{
    const df_host_api *h = S->h;
    int rc = h->denoise(S->run, x, sig(t), out);
    if (rc) return rc;
    S->nfe++;
    return h->lincomb(out, 2, (const double[]){1 / sig(t), -1 / sig(t)}, (const df_tensor *const[]){x, out});
}

static int cached_eps(solver *S, const df_tensor *x, double t)
{
    if (S->have_eps) return 0;
    int rc = eval_eps(S, S->eps, x, t);
    if (!rc) S->have_eps = 1;
    return rc;
}

/* out = x − σ(t_next) expm1(h) eps */
static int step1(solver *S, df_tensor *out, const df_tensor *x, double t, double t_next)
{
    int rc = cached_eps(S, x, t);
    if (rc) return rc;
    double hh = t_next - t;
    return S->h->lincomb(out, 2, (const double[]){1, -sig(t_next) * expm1(hh)},
                         (const df_tensor *const[]){x, S->eps});
}

static int step2(solver *S, df_tensor *out, const df_tensor *x, double t, double t_next, double r1)
{
    const df_host_api *h = S->h;
    int rc = cached_eps(S, x, t);
    if (rc) return rc;
    double hh = t_next - t, s1 = t + r1 * hh;
    /* u1 = x − σ(s1) expm1(r1 h) eps */
    if ((rc = h->lincomb(S->u, 2, (const double[]){1, -sig(s1) * expm1(r1 * hh)}, (const df_tensor *const[]){x, S->eps})))
        return rc;
    if ((rc = eval_eps(S, S->eps_r1, S->u, s1))) return rc;
    /* x − σ(tn) expm1(h) eps − σ(tn)/(2 r1) expm1(h) (eps_r1 − eps) */
    double a = -sig(t_next) * expm1(hh), b = -sig(t_next) / (2 * r1) * expm1(hh);
    return h->lincomb(out, 3, (const double[]){1, a - b, b}, (const df_tensor *const[]){x, S->eps, S->eps_r1});
}

static int step3(solver *S, df_tensor *out, const df_tensor *x, double t, double t_next, double r1, double r2)
{
    const df_host_api *h = S->h;
    int rc = cached_eps(S, x, t);
    if (rc) return rc;
    double hh = t_next - t, s1 = t + r1 * hh, s2 = t + r2 * hh;
    if ((rc = h->lincomb(S->u, 2, (const double[]){1, -sig(s1) * expm1(r1 * hh)}, (const df_tensor *const[]){x, S->eps})))
        return rc;
    if ((rc = eval_eps(S, S->eps_r1, S->u, s1))) return rc;
    /* u2 = x − σ(s2) expm1(r2 h) eps − σ(s2) (r2/r1) (expm1(r2 h)/(r2 h) − 1) (eps_r1 − eps) */
    double a = -sig(s2) * expm1(r2 * hh), b = -sig(s2) * (r2 / r1) * (expm1(r2 * hh) / (r2 * hh) - 1);
    if ((rc = h->lincomb(S->u, 3, (const double[]){1, a - b, b}, (const df_tensor *const[]){x, S->eps, S->eps_r1})))
        return rc;
    if ((rc = eval_eps(S, S->eps_r2, S->u, s2))) return rc;
    /* x − σ(tn) expm1(h) eps − σ(tn)/r2 (expm1(h)/h − 1) (eps_r2 − eps) */
    double c = -sig(t_next) * expm1(hh), d = -sig(t_next) / r2 * (expm1(hh) / hh - 1);
    return h->lincomb(out, 3, (const double[]){1, c - d, d}, (const df_tensor *const[]){x, S->eps, S->eps_r2});
}

static void schedule_ends(const double *sigmas, int n, double *smax, double *smin)
{
    *smax = sigmas[0];
    *smin = sigmas[n - 1] > 0 ? sigmas[n - 1] : sigmas[n - 2];
}

static int solver_init(solver *S, const df_host_api *h, df_sampler_run *run, const df_tensor *x)
{
    memset(S, 0, sizeof *S);
    S->h = h;
    S->run = run;
    if (!(S->eps = h->new_like(x)) || !(S->eps_r1 = h->new_like(x)) || !(S->eps_r2 = h->new_like(x)) ||
        !(S->u = h->new_like(x)))
        return DF_PLUGIN_ENOMEM;
    return 0;
}

static void solver_free(solver *S)
{
    S->h->free(S->eps);
    S->h->free(S->eps_r1);
    S->h->free(S->eps_r2);
    S->h->free(S->u);
}

static int sample_dpm_fast(const df_host_api *h, df_sampler_run *run, void *user, df_tensor *x, const double *sigmas,
                           int n)
{
    (void)user;
    double smax, smin;
    schedule_ends(sigmas, n, &smax, &smin);
    int nfe = n - 1, rc;
    if (!(smin > 0)) return h->error(run, DF_PLUGIN_EINVAL, "dpm_fast needs a nonzero smallest sigma");
    if (nfe < 1) return h->error(run, DF_PLUGIN_EINVAL, "dpm_fast needs at least one step");
    double eta = h->option(run, "eta"), s_noise = h->option(run, "s_noise");
    double t_start = -log(smax), t_end = -log(smin);
    int m = nfe / 3 + 1;
    /* orders: [3] * (m-2) + [2, 1] when nfe % 3 == 0, else [3] * (m-1) + [nfe % 3]: m steps */
    int n_orders = m;
    solver S;
    df_tensor *den = NULL, *z = NULL;
    if ((rc = solver_init(&S, h, run, x))) goto done;
    NEW_LIKE(den, x);
    NEW_LIKE(z, x);
    for (int i = 0; i < n_orders; i++) {
        int order = nfe % 3 == 0 ? (i < m - 2 ? 3 : (i == m - 2 ? 2 : 1)) : (i < m - 1 ? 3 : nfe % 3);
        double t = t_start + (t_end - t_start) * i / m, t_next = t_start + (t_end - t_start) * (i + 1) / m;
        double t_next_ = t_next, su = 0;
        if (eta != 0) {
            double sd, up;
            ancestral_step(sig(t), sig(t_next), eta, &sd, &up);
            t_next_ = fmin(t_end, -log(sd));
            su = sqrt(sig(t_next) * sig(t_next) - sig(t_next_) * sig(t_next_));
        }
        S.have_eps = 0;
        TRY(cached_eps(&S, x, t));
        TRY(h->lincomb(den, 2, (const double[]){1, -sig(t)}, (const df_tensor *const[]){x, S.eps}));
        if (order == 1) TRY(step1(&S, x, x, t, t_next_));
        else if (order == 2) TRY(step2(&S, x, x, t, t_next_, 0.5));
        else TRY(step3(&S, x, x, t, t_next_, 1.0 / 3, 2.0 / 3));
        if (su != 0) {
            TRY(h->randn(run, z));
            TRY(h->axpy(x, su * s_noise, z));
        }
        TRY(h->step(run, i, n_orders, sig(t), sig(t_next), x, den));
    }
done:
    solver_free(&S);
    h->free(den);
    h->free(z);
    return rc;
}

/* k-diffusion's PIDStepSizeController. */
typedef struct pid {
    double hstep, b1, b2, b3, accept_safety, eps, errs[3];
    int have_errs;
} pid;

static int pid_propose(pid *p, double error)
{
    double inv = 1 / (error + p->eps);
    if (!p->have_errs) p->errs[0] = p->errs[1] = p->errs[2] = inv, p->have_errs = 1;
    p->errs[0] = inv;
    double factor = pow(p->errs[0], p->b1) * pow(p->errs[1], p->b2) * pow(p->errs[2], p->b3);
    factor = 1 + atan(factor - 1);
    int accept = factor >= p->accept_safety;
    if (accept) {
        p->errs[2] = p->errs[1];
        p->errs[1] = p->errs[0];
    }
    p->hstep *= factor;
    return accept;
}

static int sample_dpm_adaptive(const df_host_api *h, df_sampler_run *run, void *user, df_tensor *x,
                               const double *sigmas, int n)
{
    (void)user;
    double smax, smin;
    schedule_ends(sigmas, n, &smax, &smin);
    if (!(smin > 0)) return h->error(run, DF_PLUGIN_EINVAL, "dpm_adaptive needs a nonzero smallest sigma");
    int order = (int)h->option(run, "order"), rc;
    double rtol = h->option(run, "rtol"), atol = h->option(run, "atol"), h_init = h->option(run, "h_init");
    double pc = h->option(run, "pcoeff"), ic = h->option(run, "icoeff"), dc = h->option(run, "dcoeff");
    double eta = h->option(run, "eta"), s_noise = h->option(run, "s_noise");
    int max_steps = (int)h->option(run, "max_steps");
    double t_start = -log(smax), t_end = -log(smin);
    double ord = eta != 0 ? 1.5 : order;
    pid P = {.hstep = fabs(h_init), .b1 = (pc + ic + dc) / ord, .b2 = -(pc + 2 * dc) / ord, .b3 = dc / ord,
             .accept_safety = h->option(run, "accept_safety"), .eps = 1e-8};
    solver S;
    df_tensor *den = NULL, *x_prev = NULL, *x_low = NULL, *x_high = NULL, *z = NULL;
    if ((rc = solver_init(&S, h, run, x))) goto done;
    NEW_LIKE(den, x);
    NEW_LIKE(x_prev, x);
    NEW_LIKE(x_low, x);
    NEW_LIKE(x_high, x);
    NEW_LIKE(z, x);
    TRY(h->copy(x_prev, x));
    double s = t_start;
    int steps = 0, accepted = 0;
    while (s < t_end - 1e-5) {
        if (steps >= max_steps) {
            rc = h->error(run, DF_PLUGIN_EINVAL, "dpm_adaptive: no convergence after %d steps (sigma %g)", steps, sig(s));
            goto done;
        }
        double t = fmin(t_end, s + P.hstep), t_ = t, su = 0;
        if (eta != 0) {
            double sd, up;
            ancestral_step(sig(s), sig(t), eta, &sd, &up);
            t_ = fmin(t_end, -log(sd));
            su = sqrt(sig(t) * sig(t) - sig(t_) * sig(t_));
        }
        S.have_eps = 0;
        TRY(cached_eps(&S, x, s));
        TRY(h->lincomb(den, 2, (const double[]){1, -sig(s)}, (const df_tensor *const[]){x, S.eps}));
        if (order == 2) {
            TRY(step1(&S, x_low, x, s, t_));
            TRY(step2(&S, x_high, x, s, t_, 0.5));
        } else {
            TRY(step2(&S, x_low, x, s, t_, 1.0 / 3));
            TRY(step3(&S, x_high, x, s, t_, 1.0 / 3, 2.0 / 3));
        }
        double error;
        TRY(h->error_norm(x_low, x_high, x_low, x_prev, atol, rtol, 1, &error));
        if (pid_propose(&P, error)) {
            TRY(h->copy(x_prev, x_low));
            TRY(h->copy(x, x_high));
            if (su != 0) {
                TRY(h->randn(run, z));
                TRY(h->axpy(x, su * s_noise, z));
            }
            TRY(h->step(run, accepted, 0, sig(s), sig(t), x, den));
            s = t;
            accepted++;
        }
        steps++;
    }
    h->log(run, DF_PLUGIN_LOG_DEBUG, "dpm_adaptive: %d steps, %d accepted, %d model evaluations", steps, accepted, S.nfe);
done:
    solver_free(&S);
    h->free(den);
    h->free(x_prev);
    h->free(x_low);
    h->free(x_high);
    h->free(z);
    return rc;
}

static const df_sampler_option fast_options[] = {OPTION_ETA(0), OPTION_S_NOISE};
static const df_sampler_option adaptive_options[] = {
    {"order", DF_OPT_INT, 3, 2, 3, NULL, "order of the embedded pair (2: 1/2, 3: 2/3)"},
    {"rtol", DF_OPT_NUMBER, 0.05, 0, 1e6, NULL, "relative tolerance"},
    {"atol", DF_OPT_NUMBER, 0.0078, 0, 1e6, NULL, "absolute tolerance"},
    {"h_init", DF_OPT_NUMBER, 0.05, 1e-6, 100, NULL, "first step in log sigma"},
    {"pcoeff", DF_OPT_NUMBER, 0, -10, 10, NULL, "PID controller: proportional"},
    {"icoeff", DF_OPT_NUMBER, 1, -10, 10, NULL, "PID controller: integral"},
    {"dcoeff", DF_OPT_NUMBER, 0, -10, 10, NULL, "PID controller: derivative"},
    {"accept_safety", DF_OPT_NUMBER, 0.81, 0, 10, NULL, "accept a step when the proposed factor reaches this"},
    OPTION_ETA(0),
    OPTION_S_NOISE,
    {"max_steps", DF_OPT_INT, 10000, 1, 1e9, NULL, "give up after this many attempted steps"},
};

static const df_sampler_desc samplers[] = {
    {DF_SAMPLER_DESC_INIT, .name = "dpm_fast",
     .description = "DPM-Solver fast: fixed orders 3,..,3,2/1 in log sigma, one model call per step of the schedule",
     .options = fast_options, .n_options = N_OPTIONS(fast_options), .flags = DF_SAMPLER_ADAPTIVE,
     .sample = sample_dpm_fast},
    {DF_SAMPLER_DESC_INIT, .name = "dpm_adaptive", .description = "DPM-Solver-12/23 with adaptive step size",
     .options = adaptive_options, .n_options = N_OPTIONS(adaptive_options), .flags = DF_SAMPLER_ADAPTIVE,
     .sample = sample_dpm_adaptive},
};

DF_SAMPLER_PLUGIN("difusa-dpm-solver", samplers)
