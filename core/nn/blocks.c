#include "blocks.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void nn_free_tensors(df_tensor **ts, int n)
{
    for (int i = 0; i < n; i++) {
        df_tensor_free(ts[i]);
        ts[i] = NULL;
    }
}

#define FREE_FIELDS(s) nn_free_tensors((df_tensor **)(s), (int)(sizeof *(s) / sizeof(df_tensor *)))

df_tensor *nn_get(nn_loader *L, int optional, const char *fmt, ...)
{
    if (L->rc) return NULL;
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    if (!df_weights_find(L->w, name)) {
        if (!optional) L->rc = df_error(DF_ENOTFOUND, "%s: tensor '%s' missing", df_weights_path(L->w), name);
        return NULL;
    }
    const df_st_info *info = df_weights_find(L->w, name);
    if (info->dtype != DF_F32 && info->dtype != DF_F16 && info->dtype != DF_BF16) {
        L->rc = df_error(DF_EDTYPE, "%s: tensor '%s' is %s, not a float type (F32, F16, BF16)", df_weights_path(L->w),
                         name, df_dtype_name(info->dtype));
        return NULL;
    }
    df_tensor *t = NULL;
    L->rc = df_weights_get(L->w, name, L->be, 0, &t);
    return t;
}

void nn_expect(nn_loader *L, const df_tensor *t, const char *prefix, const char *name, int ndim, ...)
{
    if (L->rc || !t) return;
    int64_t want[DF_MAX_DIMS];
    int ok = t->ndim == ndim && ndim <= DF_MAX_DIMS;
    va_list ap;
    va_start(ap, ndim);
    for (int i = 0; i < ndim && i < DF_MAX_DIMS; i++) {
        want[i] = va_arg(ap, int);
        if (i < t->ndim && want[i] >= 0 && t->shape[i] != want[i]) ok = 0;
    }
    va_end(ap);
    if (ok) return;
    char got[96], exp[96] = "(";
    size_t n = 1;
    for (int i = 0; i < ndim && i < DF_MAX_DIMS && n < sizeof exp; i++) {
        if (want[i] < 0) n += (size_t)snprintf(exp + n, sizeof exp - n, "%s*", i ? ", " : "");
        else n += (size_t)snprintf(exp + n, sizeof exp - n, "%s%lld", i ? ", " : "", (long long)want[i]);
    }
    if (n < sizeof exp) snprintf(exp + n, sizeof exp - n, ")");
    char full[512];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    const df_st_info *info = df_weights_find(L->w, full);
    L->rc = df_error(DF_ESHAPE, "%s: tensor '%s' has shape %s, expected %s", df_weights_path(L->w),
                     info ? info->name : full, df_tensor_shape_str(t, got, sizeof got), exp);
}

void nn_expect_linear(nn_loader *L, const df_tensor *w, const df_tensor *b, const char *prefix, const char *name,
                      int out, int in)
{
    char n[200];
    snprintf(n, sizeof n, "%s.weight", name);
    nn_expect(L, w, prefix, n, 2, out, in);
    snprintf(n, sizeof n, "%s.bias", name);
    nn_expect(L, b, prefix, n, 1, out);
}

int nn_has(const nn_loader *L, const char *fmt, ...)
{
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return df_weights_find(L->w, name) != NULL;
}

df_tensor *nn_as_linear(nn_loader *L, df_tensor *w)
{
    if (!w || w->ndim != 4) return w;
    df_tensor *v = NULL;
    if (L->rc == DF_OK) L->rc = df_tensor_reshape(w, 2, (int64_t[]){w->shape[0], w->shape[1]}, &v);
    df_tensor_free(w);
    return v;
}

int nn_on(df_backend *be, const df_tensor *t, df_tensor **out)
{
    if (df_tensor_backend(t) == be) {
        *out = df_tensor_ref(t);
        return *out ? DF_OK : DF_ENOMEM;
    }
    return df_tensor_to(t, be, out);
}

int nn_add_free(df_tensor *x, df_tensor *y, df_tensor **out)
{
    int rc = df_add(x, y, out);
    df_tensor_free(x);
    df_tensor_free(y);
    return rc;
}

/* ---- ResnetBlock2D ---- */

