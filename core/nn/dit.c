/* DiT: config from shapes, weights (original names; diffusers' aliased onto
 * them), forward in the order it runs. */
#include "dit.h"

#include "../backend.h"
#include "../io/json.h"
#include "blocks.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct dit_block {
    df_tensor *ada_w, *ada_b;          /* adaLN_modulation.1: (6·hidden, hidden) */
    df_tensor *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *qkv_w, *qkv_b;
    df_tensor *proj_w, *proj_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} dit_block;

struct df_dit {
    df_dit_config cfg;
    df_backend *be;
    df_tensor *patch_w, *patch_b;      /* x_embedder.proj: conv p x p, stride p */
    df_tensor *t1_w, *t1_b, *t2_w, *t2_b;
    df_tensor *y_table;                /* (classes + 1, hidden) on the CPU */
    df_tensor *pos;                    /* stored pos_embed (1, T, hidden) on the CPU, or NULL: computed */
    dit_block *blocks;
    df_tensor *final_ada_w, *final_ada_b, *final_w, *final_b;
};

const df_dit_config *df_dit_get_config(const df_dit *m) { return &m->cfg; }

df_dit_load_params df_dit_load_default_params(void) { return (df_dit_load_params){0}; }

void df_dit_free(df_dit *m)
{
    if (!m) return;
    for (int i = 0; m->blocks && i < m->cfg.depth; i++) nn_free_tensors(&m->blocks[i].ada_w, 16);
    df_free(m->blocks);
    nn_free_tensors(&m->patch_w, 8);
    nn_free_tensors(&m->final_ada_w, 4);
    df_free(m);
}

/* ---- diffusers' names mapped onto the original ones ---- */

#define NS "dit."

static int alias(df_weights *w, const char *orig, const char *real)
{
    char full[400];
    snprintf(full, sizeof full, NS "%s", orig);
    return df_weights_add_alias(w, full, real);
}

/* The original layout is aliased into NS as itself; a diffusers folder's
 * names are mapped (its q/k/v stay separate: the loader reads either). */
static int alias_names(df_weights *w, int *diffusers)
{
    int n = df_weights_count(w), rc = DF_OK;
    *diffusers = df_weights_find(w, "pos_embed.proj.weight") != NULL;
    if (!*diffusers) {
        for (int i = 0; i < n && !rc; i++) rc = alias(w, df_weights_at(w, i)->name, df_weights_at(w, i)->name);
        return rc;
    }
    static const char *const fixed[][2] = {
        {"x_embedder.proj.weight", "pos_embed.proj.weight"},
        {"x_embedder.proj.bias", "pos_embed.proj.bias"},
        {"t_embedder.mlp.0.weight", "transformer_blocks.0.norm1.emb.timestep_embedder.linear_1.weight"},
        {"t_embedder.mlp.0.bias", "transformer_blocks.0.norm1.emb.timestep_embedder.linear_1.bias"},
        {"t_embedder.mlp.2.weight", "transformer_blocks.0.norm1.emb.timestep_embedder.linear_2.weight"},
        {"t_embedder.mlp.2.bias", "transformer_blocks.0.norm1.emb.timestep_embedder.linear_2.bias"},
        {"y_embedder.embedding_table.weight", "transformer_blocks.0.norm1.emb.class_embedder.embedding_table.weight"},
        {"final_layer.adaLN_modulation.1.weight", "proj_out_1.weight"},
        {"final_layer.adaLN_modulation.1.bias", "proj_out_1.bias"},
        {"final_layer.linear.weight", "proj_out_2.weight"},
        {"final_layer.linear.bias", "proj_out_2.bias"},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0] && !rc; i++) rc = alias(w, fixed[i][0], fixed[i][1]);
    static const char *const per_block[][2] = {
        {"adaLN_modulation.1.weight", "norm1.linear.weight"}, {"adaLN_modulation.1.bias", "norm1.linear.bias"},
        {"attn.q.weight", "attn1.to_q.weight"},             {"attn.q.bias", "attn1.to_q.bias"},
        {"attn.k.weight", "attn1.to_k.weight"},             {"attn.k.bias", "attn1.to_k.bias"},
        {"attn.v.weight", "attn1.to_v.weight"},             {"attn.v.bias", "attn1.to_v.bias"},
        {"attn.proj.weight", "attn1.to_out.0.weight"},      {"attn.proj.bias", "attn1.to_out.0.bias"},
        {"mlp.fc1.weight", "ff.net.0.proj.weight"},         {"mlp.fc1.bias", "ff.net.0.proj.bias"},
        {"mlp.fc2.weight", "ff.net.2.weight"},              {"mlp.fc2.bias", "ff.net.2.bias"},
    };
    for (int b = 0; !rc && df_weights_findf(w, "transformer_blocks.%d.attn1.to_q.weight", b); b++)
        for (size_t i = 0; i < sizeof per_block / sizeof per_block[0] && !rc; i++) {
            char o[200], r[200];
            snprintf(o, sizeof o, "blocks.%d.%s", b, per_block[i][0]);
            snprintf(r, sizeof r, "transformer_blocks.%d.%s", b, per_block[i][1]);
            rc = alias(w, o, r);
        }
    return rc;
}

