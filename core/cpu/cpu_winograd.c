/* 3x3 stride-1 convolution by Winograd's minimal filtering, F(m x m, 3 x 3)
 * (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).
 *
 * Each m x m block of output pixels (a tile) is computed from an a x a patch
 * of input (a = m + 2) in the transformed domain, where the convolution
 * becomes a pointwise product: Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A. Summed
 * over input channels, the pointwise products are a² independent GEMMs
 *   M[ξ] (Cout x tiles) = U[ξ] (Cout x Cin) · V[ξ] (Cin x tiles),
 * which the tuned BLAS runs: 9 multiply-adds per output pixel and channel pair
 * become a²/m² (4 for m = 4 instead of 9: 2.25x fewer FLOPs).
 *
 * Memory stays bounded: output channels go in blocks whose U fits
 * WINO_U_BYTES, tiles in chunks whose V and M fit WINO_TILE_BYTES; U is
 * transformed once per block, V once per chunk and block (the transforms are
 * O(a² (a + 3)) per channel and tile, small against the GEMMs' O(a² Cin)).
 *
 * Accuracy: the interpolation points 0, ±1, ±2, ∞ of F(4, 3) keep f32 results
 * within a few ulp of the direct sum times the channel count, measured against
 * torch's convolutions in the op and model tests. */
#include "cpu.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#define WINO_U_BYTES (48u << 20)
#define WINO_TILE_BYTES (32u << 20)
#define WINO_MIN_TILES 64
#define M_OUT 4           /* output tile edge m */
#define A_IN (M_OUT + 2)  /* input patch edge a */
#define XI (A_IN * A_IN)  /* a²: transformed positions */

static const float BT[A_IN][A_IN] = {
    {4, 0, -5, 0, 1, 0}, {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
    {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1},
};
static const float G[A_IN][3] = {
    {1.0f / 4, 0, 0}, {-1.0f / 6, -1.0f / 6, -1.0f / 6}, {-1.0f / 6, 1.0f / 6, -1.0f / 6},
    {1.0f / 24, 1.0f / 12, 1.0f / 6}, {1.0f / 24, -1.0f / 12, 1.0f / 6}, {0, 0, 1},
};
static const float AT[M_OUT][A_IN] = {
    {1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1},
};

static size_t u_budget = WINO_U_BYTES, tile_budget = WINO_TILE_BYTES;

void df_cpu_winograd_set_budget(size_t u_bytes, size_t tile_bytes)
{
    u_budget = u_bytes ? u_bytes : WINO_U_BYTES;
    tile_budget = tile_bytes ? tile_bytes : WINO_TILE_BYTES;
}

int df_cpu_winograd_applies(const df_tensor *w, const df_conv2d_params *p, const df_tensor *y)
{
    /* Below this many tiles the per-call weight transform (a²/9 times the kernel's size, written once per call)
     * costs more than the GEMM work it saves; measured on SD1.5's UNet (8 x 8 and 16 x 16 latents lose). */
    int64_t tiles = y->shape[0] * ((y->shape[2] + M_OUT - 1) / M_OUT) * ((y->shape[3] + M_OUT - 1) / M_OUT);
    if (tiles < WINO_MIN_TILES) return 0;
    const char *mode = getenv("DIFUSA_CONV"); /* im2col turns it off, to measure one against the other */
    if (mode && !strcmp(mode, "im2col")) return 0;
    return w->shape[2] == 3 && w->shape[3] == 3 && p->stride_h == 1 && p->stride_w == 1 && p->pad_bottom == 0 &&
           p->pad_right == 0;
}

/* U[ξ][co][ci] for co in [co0, co0 + nco): G g Gᵀ of each 3x3 kernel. */
static void transform_weights(const float *w, int64_t cin, int64_t co0, int64_t nco, float *u)
{
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < nco; c++) {
        for (int64_t ci = 0; ci < cin; ci++) {
            const float *g = w + ((co0 + c) * cin + ci) * 9;
            float t[A_IN][3]; /* G g */
#pragma GCC unroll 6
            for (int i = 0; i < A_IN; i++)
                for (int l = 0; l < 3; l++) t[i][l] = G[i][0] * g[l] + G[i][1] * g[3 + l] + G[i][2] * g[6 + l];
#pragma GCC unroll 6
            for (int i = 0; i < A_IN; i++)
#pragma GCC unroll 6
                for (int j = 0; j < A_IN; j++)
                    u[((int64_t)(i * A_IN + j) * nco + c) * cin + ci] =
                        t[i][0] * G[j][0] + t[i][1] * G[j][1] + t[i][2] * G[j][2];
        }
    }
}