void nn_resnet_load(nn_loader *L, nn_resnet *r, const char *p, int groups, float eps)
{
    memset(r, 0, sizeof *r);
    r->groups = groups;
    r->eps = eps;
    r->norm1_w = nn_get(L, 0, "%snorm1.weight", p);
    r->norm1_b = nn_get(L, 0, "%snorm1.bias", p);
    r->conv1_w = nn_get(L, 0, "%sconv1.weight", p);
    r->conv1_b = nn_get(L, 0, "%sconv1.bias", p);
    r->temb_w = nn_get(L, 1, "%stime_emb_proj.weight", p);
    r->temb_b = nn_get(L, 1, "%stime_emb_proj.bias", p);
    r->norm2_w = nn_get(L, 0, "%snorm2.weight", p);
    r->norm2_b = nn_get(L, 0, "%snorm2.bias", p);
    r->conv2_w = nn_get(L, 0, "%sconv2.weight", p);
    r->conv2_b = nn_get(L, 0, "%sconv2.bias", p);
    r->short_w = nn_get(L, 1, "%sconv_shortcut.weight", p);
    r->short_b = nn_get(L, 1, "%sconv_shortcut.bias", p);
    nn_expect(L, r->norm1_w, p, "norm1.weight", 1, -1);
    nn_expect(L, r->conv1_b, p, "conv1.bias", 1, -1);
    if (L->rc) return;
    int in = (int)r->norm1_w->shape[0], out = (int)r->conv1_b->shape[0];
    nn_expect(L, r->norm1_b, p, "norm1.bias", 1, in);
    nn_expect(L, r->conv1_w, p, "conv1.weight", 4, out, in, 3, 3);
    nn_expect(L, r->temb_w, p, "time_emb_proj.weight", 2, out, -1);
    nn_expect(L, r->temb_b, p, "time_emb_proj.bias", 1, out);
    nn_expect(L, r->norm2_w, p, "norm2.weight", 1, out);
    nn_expect(L, r->norm2_b, p, "norm2.bias", 1, out);
    nn_expect(L, r->conv2_w, p, "conv2.weight", 4, out, out, 3, 3);
    nn_expect(L, r->conv2_b, p, "conv2.bias", 1, out);
    nn_expect(L, r->short_w, p, "conv_shortcut.weight", 4, out, in, 1, 1);
    nn_expect(L, r->short_b, p, "conv_shortcut.bias", 1, out);
    if (!L->rc && in != out && !r->short_w)
        L->rc = df_error(DF_ENOTFOUND, "%s: tensor '%sconv_shortcut.weight' missing (%d -> %d channels)",
                         df_weights_path(L->w), p, in, out);
}

void nn_resnet_free(nn_resnet *r) { nn_free_tensors(&r->norm1_w, 12); }

int nn_resnet_forward(const nn_resnet *r, const df_tensor *x, const df_tensor *temb, df_tensor **out)
{
    df_conv2d_params same = {1, 1, 1, 1, 0, 0};
    df_tensor *h = NULL, *t = NULL, *sc = NULL;
    int rc = df_group_norm(x, r->groups, r->norm1_w, r->norm1_b, r->eps, 1, &h);
    NN_STEP(rc, h, df_conv2d(h, r->conv1_w, r->conv1_b, &same, &next_));
    if (!rc && temb && r->temb_w) { /* + proj(silu(temb))[:, :, None, None] */
        df_tensor *t4 = NULL;
        rc = df_linear(temb, r->temb_w, r->temb_b, &t);
        if (!rc) rc = df_tensor_reshape(t, 4, (int64_t[]){t->shape[0], t->shape[1], 1, 1}, &t4);
        df_tensor_free(t);
        NN_STEP(rc, h, df_add(h, t4, &next_));
        df_tensor_free(t4);
    }
    NN_STEP(rc, h, df_group_norm(h, r->groups, r->norm2_w, r->norm2_b, r->eps, 1, &next_));
    NN_STEP(rc, h, df_conv2d(h, r->conv2_w, r->conv2_b, &same, &next_));
    if (!rc && r->short_w) {
        df_conv2d_params one = df_conv2d_default_params();
        rc = df_conv2d(x, r->short_w, r->short_b, &one, &sc);
    } else if (!rc && !(sc = df_tensor_ref(x))) {
        rc = DF_ENOMEM;
    }
    if (rc) {
        df_tensor_free(h);
        return rc;
    }
    return nn_add_free(sc, h, out);
}

/* ---- attention ---- */

