/* UniPC (Zhao et al. 2023) as diffusers' UniPCMultistepScheduler runs it with
 * its defaults (data prediction, predictor UniP and corrector UniC, B(h) of
 * type bh1 or bh2, lower order at the end). In the variance-exploding sigmas
 * with λ = −log σ, h = λ' − λ, the data-prediction update
 *   x_t^vp = (σ_t^vp/σ_s^vp) x_s^vp − α_t (e^{−h} − 1) m_0 − α_t B(h) Σ ρ_k D1_k
 * divided by α_t is
 *   x' = (σ'/σ) x − (e^{−h} − 1) D − B(h) Σ_k ρ_k (D_k − D)/r_k,
 * r_k = (λ_k − λ)/h for the earlier steps k. The corrector redoes the last
 * step with the new evaluation once it is known, and the predictor continues
 * from the corrected point (no extra evaluation). */
#include "common.h"

#define MAX_ORDER 3

/* Solves the n×n system a x = b in place (partial pivoting); b receives x. */
static void solve(int n, double a[MAX_ORDER][MAX_ORDER], double *b)
{
    for (int c = 0; c < n; c++) {
        int p = c;
        for (int r = c + 1; r < n; r++)
            if (fabs(a[r][c]) > fabs(a[p][c])) p = r;
        for (int k = 0; k < n; k++) {
            double t = a[c][k];
            a[c][k] = a[p][k];
            a[p][k] = t;
        }
        double t = b[c];
        b[c] = b[p];
        b[p] = t;
        for (int r = c + 1; r < n; r++) {
            double f = a[r][c] / a[c][c];
            for (int k = c; k < n; k++) a[r][k] -= f * a[c][k];
            b[r] -= f * b[c];
        }
    }
    for (int r = n - 1; r >= 0; r--) {
        for (int k = r + 1; k < n; k++) b[r] -= a[r][k] * b[k];
        b[r] /= a[r][r];
    }
}

static double lambda_of(double sigma) { return -log(sigma); }

/* The update from σ_s = sig[s] to σ_t = sig[t]: out = c[0] x + c[1] m[0] + Σ c[k+1] m[k]
 * for the model outputs m[0] (at s), m[1] .. m[order-1] (at s-1, ...), and
 * with `corrector` the new output m_t as m[order] (coefficient c[order + 1]).
 * Returns the number of terms after x. */
static int unipc_coeffs(const double *sig, int s, int t, int order, int bh2, int corrector, double *c)
{
    double sigma_t = sig[t], sigma_s = sig[s];
    double h = lambda_of(sigma_t) - lambda_of(sigma_s), hh = -h; /* h = +inf when σ_t = 0 */
    double h_phi_1 = expm1(hh), b_h = bh2 ? expm1(hh) : hh;
    int n_prev = order - 1;
    double rks[MAX_ORDER];
    for (int k = 1; k < order; k++) rks[k - 1] = (lambda_of(sig[s - k]) - lambda_of(sigma_s)) / h;
    rks[n_prev] = 1;
    /* x' = (σ_t/σ_s) x − h_phi_1 m0 − B(h) (Σ ρ_k (m_k − m0)/r_k [+ ρ_last (m_t − m0)]) */
    c[0] = sigma_t / sigma_s;
    for (int k = 0; k <= order; k++) c[k + 1] = 0;
    c[1] = -h_phi_1;
    double rhos[MAX_ORDER];
    int n_rho = 0;
    if (corrector || n_prev > 0) {
        double a[MAX_ORDER][MAX_ORDER], b[MAX_ORDER], h_phi_k = h_phi_1 / hh - 1, fact = 1;
        for (int i = 1; i <= order; i++) {
            for (int k = 0; k < order; k++) a[i - 1][k] = pow(rks[k], i - 1);
            b[i - 1] = h_phi_k * fact / b_h;
            fact *= i + 1;
            h_phi_k = h_phi_k / hh - 1 / fact;
        }
        if (corrector) {
            n_rho = order;
            if (order == 1) rhos[0] = 0.5;
            else {
                solve(order, a, b);
                for (int k = 0; k < order; k++) rhos[k] = b[k];
            }
        } else {
            n_rho = n_prev;
            if (order == 2) rhos[0] = 0.5;
            else {
                solve(n_prev, a, b);
                for (int k = 0; k < n_prev; k++) rhos[k] = b[k];
            }
        }
    }
    for (int k = 0; k < n_prev && k < n_rho; k++) {
        double w = -b_h * rhos[k] / rks[k];
        c[k + 2] += w; /* m_{k+1} */
        c[1] -= w;     /* − m0 */
    }
    if (corrector) {
        double w = -b_h * rhos[order - 1];
        c[order + 1] += w; /* m_t */
        c[1] -= w;
    }
    return order + (corrector ? 1 : 0);
}