/* out = mat · in for a constant rows x a matrix and an a x a patch (inlined, so the zeros and ones fold). */
static inline void left_mul(int rows, const float mat[][A_IN], float in[A_IN][A_IN], float out[][A_IN])
{
#pragma GCC unroll 6
    for (int i = 0; i < rows; i++)
#pragma GCC unroll 6
        for (int c = 0; c < A_IN; c++) {
            float acc = 0;
#pragma GCC unroll 6
            for (int k = 0; k < A_IN; k++) acc += mat[i][k] * in[k][c];
            out[i][c] = acc;
        }
}

typedef struct {
    int64_t n, cin, h, w, th, tw, ho, wo;
    int pad_h, pad_w;
} geom;

/* V[ξ][ci][t] for the tiles [t0, t0 + nt) of the batch (tile t = (image, ty, tx)): Bᵀ d B of each patch. */
static void transform_input(const float *x, const geom *g, int64_t t0, int64_t nt, float *v)
{
#pragma omp parallel for schedule(static)
    for (int64_t ci = 0; ci < g->cin; ci++) {
        for (int64_t t = 0; t < nt; t++) {
            int64_t tile = t0 + t, img = tile / (g->th * g->tw), ty = (tile / g->tw) % g->th, tx = tile % g->tw;
            const float *src = x + (img * g->cin + ci) * g->h * g->w;
            int64_t y0 = ty * M_OUT - g->pad_h, x0 = tx * M_OUT - g->pad_w;
            float d[A_IN][A_IN];
            for (int r = 0; r < A_IN; r++) {
                int64_t iy = y0 + r;
                for (int c = 0; c < A_IN; c++) {
                    int64_t ix = x0 + c;
                    d[r][c] = (iy >= 0 && iy < g->h && ix >= 0 && ix < g->w) ? src[iy * g->w + ix] : 0.0f;
                }
            }
            float s[A_IN][A_IN];
            left_mul(A_IN, BT, d, s); /* Bᵀ d */
#pragma GCC unroll 6
            for (int i = 0; i < A_IN; i++)
#pragma GCC unroll 6
                for (int j = 0; j < A_IN; j++) {
                    float acc = 0;
#pragma GCC unroll 6
                    for (int k = 0; k < A_IN; k++) acc += s[i][k] * BT[j][k];
                    v[((int64_t)(i * A_IN + j) * g->cin + ci) * nt + t] = acc;
                }
        }
    }
}