void nn_attn_load(nn_loader *L, nn_attn *a, const char *p)
{
    memset(a, 0, sizeof *a);
    a->q_w = nn_as_linear(L, nn_get(L, 0, "%sto_q.weight", p));
    a->q_b = nn_get(L, 1, "%sto_q.bias", p);
    a->k_w = nn_as_linear(L, nn_get(L, 0, "%sto_k.weight", p));
    a->k_b = nn_get(L, 1, "%sto_k.bias", p);
    a->v_w = nn_as_linear(L, nn_get(L, 0, "%sto_v.weight", p));
    a->v_b = nn_get(L, 1, "%sto_v.bias", p);
    a->o_w = nn_as_linear(L, nn_get(L, 0, "%sto_out.0.weight", p));
    a->o_b = nn_get(L, 1, "%sto_out.0.bias", p);
    nn_expect(L, a->q_w, p, "to_q.weight", 2, -1, -1);
    nn_expect(L, a->k_w, p, "to_k.weight", 2, -1, -1);
    if (L->rc) return;
    int inner = (int)a->q_w->shape[0], dim = (int)a->q_w->shape[1], ctx = (int)a->k_w->shape[1];
    nn_expect(L, a->q_b, p, "to_q.bias", 1, inner);
    nn_expect_linear(L, a->k_w, a->k_b, p, "to_k", inner, ctx);
    nn_expect_linear(L, a->v_w, a->v_b, p, "to_v", inner, ctx);
    nn_expect_linear(L, a->o_w, a->o_b, p, "to_out.0", dim, inner);
}

void nn_attn_free(nn_attn *a) { FREE_FIELDS(a); }

int nn_attn_forward(const nn_attn *a, const df_tensor *x, const df_tensor *ctx, int heads, df_tensor **out)
{
    if (!ctx) ctx = x;
    df_tensor *q = NULL, *k = NULL, *v = NULL, *o = NULL;
    int rc = df_linear(x, a->q_w, a->q_b, &q);
    if (!rc) rc = df_linear(ctx, a->k_w, a->k_b, &k);
    if (!rc) rc = df_linear(ctx, a->v_w, a->v_b, &v);
    if (!rc) rc = df_attention(q, k, v, heads, 0.0f, &o);
    df_tensor_free(q), df_tensor_free(k), df_tensor_free(v);
    NN_STEP(rc, o, df_linear(o, a->o_w, a->o_b, &next_));
    *out = rc ? NULL : o;
    if (rc) df_tensor_free(o);
    return rc;
}

/* ---- Transformer2DModel ---- */

/* A transformer block's shapes, against the width `inner` of proj_in's output: the norms, the inputs of both
 * attentions, the GEGLU feed-forward (2 x ff wide in, ff wide out). */
static void tblock_expect(nn_loader *L, const nn_tblock *b, const char *p, int i, int inner)
{
    char q[512];
    snprintf(q, sizeof q, "%stransformer_blocks.%d.", p, i);
    nn_expect(L, b->ln1_w, q, "norm1.weight", 1, inner);
    nn_expect(L, b->ln1_b, q, "norm1.bias", 1, inner);
    nn_expect(L, b->ln2_w, q, "norm2.weight", 1, inner);
    nn_expect(L, b->ln2_b, q, "norm2.bias", 1, inner);
    nn_expect(L, b->ln3_w, q, "norm3.weight", 1, inner);
    nn_expect(L, b->ln3_b, q, "norm3.bias", 1, inner);
    /* (each attention's output width equals its query's input width: nn_attn_load checked that) */
    nn_expect(L, b->attn1.q_w, q, "attn1.to_q.weight", 2, -1, inner);
    nn_expect(L, b->attn2.q_w, q, "attn2.to_q.weight", 2, -1, inner);
    nn_expect(L, b->ff_in_w, q, "ff.net.0.proj.weight", 2, -1, inner);
    if (L->rc) return;
    int ff2 = (int)b->ff_in_w->shape[0];
    if (ff2 % 2) {
        L->rc = df_error(DF_ESHAPE, "%s: tensor '%sff.net.0.proj.weight' is %d wide, not even (GEGLU's two halves)",
                         df_weights_path(L->w), q, ff2);
        return;
    }
    nn_expect(L, b->ff_in_b, q, "ff.net.0.proj.bias", 1, ff2);
    nn_expect(L, b->ff_out_w, q, "ff.net.2.weight", 2, inner, ff2 / 2);
    nn_expect(L, b->ff_out_b, q, "ff.net.2.bias", 1, inner);
}