/* The DiT sizes' head counts by hidden width (S, B, L, XL). */
/* The head count from the folder's config.json (diffusers: num_attention_heads) or, for a single file
   X.safetensors, from an X.json beside it (DiT's own argument name num_heads, or num_attention_heads); 0 when
   neither says. */
static int config_heads(const df_weights *w)
{
    char *side = NULL;
    const char *cfg = df_weights_config(w);
    const char *path = df_weights_path(w);
    size_t n = strlen(path);
    if (!cfg && n > 12 && !strcmp(path + n - 12, ".safetensors")) {
        char *jp = df_malloc(n);
        if (jp) {
            memcpy(jp, path, n - 12);
            memcpy(jp + n - 12, ".json", 6);
            cfg = side = df_read_text_file(jp, 1 << 20);
            df_free(jp);
        }
    }
    int heads = 0;
    df_json *root = NULL;
    if (cfg && df_json_parse(cfg, strlen(cfg), &root) == DF_OK) {
        const char *keys[] = {"num_attention_heads", "num_heads"};
        for (int i = 0; i < 2 && !heads; i++) {
            const df_json *h = df_json_get(root, keys[i]);
            double d;
            if (h && h->type == DF_JSON_NUMBER && df_json_double(h, &d) == DF_OK && d >= 1 && d <= 4096) heads = (int)d;
        }
    }
    df_json_free(root);
    df_free(side);
    df_clear_error();
    return heads;
}

static int default_heads(int hidden)
{
    switch (hidden) {
    case 384: return 6;
    case 768: return 12;
    case 1024: return 16;
    case 1152: return 16;
    default: return hidden / 64 > 0 ? hidden / 64 : 1;
    }
}

/* Every tensor against the sizes read from x_embedder (hidden, in channels, patch), the first block's MLP
   width and the final layer's rows, so that a wrong file is named at load rather than at the first forward. */