static int sample_unipc(const df_host_api *h, df_sampler_run *run, void *user, df_tensor *x, const double *sigmas,
                        int n)
{
    (void)user;
    int rc = 0, steps = n_steps_of(n), solver_order = (int)h->option(run, "order");
    int bh2 = h->option(run, "solver_type") == 1, lower_final = h->option(run, "lower_order_final") != 0;
    int use_corrector = h->option(run, "corrector") != 0, have = 0, last_order = 0;
    df_tensor *m[MAX_ORDER + 1] = {NULL}, *last = NULL; /* m[0]: the newest denoised */
    NEW_LIKE(last, x);
    for (int k = 0; k <= MAX_ORDER; k++) NEW_LIKE(m[k], x);
    for (int i = 0; i < steps; i++) {
        /* m[0] <- this step's denoised; m[1] .. m[3] the earlier ones */
        df_tensor *oldest = m[MAX_ORDER];
        for (int k = MAX_ORDER; k > 0; k--) m[k] = m[k - 1];
        m[0] = oldest;
        TRY(h->denoise(run, x, sigmas[i], m[0]));
        double c[MAX_ORDER + 2];
        const df_tensor *terms[MAX_ORDER + 2];
        if (use_corrector && i > 0) {
            /* UniC: redo the step σ_{i-1} -> σ_i from `last` with m[0] now known */
            int nt = unipc_coeffs(sigmas, i - 1, i, last_order, bh2, 1, c);
            terms[0] = last;
            for (int k = 0; k < last_order; k++) terms[k + 1] = m[k + 1];
            terms[last_order + 1] = m[0];
            TRY(h->lincomb(x, nt + 1, c, terms));
        }
        int order = solver_order;
        if (lower_final && steps - i < order) order = steps - i;
        if (have + 1 < order) order = have + 1;
        if (have < solver_order) have++;
        /* to σ = 0, h = ∞: only the first-order update is finite (diffusers' lower_order_final) */
        if (sigmas[i + 1] == 0) order = 1;
        TRY(h->copy(last, x));
        /* UniP: σ_i -> σ_{i+1} */
        int nt = unipc_coeffs(sigmas, i, i + 1, order, bh2, 0, c);
        terms[0] = x;
        for (int k = 0; k < order; k++) terms[k + 1] = m[k];
        TRY(h->lincomb(x, nt + 1, c, terms));
        last_order = order;
        TRY(h->step(run, i, steps, sigmas[i], sigmas[i + 1], x, m[0]));
    }
done:
    h->free(last);
    for (int k = 0; k <= MAX_ORDER; k++) h->free(m[k]);
    return rc;
}

static const df_sampler_option unipc_options[] = {
    {"order", DF_OPT_INT, 2, 1, MAX_ORDER, NULL, "solver order (diffusers' solver_order)"},
    {"solver_type", DF_OPT_CHOICE, 1, 0, 1, "bh1|bh2", "B(h): bh1 = h, bh2 = e^h - 1"},
    {"lower_order_final", DF_OPT_BOOL, 1, 0, 1, NULL, "lower the order on the last steps"},
    {"corrector", DF_OPT_BOOL, 1, 0, 1, NULL, "apply the UniC corrector (0: UniP alone)"},
};

static const df_sampler_desc unipc = {DF_SAMPLER_DESC_INIT,
                                      .name = "unipc",
                                      .description = "UniPC multistep predictor-corrector (diffusers)",
                                      .options = unipc_options,
                                      .n_options = N_OPTIONS(unipc_options),
                                      .sample = sample_unipc};

static int init(const df_host_api *h, df_plugin_registrar *reg) { return h->register_sampler(reg, &unipc); }

static const df_plugin_desc plugin = {DF_PLUGIN_DESC_INIT, .name = "difusa-unipc", .version = "1", .init = init};

DF_PLUGIN_EXPORT const df_plugin_desc *difusa_plugin_entry(void) { return &plugin; }