void nn_transformer_load(nn_loader *L, nn_transformer *t, const char *p, int heads, int groups)
{
    memset(t, 0, sizeof *t);
    t->heads = heads;
    t->groups = groups;
    t->norm_w = nn_get(L, 0, "%snorm.weight", p);
    t->norm_b = nn_get(L, 0, "%snorm.bias", p);
    t->in_w = nn_get(L, 0, "%sproj_in.weight", p);
    t->in_b = nn_get(L, 0, "%sproj_in.bias", p);
    t->out_w = nn_get(L, 0, "%sproj_out.weight", p);
    t->out_b = nn_get(L, 0, "%sproj_out.bias", p);
    nn_expect(L, t->norm_w, p, "norm.weight", 1, -1);
    if (L->rc) return;
    int ch = (int)t->norm_w->shape[0];
    t->linear_proj = t->in_w->ndim == 2;
    if (t->linear_proj) {
        nn_expect(L, t->in_w, p, "proj_in.weight", 2, -1, ch);
        if (!L->rc) nn_expect(L, t->out_w, p, "proj_out.weight", 2, ch, (int)t->in_w->shape[0]);
    } else {
        nn_expect(L, t->in_w, p, "proj_in.weight", 4, -1, ch, 1, 1);
        if (!L->rc) nn_expect(L, t->out_w, p, "proj_out.weight", 4, ch, (int)t->in_w->shape[0], 1, 1);
    }
    nn_expect(L, t->norm_b, p, "norm.bias", 1, ch);
    if (!L->rc) nn_expect(L, t->in_b, p, "proj_in.bias", 1, (int)t->in_w->shape[0]);
    nn_expect(L, t->out_b, p, "proj_out.bias", 1, ch);
    if (L->rc) return;
    while (nn_has(L, "%stransformer_blocks.%d.attn1.to_q.weight", p, t->depth)) t->depth++;
    if (!t->depth) {
        L->rc = df_error(DF_ENOTFOUND, "%s: '%s' has no transformer blocks", df_weights_path(L->w), p);
        return;
    }
    if (!(t->blocks = df_calloc((size_t)t->depth, sizeof *t->blocks))) {
        L->rc = DF_ENOMEM;
        return;
    }
    for (int i = 0; i < t->depth; i++) {
        nn_tblock *b = &t->blocks[i];
        char q[512];
        b->ln1_w = nn_get(L, 0, "%stransformer_blocks.%d.norm1.weight", p, i);
        b->ln1_b = nn_get(L, 0, "%stransformer_blocks.%d.norm1.bias", p, i);
        b->ln2_w = nn_get(L, 0, "%stransformer_blocks.%d.norm2.weight", p, i);
        b->ln2_b = nn_get(L, 0, "%stransformer_blocks.%d.norm2.bias", p, i);
        b->ln3_w = nn_get(L, 0, "%stransformer_blocks.%d.norm3.weight", p, i);
        b->ln3_b = nn_get(L, 0, "%stransformer_blocks.%d.norm3.bias", p, i);
        snprintf(q, sizeof q, "%stransformer_blocks.%d.attn1.", p, i);
        nn_attn_load(L, &b->attn1, q);
        snprintf(q, sizeof q, "%stransformer_blocks.%d.attn2.", p, i);
        nn_attn_load(L, &b->attn2, q);
        b->ff_in_w = nn_get(L, 0, "%stransformer_blocks.%d.ff.net.0.proj.weight", p, i);
        b->ff_in_b = nn_get(L, 0, "%stransformer_blocks.%d.ff.net.0.proj.bias", p, i);
        b->ff_out_w = nn_get(L, 0, "%stransformer_blocks.%d.ff.net.2.weight", p, i);
        b->ff_out_b = nn_get(L, 0, "%stransformer_blocks.%d.ff.net.2.bias", p, i);
        tblock_expect(L, b, p, i, (int)t->in_w->shape[0]);
    }
}

void nn_transformer_free(nn_transformer *t)
{
    for (int i = 0; t->blocks && i < t->depth; i++) {
        nn_tblock *b = &t->blocks[i];
        nn_free_tensors(&b->ln1_w, 6);
        nn_attn_free(&b->attn1);
        nn_attn_free(&b->attn2);
        nn_free_tensors(&b->ff_in_w, 4);
    }
    df_free(t->blocks);
    nn_free_tensors(&t->norm_w, 6);
}