static void expect_shapes(nn_loader *L, const df_dit *m)
{
    const df_dit_config *c = &m->cfg;
    int D = c->hidden, P = c->patch, rows = (int)m->final_w->shape[0];
    nn_expect(L, m->patch_w, NS, "x_embedder.proj.weight", 4, D, c->in_channels, P, P);
    nn_expect(L, m->patch_b, NS, "x_embedder.proj.bias", 1, D);
    nn_expect_linear(L, m->t1_w, m->t1_b, NS, "t_embedder.mlp.0", D, -1);
    nn_expect_linear(L, m->t2_w, m->t2_b, NS, "t_embedder.mlp.2", D, D);
    nn_expect(L, m->y_table, NS, "y_embedder.embedding_table.weight", 2, -1, D);
    nn_expect(L, m->pos, NS, "pos_embed", 3, 1, -1, D);
    nn_expect(L, m->blocks[0].fc1_w, NS, "blocks.0.mlp.fc1.weight", 2, -1, D);
    int M = L->rc ? 0 : (int)m->blocks[0].fc1_w->shape[0];
    for (int i = 0; i < c->depth && !L->rc; i++) {
        const dit_block *b = &m->blocks[i];
        char q[48];
        snprintf(q, sizeof q, NS "blocks.%d.", i);
        nn_expect_linear(L, b->ada_w, b->ada_b, q, "adaLN_modulation.1", 6 * D, D);
        if (!b->qkv_w) {
            nn_expect_linear(L, b->q_w, b->q_b, q, "attn.q", D, D);
            nn_expect_linear(L, b->k_w, b->k_b, q, "attn.k", D, D);
            nn_expect_linear(L, b->v_w, b->v_b, q, "attn.v", D, D);
        }
        nn_expect_linear(L, b->proj_w, b->proj_b, q, "attn.proj", D, D);
        nn_expect_linear(L, b->fc1_w, b->fc1_b, q, "mlp.fc1", M, D);
        nn_expect_linear(L, b->fc2_w, b->fc2_b, q, "mlp.fc2", D, M);
    }
    nn_expect_linear(L, m->final_ada_w, m->final_ada_b, NS, "final_layer.adaLN_modulation.1", 2 * D, D);
    nn_expect_linear(L, m->final_w, m->final_b, NS, "final_layer.linear", rows, D);
    if (!L->rc && rows != P * P * c->in_channels && rows != 2 * P * P * c->in_channels) {
        const df_st_info *fl = df_weights_find(L->w, NS "final_layer.linear.weight");
        L->rc = df_error(DF_ESHAPE,
                         "%s: tensor '%s' has %d rows, expected patch^2 x in channels = %d, or twice that with a "
                         "learned variance",
                         df_weights_path(L->w), fl->name, rows, P * P * c->in_channels);
    }
}