/* y[image][co0 + c] from M[ξ][c][t]: Aᵀ M A of each tile, plus the bias, clipped to the output. */
static void transform_output(const float *mm, const geom *g, int64_t cout, int64_t co0, int64_t nco, const float *bias,
                             int64_t t0, int64_t nt, float *y)
{
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < nco; c++) {
        float b = bias ? bias[co0 + c] : 0.0f;
        for (int64_t t = 0; t < nt; t++) {
            int64_t tile = t0 + t, img = tile / (g->th * g->tw), ty = (tile / g->tw) % g->th, tx = tile % g->tw;
            float m[A_IN][A_IN], s[M_OUT][A_IN];
            for (int i = 0; i < A_IN; i++)
                for (int j = 0; j < A_IN; j++) m[i][j] = mm[((int64_t)(i * A_IN + j) * nco + c) * nt + t];
            left_mul(M_OUT, AT, m, s); /* Aᵀ M */
            float *dst = y + (img * cout + co0 + c) * g->ho * g->wo;
            for (int a = 0; a < M_OUT; a++) {
                int64_t oy = ty * M_OUT + a;
                if (oy >= g->ho) break;
                for (int bb = 0; bb < M_OUT; bb++) {
                    int64_t ox = tx * M_OUT + bb;
                    if (ox >= g->wo) break;
                    float acc = b;
#pragma GCC unroll 6
                    for (int k = 0; k < A_IN; k++) acc += s[a][k] * AT[bb][k];
                    dst[oy * g->wo + ox] = acc;
                }
            }
        }
    }
}

int df_cpu_conv2d_winograd(const float *x, const float *w, const float *bias, const df_tensor *xt,
                           const df_tensor *wt, const df_conv2d_params *p, df_tensor *yt)
{
    geom g = {xt->shape[0], xt->shape[1], xt->shape[2], xt->shape[3], 0, 0, yt->shape[2], yt->shape[3],
              p->pad_h, p->pad_w};
    int64_t cout = wt->shape[0];
    g.th = (g.ho + M_OUT - 1) / M_OUT;
    g.tw = (g.wo + M_OUT - 1) / M_OUT;
    int64_t tiles = g.n * g.th * g.tw;
    float *y = df_cpu_f32_mut(yt);
    if (!tiles || !cout) return DF_OK;
    /* output channels per block, tiles per chunk */
    int64_t cob = (int64_t)(u_budget / sizeof(float)) / (XI * (g.cin ? g.cin : 1));
    cob = cob < 16 ? 16 : cob > cout ? cout : cob;
    int64_t per_tile = XI * (g.cin > cob ? g.cin : cob);
    int64_t chunk = (int64_t)(tile_budget / sizeof(float)) / per_tile;
    chunk = chunk < 16 ? 16 : chunk > tiles ? tiles : chunk;
    size_t u_bytes = (size_t)(XI * cob * g.cin) * sizeof(float), v_bytes = (size_t)(XI * g.cin * chunk) * sizeof(float),
           m_bytes = (size_t)(XI * cob * chunk) * sizeof(float);
    float *u = df_cpu_scratch_alloc(u_bytes), *v = u ? df_cpu_scratch_alloc(v_bytes) : NULL,
          *mm = v ? df_cpu_scratch_alloc(m_bytes) : NULL;
    if (!mm) {
        df_cpu_scratch_free(u, u ? u_bytes : 0);
        df_cpu_scratch_free(v, v ? v_bytes : 0);
        return df_error_prefix(DF_ENOMEM, "conv2d: Winograd buffers for %lld channels", (long long)g.cin);
    }
    for (int64_t co0 = 0; co0 < cout; co0 += cob) {
        int64_t nco = cout - co0 < cob ? cout - co0 : cob;
        transform_weights(w, g.cin, co0, nco, u);
        for (int64_t t0 = 0; t0 < tiles; t0 += chunk) {
            int64_t nt = tiles - t0 < chunk ? tiles - t0 : chunk;
            transform_input(x, &g, t0, nt, v);
            for (int xi = 0; xi < XI; xi++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nco, (int)nt, (int)g.cin, 1.0f,
                            u + (int64_t)xi * nco * g.cin, (int)g.cin, v + (int64_t)xi * g.cin * nt, (int)nt, 0.0f,
                            mm + (int64_t)xi * nco * nt, (int)nt);
            transform_output(mm, &g, cout, co0, nco, bias, t0, nt, y);
        }
    }
    df_cpu_scratch_free(u, u_bytes);
    df_cpu_scratch_free(v, v_bytes);
    df_cpu_scratch_free(mm, m_bytes);
    return DF_OK;
}