/* x (B, N, C): x + attn1(ln1 x); + attn2(ln2 x, ctx); + ff(ln3 x). Takes x. */
static int tblock_forward(const nn_tblock *b, df_tensor *x, const df_tensor *ctx, int heads, df_tensor **out)
{
    const float eps = 1e-5f;
    df_tensor *h = NULL, *a = NULL;
    int rc = df_layer_norm(x, b->ln1_w, b->ln1_b, eps, &h);
    if (!rc) rc = nn_attn_forward(&b->attn1, h, NULL, heads, &a);
    df_tensor_free(h);
    h = NULL;
    if (!rc) rc = nn_add_free(x, a, &x); /* frees x and a (x: the sum, NULL on failure) */
    else df_tensor_free(x), x = NULL;
    a = NULL;
    if (!rc) rc = df_layer_norm(x, b->ln2_w, b->ln2_b, eps, &h);
    if (!rc) rc = nn_attn_forward(&b->attn2, h, ctx, heads, &a);
    df_tensor_free(h);
    h = NULL;
    if (!rc) rc = nn_add_free(x, a, &x);
    else df_tensor_free(a);
    if (!rc) rc = df_layer_norm(x, b->ln3_w, b->ln3_b, eps, &h);
    NN_STEP(rc, h, df_linear(h, b->ff_in_w, b->ff_in_b, &next_));
    NN_STEP(rc, h, df_geglu(h, &next_));
    NN_STEP(rc, h, df_linear(h, b->ff_out_w, b->ff_out_b, &next_));
    if (!rc) return nn_add_free(x, h, out);
    df_tensor_free(x);
    df_tensor_free(h);
    return rc;
}

/* (B, C, H, W) <-> (B, H·W, C) */
static int to_tokens(const df_tensor *x, df_tensor **out)
{
    df_tensor *f = NULL;
    int rc = df_tensor_reshape(x, 3, (int64_t[]){x->shape[0], x->shape[1], x->shape[2] * x->shape[3]}, &f);
    if (!rc) rc = df_permute(f, (int[]){0, 2, 1}, out);
    df_tensor_free(f);
    return rc;
}

static int to_image(const df_tensor *t, int64_t h, int64_t w, df_tensor **out)
{
    df_tensor *p = NULL;
    int rc = df_permute(t, (int[]){0, 2, 1}, &p);
    if (!rc) rc = df_tensor_reshape(p, 4, (int64_t[]){t->shape[0], t->shape[2], h, w}, out);
    df_tensor_free(p);
    return rc;
}

int nn_transformer_forward(const nn_transformer *t, const df_tensor *x, const df_tensor *ctx, df_tensor **out)
{
    int64_t H = x->shape[2], W = x->shape[3];
    df_conv2d_params one = df_conv2d_default_params();
    df_tensor *h = NULL;
    int rc = df_group_norm(x, t->groups, t->norm_w, t->norm_b, 1e-6f, 0, &h);
    if (t->linear_proj) {
        NN_STEP(rc, h, to_tokens(h, &next_));
        NN_STEP(rc, h, df_linear(h, t->in_w, t->in_b, &next_));
    } else {
        NN_STEP(rc, h, df_conv2d(h, t->in_w, t->in_b, &one, &next_));
        NN_STEP(rc, h, to_tokens(h, &next_));
    }
    for (int i = 0; i < t->depth && !rc; i++) {
        df_tensor *hin = h;
        h = NULL;
        rc = tblock_forward(&t->blocks[i], hin, ctx, t->heads, &h);
    }
    if (t->linear_proj) {
        NN_STEP(rc, h, df_linear(h, t->out_w, t->out_b, &next_));
        NN_STEP(rc, h, to_image(h, H, W, &next_));
    } else {
        NN_STEP(rc, h, to_image(h, H, W, &next_));
        NN_STEP(rc, h, df_conv2d(h, t->out_w, t->out_b, &one, &next_));
    }
    if (rc) {
        df_tensor_free(h);
        return rc;
    }
    rc = df_add(h, x, out);
    df_tensor_free(h);
    return rc;
}

/* ---- the VAE's spatial attention ---- */

void nn_spatial_attn_load(nn_loader *L, nn_spatial_attn *a, const char *p, int groups)
{
    memset(a, 0, sizeof *a);
    a->groups = groups;
    a->norm_w = nn_get(L, 0, "%sgroup_norm.weight", p);
    a->norm_b = nn_get(L, 0, "%sgroup_norm.bias", p);
    nn_attn_load(L, &a->attn, p);
}

void nn_spatial_attn_free(nn_spatial_attn *a)
{
    nn_free_tensors(&a->norm_w, 2);
    nn_attn_free(&a->attn);
}

int nn_spatial_attn_forward(const nn_spatial_attn *a, const df_tensor *x, df_tensor **out)
{
    int64_t H = x->shape[2], W = x->shape[3];
    df_tensor *h = NULL;
    int rc = df_group_norm(x, a->groups, a->norm_w, a->norm_b, 1e-6f, 0, &h);
    NN_STEP(rc, h, to_tokens(h, &next_));
    NN_STEP(rc, h, nn_attn_forward(&a->attn, h, NULL, 1, &next_));
    NN_STEP(rc, h, to_image(h, H, W, &next_));
    if (rc) {
        df_tensor_free(h);
        return rc;
    }
    rc = df_add(h, x, out);
    df_tensor_free(h);
    return rc;
}