int df_dit_load(df_weights *w, df_backend *be, const df_dit_load_params *p, df_dit **out)
{
    *out = NULL;
    df_dit_load_params dp = df_dit_load_default_params();
    if (!p) p = &dp;
    int diffusers = 0, rc = DF_OK;
    if (!df_weights_find(w, NS "x_embedder.proj.weight") && (rc = alias_names(w, &diffusers))) return rc;
    diffusers = df_weights_find(w, "pos_embed.proj.weight") != NULL;
    const df_st_info *pe = df_weights_find(w, NS "x_embedder.proj.weight");
    const df_st_info *fl = df_weights_find(w, NS "final_layer.linear.weight");
    const df_st_info *yt = df_weights_find(w, NS "y_embedder.embedding_table.weight");
    if (!pe || !fl || !yt || pe->ndim != 4)
        return df_error(DF_ENOTFOUND, "%s: no DiT here (x_embedder / y_embedder / final_layer missing)",
                        df_weights_path(w));
    df_dit *m = df_calloc(1, sizeof *m);
    if (!m) return DF_ENOMEM;
    m->be = be ? be : df_backend_cpu();
    df_dit_config *c = &m->cfg;
    c->hidden = (int)pe->shape[0];
    c->in_channels = (int)pe->shape[1];
    c->patch = (int)pe->shape[2];
    c->out_channels = (int)(fl->shape[0] / ((int64_t)c->patch * c->patch));
    c->learn_sigma = c->out_channels == 2 * c->in_channels;
    c->num_classes = (int)yt->shape[0] - 1;
    c->time_shift = diffusers ? 1.0f : 0.0f;
    c->mlp_eps = diffusers ? 1e-5f : 1e-6f;
    while (df_weights_findf(w, NS "blocks.%d.adaLN_modulation.1.weight", c->depth)) c->depth++;
    c->heads = p->heads;
    if (!c->heads) c->heads = config_heads(w);
    if (!c->heads) c->heads = default_heads(c->hidden);
    if (!c->depth || c->hidden % c->heads) {
        rc = df_error(DF_EFORMAT, "%s: DiT with %d blocks and width %d does not split into %d heads", df_weights_path(w),
                      c->depth, c->hidden, c->heads);
        goto fail;
    }
    nn_loader L = {w, m->be, DF_OK};
    m->patch_w = nn_get(&L, 0, NS "x_embedder.proj.weight");
    m->patch_b = nn_get(&L, 0, NS "x_embedder.proj.bias");
    m->t1_w = nn_get(&L, 0, NS "t_embedder.mlp.0.weight");
    m->t1_b = nn_get(&L, 0, NS "t_embedder.mlp.0.bias");
    m->t2_w = nn_get(&L, 0, NS "t_embedder.mlp.2.weight");
    m->t2_b = nn_get(&L, 0, NS "t_embedder.mlp.2.bias");
    if (!L.rc) L.rc = df_weights_get(w, NS "y_embedder.embedding_table.weight", NULL, 1, &m->y_table);
    if (!L.rc && df_weights_find(w, NS "pos_embed")) L.rc = df_weights_get(w, NS "pos_embed", NULL, 1, &m->pos);
    if (!L.rc && !(m->blocks = df_calloc((size_t)c->depth, sizeof *m->blocks))) L.rc = DF_ENOMEM;
    for (int i = 0; i < c->depth && !L.rc; i++) {
        dit_block *b = &m->blocks[i];
        b->ada_w = nn_get(&L, 0, NS "blocks.%d.adaLN_modulation.1.weight", i);
        b->ada_b = nn_get(&L, 0, NS "blocks.%d.adaLN_modulation.1.bias", i);
        if (nn_has(&L, NS "blocks.%d.attn.qkv.weight", i)) { /* fused: q, k, v are row views */
            b->qkv_w = nn_get(&L, 0, NS "blocks.%d.attn.qkv.weight", i);
            b->qkv_b = nn_get(&L, 0, NS "blocks.%d.attn.qkv.bias", i);
            char q[48];
            snprintf(q, sizeof q, NS "blocks.%d.attn.", i);
            nn_expect_linear(&L, b->qkv_w, b->qkv_b, q, "qkv", 3 * c->hidden, c->hidden);
            if (!L.rc) L.rc = df_tensor_narrow0(b->qkv_w, 0, c->hidden, &b->q_w);
            if (!L.rc) L.rc = df_tensor_narrow0(b->qkv_w, c->hidden, c->hidden, &b->k_w);
            if (!L.rc) L.rc = df_tensor_narrow0(b->qkv_w, 2 * c->hidden, c->hidden, &b->v_w);
            if (!L.rc) L.rc = df_tensor_narrow0(b->qkv_b, 0, c->hidden, &b->q_b);
            if (!L.rc) L.rc = df_tensor_narrow0(b->qkv_b, c->hidden, c->hidden, &b->k_b);
            if (!L.rc) L.rc = df_tensor_narrow0(b->qkv_b, 2 * c->hidden, c->hidden, &b->v_b);
        } else {
            b->q_w = nn_get(&L, 0, NS "blocks.%d.attn.q.weight", i);
            b->q_b = nn_get(&L, 0, NS "blocks.%d.attn.q.bias", i);
            b->k_w = nn_get(&L, 0, NS "blocks.%d.attn.k.weight", i);
            b->k_b = nn_get(&L, 0, NS "blocks.%d.attn.k.bias", i);
            b->v_w = nn_get(&L, 0, NS "blocks.%d.attn.v.weight", i);
            b->v_b = nn_get(&L, 0, NS "blocks.%d.attn.v.bias", i);
        }
        b->proj_w = nn_get(&L, 0, NS "blocks.%d.attn.proj.weight", i);
        b->proj_b = nn_get(&L, 0, NS "blocks.%d.attn.proj.bias", i);
        b->fc1_w = nn_get(&L, 0, NS "blocks.%d.mlp.fc1.weight", i);
        b->fc1_b = nn_get(&L, 0, NS "blocks.%d.mlp.fc1.bias", i);
        b->fc2_w = nn_get(&L, 0, NS "blocks.%d.mlp.fc2.weight", i);
        b->fc2_b = nn_get(&L, 0, NS "blocks.%d.mlp.fc2.bias", i);
    }
    m->final_ada_w = nn_get(&L, 0, NS "final_layer.adaLN_modulation.1.weight");
    m->final_ada_b = nn_get(&L, 0, NS "final_layer.adaLN_modulation.1.bias");
    m->final_w = nn_get(&L, 0, NS "final_layer.linear.weight");
    m->final_b = nn_get(&L, 0, NS "final_layer.linear.bias");
    if (!L.rc) expect_shapes(&L, m);
    if ((rc = L.rc)) goto fail;
    c->mlp_hidden = (int)m->blocks[0].fc1_w->shape[0];
    *out = m;
    return DF_OK;
fail:
    df_dit_free(m);
    return rc;
}

/* ---- forward ---- */

/* DiT's fixed 2-D sine-cosine position embedding for a gh x gw grid, in
 * float64 as numpy computes it: token (i, j) gets [1d(j), 1d(i)], each half
 * [sin(p·ω), cos(p·ω)] with ω_k = 10000^(-k / (D/4)). -> (1, gh·gw, D) on the CPU */
static df_tensor *pos_embed(int64_t gh, int64_t gw, int64_t D)
{
    df_tensor *t = df_tensor_new(NULL, DF_F32, 3, (int64_t[]){1, gh * gw, D});
    if (!t) return NULL;
    float *d = df_tensor_data(t);
    int64_t half = D / 2, quarter = half / 2;
    for (int64_t i = 0; i < gh; i++)
        for (int64_t j = 0; j < gw; j++) {
            float *row = d + (i * gw + j) * D;
            for (int64_t k = 0; k < quarter; k++) {
                double omega = 1.0 / pow(10000.0, (double)k / (double)quarter);
                row[k] = (float)sin((double)j * omega);
                row[quarter + k] = (float)cos((double)j * omega);
                row[half + k] = (float)sin((double)i * omega);
                row[half + quarter + k] = (float)cos((double)i * omega);
            }
        }
    return t;
}

/* x + gate[:, None, :] · y; takes x and y. */
static int gated_add(df_tensor *x, const df_tensor *gate, df_tensor *y, df_tensor **out)
{
    df_tensor *g3 = NULL, *gy = NULL;
    int rc = df_tensor_reshape(gate, 3, (int64_t[]){gate->shape[0], 1, gate->shape[1]}, &g3);
    if (!rc) rc = df_mul(y, g3, &gy);
    df_tensor_free(g3);
    df_tensor_free(y);
    if (!rc) return nn_add_free(x, gy, out);
    df_tensor_free(x);
    return rc;
}

/* Chunk k of n along dim 1 of a (B, n·C) tensor, as a copy. */
static int chunk(const df_tensor *t, int k, int n, df_tensor **out)
{
    int64_t c = t->shape[1] / n;
    return df_slice(t, 1, k * c, (k + 1) * c, out);
}

static int block(const df_dit *m, const dit_block *b, df_tensor *x, const df_tensor *silu_c, df_tensor **out)
{
    const df_dit_config *c = &m->cfg;
    df_tensor *mod = NULL, *ch[6] = {0}, *h = NULL, *q = NULL, *k = NULL, *v = NULL, *a = NULL;
    int rc = df_linear(silu_c, b->ada_w, b->ada_b, &mod);
    for (int i = 0; i < 6 && !rc; i++) rc = chunk(mod, i, 6, &ch[i]); /* shift, scale, gate (msa), then (mlp) */
    df_tensor_free(mod);
    if (!rc) rc = df_layer_norm(x, NULL, NULL, 1e-6f, &h);
    NN_STEP(rc, h, df_modulate(h, ch[0], ch[1], &next_));
    if (!rc) rc = df_linear(h, b->q_w, b->q_b, &q);
    if (!rc) rc = df_linear(h, b->k_w, b->k_b, &k);
    if (!rc) rc = df_linear(h, b->v_w, b->v_b, &v);
    if (!rc) rc = df_attention(q, k, v, c->heads, 0.0f, &a);
    df_tensor_free(h), df_tensor_free(q), df_tensor_free(k), df_tensor_free(v);
    h = NULL;
    NN_STEP(rc, a, df_linear(a, b->proj_w, b->proj_b, &next_));
    if (!rc) rc = gated_add(x, ch[2], a, &x), a = NULL;
    else df_tensor_free(x), x = NULL;
    df_tensor_free(a);
    if (!rc) rc = df_layer_norm(x, NULL, NULL, c->mlp_eps, &h);
    NN_STEP(rc, h, df_modulate(h, ch[3], ch[4], &next_));
    NN_STEP(rc, h, df_linear(h, b->fc1_w, b->fc1_b, &next_));
    NN_STEP(rc, h, df_unary(DF_GELU_TANH, h, &next_));
    NN_STEP(rc, h, df_linear(h, b->fc2_w, b->fc2_b, &next_));
    if (!rc) rc = gated_add(x, ch[5], h, out), h = NULL, x = NULL;
    df_tensor_free(h);
    df_tensor_free(x);
    for (int i = 0; i < 6; i++) df_tensor_free(ch[i]);
    return rc;
}

int df_dit_forward(const df_dit *m, const df_tensor *x, const float *timesteps, const int32_t *labels, df_tensor **out)
{
    *out = NULL;
    const df_dit_config *c = &m->cfg;
    char b1[64];
    if (!x || x->ndim != 4 || x->shape[1] != c->in_channels || x->dtype != DF_F32 || x->shape[2] % c->patch ||
        x->shape[3] % c->patch)
        return df_error(DF_ESHAPE, "dit: x must be (B, %d, H, W) F32 with H, W multiples of %d, got %s", c->in_channels,
                        c->patch, x ? df_tensor_shape_str(x, b1, 64) : "NULL");
    if (!timesteps || !labels) return df_error(DF_EINVAL, "dit: timesteps and labels are required");
    int64_t B = x->shape[0], gh = x->shape[2] / c->patch, gw = x->shape[3] / c->patch, T = gh * gw, D = c->hidden;
    for (int64_t i = 0; i < B; i++)
        if (labels[i] < 0 || labels[i] > c->num_classes)
            return df_error(DF_EINVAL, "dit: class label %d outside 0..%d (%d is the null class)", labels[i],
                            c->num_classes, c->num_classes);
    if (m->pos && m->pos->shape[1] != T)
        return df_error(DF_ESHAPE, "dit: the checkpoint's position table has %lld tokens, the input makes %lld",
                        (long long)m->pos->shape[1], (long long)T);
    df_conv2d_params pp = {c->patch, c->patch, 0, 0, 0, 0};
    df_tensor *xin = NULL, *h = NULL, *th = NULL, *t = NULL, *te = NULL, *temb = NULL, *yh = NULL, *y = NULL;
    df_tensor *cond = NULL, *silu_c = NULL, *pos = NULL, *posd = NULL;
    /* patches: conv -> (B, D, gh, gw) -> (B, T, D), plus the position table */
    int rc = nn_on(m->be, x, &xin);
    if (!rc) rc = df_conv2d(xin, m->patch_w, m->patch_b, &pp, &h);
    df_tensor_free(xin);
    NN_STEP(rc, h, df_reshape(h, 3, (int64_t[]){B, D, T}, &next_));
    NN_STEP(rc, h, df_permute(h, (int[]){0, 2, 1}, &next_));
    if (!rc && !(pos = m->pos ? df_tensor_ref(m->pos) : pos_embed(gh, gw, D))) rc = DF_ENOMEM;
    if (!rc) rc = nn_on(m->be, pos, &posd);
    NN_STEP(rc, h, df_add(h, posd, &next_));
    df_tensor_free(pos), df_tensor_free(posd);
    /* c = t_embedder(t) + y_embedder(label) */
    if (!rc && !(th = df_tensor_from_data(DF_F32, 1, (int64_t[]){B}, timesteps))) rc = DF_ENOMEM;
    if (!rc) rc = nn_on(m->be, th, &t);
    if (!rc) rc = df_timestep_embedding(t, (int)m->t1_w->shape[1], 1, c->time_shift, 1.0f, 10000.0f, &te);
    if (!rc) rc = df_linear(te, m->t1_w, m->t1_b, &temb);
    NN_STEP(rc, temb, df_unary(DF_SILU, temb, &next_));
    NN_STEP(rc, temb, df_linear(temb, m->t2_w, m->t2_b, &next_));
    if (!rc && !(yh = df_tensor_new(NULL, DF_F32, 2, (int64_t[]){B, D}))) rc = DF_ENOMEM;
    for (int64_t i = 0; i < B && !rc; i++)
        memcpy((float *)df_tensor_data(yh) + i * D, (const float *)df_tensor_data(m->y_table) + (int64_t)labels[i] * D,
               (size_t)D * sizeof(float));
    if (!rc) rc = nn_on(m->be, yh, &y);
    if (!rc) rc = df_add(temb, y, &cond);
    if (!rc) rc = df_unary(DF_SILU, cond, &silu_c);
    df_tensor_free(th), df_tensor_free(t), df_tensor_free(te), df_tensor_free(temb), df_tensor_free(yh),
        df_tensor_free(y), df_tensor_free(cond);
    for (int i = 0; i < c->depth && !rc; i++) {
        df_tensor *hin = h;
        h = NULL;
        rc = block(m, &m->blocks[i], hin, silu_c, &h);
    }
    /* final layer: modulate(LN(x), shift, scale) -> linear -> unpatchify */
    df_tensor *fmod = NULL, *shift = NULL, *scale = NULL;
    if (!rc) rc = df_linear(silu_c, m->final_ada_w, m->final_ada_b, &fmod);
    if (!rc) rc = chunk(fmod, 0, 2, &shift);
    if (!rc) rc = chunk(fmod, 1, 2, &scale);
    NN_STEP(rc, h, df_layer_norm(h, NULL, NULL, 1e-6f, &next_));
    NN_STEP(rc, h, df_modulate(h, shift, scale, &next_));
    NN_STEP(rc, h, df_linear(h, m->final_w, m->final_b, &next_));
    df_tensor_free(fmod), df_tensor_free(shift), df_tensor_free(scale), df_tensor_free(silu_c);
    /* (B, gh·gw, p·p·C) -> (B, gh, gw, p, p, C) -> (B, C, gh, p, gw, p): two 4-d permutes */
    int64_t p = c->patch, C = c->out_channels;
    NN_STEP(rc, h, df_reshape(h, 4, (int64_t[]){B * gh, gw, p, p * C}, &next_));  /* (B·gh, gw, p, p·C) */
    NN_STEP(rc, h, df_permute(h, (int[]){0, 2, 1, 3}, &next_));                  /* (B·gh, p, gw, p·C) */
    NN_STEP(rc, h, df_reshape(h, 4, (int64_t[]){B, gh * p, gw * p, C}, &next_)); /* (B, H, W, C) */
    NN_STEP(rc, h, df_permute(h, (int[]){0, 3, 1, 2}, &next_));                  /* (B, C, H, W) */
    if (rc) {
        df_tensor_free(h);
        return rc;
    }
    *out = h;
    return DF_OK;
}
