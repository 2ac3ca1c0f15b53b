/* CLIP text transformer: config from the checkpoint, weights, embedding,
 * forward (pre-LN blocks with causal self-attention), pooling, emphasis. */
#include "clip.h"

#include "../backend.h"
#include "../io/json.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- weights ---- */

typedef struct clip_layer {
    df_tensor *ln1_w, *ln1_b, *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *out_w, *out_b;
    df_tensor *ln2_w, *ln2_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} clip_layer;

struct df_clip {
    df_clip_config cfg;
    df_backend *be;
    df_tensor *tok_emb;   /* (vocab, width) on the CPU, stored dtype: looked up on the host */
    df_tensor *pos_emb;   /* (context, width) f32 on the CPU */
    clip_layer *layers;
    df_tensor *lnf_w, *lnf_b;
    df_tensor *proj;      /* HF: (proj, width) linear weight; OpenCLIP: (width, proj) matrix */
};

#define LAYER_TENSORS 16

static df_tensor **layer_slot(clip_layer *l, int i) { return &((df_tensor **)l)[i]; }

const df_clip_config *df_clip_get_config(const df_clip *m) { return &m->cfg; }

void df_clip_free(df_clip *m)
{
    if (!m) return;
    if (m->layers)
        for (int64_t i = 0; i < m->cfg.layers; i++)
            for (int j = 0; j < LAYER_TENSORS; j++) df_tensor_free(*layer_slot(&m->layers[i], j));
    df_free(m->layers);
    df_tensor_free(m->tok_emb);
    df_tensor_free(m->pos_emb);
    df_tensor_free(m->lnf_w);
    df_tensor_free(m->lnf_b);
    df_tensor_free(m->proj);
    df_free(m);
}

typedef struct loader {
    const df_weights *w;
    const char *prefix;
    df_backend *be;
    int rc;
} loader;

/* Tensor prefix+name with the expected shape (n dims, -1 = any), on `be`. */
static df_tensor *get(loader *L, df_backend *be, int want_f32, const char *name, int ndim, int64_t d0, int64_t d1)
{
    if (L->rc) return NULL;
    char full[512];
    snprintf(full, sizeof full, "%s%s", L->prefix, name);
    const df_st_info *info = df_weights_find(L->w, full);
    if (!info) {
        L->rc = df_error(DF_ENOTFOUND, "%s: CLIP text encoder tensor '%s' missing", df_weights_path(L->w), full);
        return NULL;
    }
    if (info->ndim != ndim || (d0 >= 0 && info->shape[0] != d0) || (ndim > 1 && d1 >= 0 && info->shape[1] != d1)) {
        L->rc = df_error(DF_ESHAPE, "%s: CLIP tensor '%s' has %d dims (%lld, %lld), expected (%lld, %lld)",
                         df_weights_path(L->w), full, info->ndim, (long long)info->shape[0],
                         (long long)(info->ndim > 1 ? info->shape[1] : 0), (long long)d0, (long long)d1);
        return NULL;
    }
    df_tensor *t = NULL;
    L->rc = df_weights_get(L->w, full, be, want_f32, &t);
    return t;
}

/* Rows [i·n, (i+1)·n) of a fused (3n, ...) projection, as a view. */
static df_tensor *third(loader *L, df_tensor *fused, int i, int64_t n)
{
    if (L->rc || !fused) return NULL;
    df_tensor *v = NULL;
    L->rc = df_tensor_narrow0(fused, i * n, n, &v);
    return v;
}

static int count_layers(const df_weights *w, const char *prefix, df_clip_layout layout)
{
    int n = 0;
    while (layout == DF_CLIP_LAYOUT_HF
               ? df_weights_findf(w, "%sencoder.layers.%d.self_attn.q_proj.weight", prefix, n) != NULL
               : df_weights_findf(w, "%stransformer.resblocks.%d.attn.in_proj_weight", prefix, n) != NULL)
        n++;
    return n;
}

/* hidden_act / num_attention_heads / layer_norm_eps from a diffusers
 * config.json, when the folder has one. */
static void read_config(const df_weights *w, df_clip_config *c)
{
    const char *text = df_weights_config(w);
    df_json *root = NULL;
    if (!text || df_json_parse(text, strlen(text), &root) != DF_OK) {
        df_clear_error();
        return;
    }
    const df_json *act = df_json_get(root, "hidden_act");
    if (act && act->type == DF_JSON_STRING) c->act = !strcmp(act->str, "quick_gelu") ? DF_QUICK_GELU : DF_GELU;
    const df_json *heads = df_json_get(root, "num_attention_heads");
    uint64_t h;
    const char *why;
    if (heads && heads->type == DF_JSON_NUMBER && df_json_u64(heads, &h, &why) == DF_OK && h > 0) c->heads = (int64_t)h;
    const df_json *eps = df_json_get(root, "layer_norm_eps");
    double e;
    if (eps && eps->type == DF_JSON_NUMBER && df_json_double(eps, &e) == DF_OK) c->eps = (float)e;
    df_json_free(root);
}

int df_clip_load(const df_weights *w, const char *prefix, df_backend *be, df_clip **out)
{
    *out = NULL;
    if (!prefix) prefix = "";
    df_clip *m = df_calloc(1, sizeof *m);
    if (!m) return DF_ENOMEM;
    df_clip_config *c = &m->cfg;
    const char *tok_name;
    if (df_weights_findf(w, "%sembeddings.token_embedding.weight", prefix)) {
        c->layout = DF_CLIP_LAYOUT_HF;
        c->act = DF_QUICK_GELU;
        tok_name = "embeddings.token_embedding.weight";
    } else if (df_weights_findf(w, "%stoken_embedding.weight", prefix) &&
               df_weights_findf(w, "%stransformer.resblocks.0.attn.in_proj_weight", prefix)) {
        c->layout = DF_CLIP_LAYOUT_OPENCLIP;
        c->act = DF_GELU;
        tok_name = "token_embedding.weight";
    } else {
        df_free(m);
        return df_error(DF_ENOTFOUND, "%s: no CLIP text encoder under '%s' (neither transformers' nor OpenCLIP's names)",
                        df_weights_path(w), prefix);
    }
    m->be = be ? be : df_backend_cpu();
    loader L = {w, prefix, m->be, DF_OK};
    int hf = c->layout == DF_CLIP_LAYOUT_HF;
    m->tok_emb = get(&L, NULL, 0, tok_name, 2, -1, -1);
    if (L.rc) goto fail;
    c->vocab = m->tok_emb->shape[0];
    c->width = m->tok_emb->shape[1];
    c->eps = 1e-5f;
    c->heads = c->width / 64 > 0 ? c->width / 64 : 1;
    if (hf) read_config(w, c);
    if (c->heads < 1 || c->width % c->heads) {
        L.rc = df_error(DF_ESHAPE, "%s: width %lld not divisible into %lld heads", df_weights_path(w),
                        (long long)c->width, (long long)c->heads);
        goto fail;
    }
    m->pos_emb = get(&L, NULL, 1, hf ? "embeddings.position_embedding.weight" : "positional_embedding", 2, -1, c->width);
    if (L.rc) goto fail;
    c->context = m->pos_emb->shape[0];
    c->layers = count_layers(w, prefix, c->layout);
    if (c->layers == 0) {
        L.rc = df_error(DF_ENOTFOUND, "%s: CLIP text encoder under '%s' has no layers", df_weights_path(w), prefix);
        goto fail;
    }
    if (!(m->layers = df_calloc((size_t)c->layers, sizeof *m->layers))) {
        L.rc = DF_ENOMEM;
        goto fail;
    }
    int64_t W = c->width;
    for (int64_t i = 0; i < c->layers && !L.rc; i++) {
        clip_layer *l = &m->layers[i];
        char n[160];
#define P(fmt) (snprintf(n, sizeof n, fmt, (int)i), n)
        if (hf) {
            l->ln1_w = get(&L, be, 0, P("encoder.layers.%d.layer_norm1.weight"), 1, W, 0);
            l->ln1_b = get(&L, be, 0, P("encoder.layers.%d.layer_norm1.bias"), 1, W, 0);
            l->q_w = get(&L, be, 0, P("encoder.layers.%d.self_attn.q_proj.weight"), 2, W, W);
            l->q_b = get(&L, be, 0, P("encoder.layers.%d.self_attn.q_proj.bias"), 1, W, 0);
            l->k_w = get(&L, be, 0, P("encoder.layers.%d.self_attn.k_proj.weight"), 2, W, W);
            l->k_b = get(&L, be, 0, P("encoder.layers.%d.self_attn.k_proj.bias"), 1, W, 0);
            l->v_w = get(&L, be, 0, P("encoder.layers.%d.self_attn.v_proj.weight"), 2, W, W);
            l->v_b = get(&L, be, 0, P("encoder.layers.%d.self_attn.v_proj.bias"), 1, W, 0);
            l->out_w = get(&L, be, 0, P("encoder.layers.%d.self_attn.out_proj.weight"), 2, W, W);
            l->out_b = get(&L, be, 0, P("encoder.layers.%d.self_attn.out_proj.bias"), 1, W, 0);
            l->ln2_w = get(&L, be, 0, P("encoder.layers.%d.layer_norm2.weight"), 1, W, 0);
            l->ln2_b = get(&L, be, 0, P("encoder.layers.%d.layer_norm2.bias"), 1, W, 0);
            l->fc1_w = get(&L, be, 0, P("encoder.layers.%d.mlp.fc1.weight"), 2, -1, W);
            l->fc1_b = get(&L, be, 0, P("encoder.layers.%d.mlp.fc1.bias"), 1, -1, 0);
            l->fc2_w = get(&L, be, 0, P("encoder.layers.%d.mlp.fc2.weight"), 2, W, -1);
            l->fc2_b = get(&L, be, 0, P("encoder.layers.%d.mlp.fc2.bias"), 1, W, 0);
        } else {
            l->ln1_w = get(&L, be, 0, P("transformer.resblocks.%d.ln_1.weight"), 1, W, 0);
            l->ln1_b = get(&L, be, 0, P("transformer.resblocks.%d.ln_1.bias"), 1, W, 0);
            df_tensor *in_w = get(&L, be, 0, P("transformer.resblocks.%d.attn.in_proj_weight"), 2, 3 * W, W);
            df_tensor *in_b = get(&L, be, 0, P("transformer.resblocks.%d.attn.in_proj_bias"), 1, 3 * W, 0);
            l->q_w = third(&L, in_w, 0, W);
            l->k_w = third(&L, in_w, 1, W);
            l->v_w = third(&L, in_w, 2, W);
            l->q_b = third(&L, in_b, 0, W);
            l->k_b = third(&L, in_b, 1, W);
            l->v_b = third(&L, in_b, 2, W);
            df_tensor_free(in_w); /* the views keep the buffers */
            df_tensor_free(in_b);
            l->out_w = get(&L, be, 0, P("transformer.resblocks.%d.attn.out_proj.weight"), 2, W, W);
            l->out_b = get(&L, be, 0, P("transformer.resblocks.%d.attn.out_proj.bias"), 1, W, 0);
            l->ln2_w = get(&L, be, 0, P("transformer.resblocks.%d.ln_2.weight"), 1, W, 0);
            l->ln2_b = get(&L, be, 0, P("transformer.resblocks.%d.ln_2.bias"), 1, W, 0);
            l->fc1_w = get(&L, be, 0, P("transformer.resblocks.%d.mlp.c_fc.weight"), 2, -1, W);
            l->fc1_b = get(&L, be, 0, P("transformer.resblocks.%d.mlp.c_fc.bias"), 1, -1, 0);
            l->fc2_w = get(&L, be, 0, P("transformer.resblocks.%d.mlp.c_proj.weight"), 2, W, -1);
            l->fc2_b = get(&L, be, 0, P("transformer.resblocks.%d.mlp.c_proj.bias"), 1, W, 0);
        }
#undef P
    }
    if (L.rc) goto fail;
    c->ff = m->layers[0].fc1_w->shape[0];
    m->lnf_w = get(&L, be, 0, hf ? "final_layer_norm.weight" : "ln_final.weight", 1, W, 0);
    m->lnf_b = get(&L, be, 0, hf ? "final_layer_norm.bias" : "ln_final.bias", 1, W, 0);
    if (L.rc) goto fail;
    /* The projection sits beside text_model. in transformers' layout. */
    if (hf) {
        size_t pl = strlen(prefix), tl = strlen("text_model.");
        char root[400];
        snprintf(root, sizeof root, "%.*s", (int)(pl >= tl && !strcmp(prefix + pl - tl, "text_model.") ? pl - tl : pl),
                 prefix);
        loader R = {w, root, be, DF_OK};
        if (df_weights_findf(w, "%stext_projection.weight", root)) {
            m->proj = get(&R, be, 1, "text_projection.weight", 2, -1, W);
            if ((L.rc = R.rc)) goto fail;
            c->proj_dim = m->proj->shape[0];
        }
    } else if (df_weights_findf(w, "%stext_projection", prefix)) {
        m->proj = get(&L, be, 1, "text_projection", 2, W, -1);
        if (L.rc) goto fail;
        c->proj_dim = m->proj->shape[1];
    }
    *out = m;
    return DF_OK;
fail:
    df_clip_free(m);
    return L.rc ? L.rc : DF_ENOMEM;
}

/* ---- embedding ---- */

/* Row `id` of the token table into dst (f32). */
static void token_row(const df_clip *m, int32_t id, float *dst)
{
    size_t es = df_dtype_size(m->tok_emb->dtype);
    const char *row = (const char *)df_tensor_data(m->tok_emb) + (size_t)id * (size_t)m->cfg.width * es;
    df_convert_to_f32(m->tok_emb->dtype, row, dst, m->cfg.width);
}

static int embed(const df_clip *m, const int32_t *ids, int batch, int len, const df_token_chunks *c,
                 const df_embeddings *emb, df_tensor **out)
{
    *out = NULL;
    int64_t W = m->cfg.width;
    if (len > m->cfg.context)
        return df_error(DF_EINVAL, "clip: %d tokens exceed the encoder's context of %lld", len, (long long)m->cfg.context);
    for (int64_t i = 0; i < (int64_t)batch * len; i++)
        if (ids[i] < 0 || ids[i] >= m->cfg.vocab)
            return df_error(DF_EINVAL, "clip: token id %d outside the vocabulary of %lld", ids[i],
                            (long long)m->cfg.vocab);
    df_tensor *x = df_tensor_new(NULL, DF_F32, 3, (int64_t[]){batch, len, W});
    if (!x) return DF_ENOMEM;
    float *d = df_tensor_data(x);
    const float *pos = df_tensor_data(m->pos_emb);
    for (int64_t b = 0; b < batch; b++)
        for (int64_t t = 0; t < len; t++) token_row(m, ids[b * len + t], d + (b * len + t) * W);
    for (int i = 0; c && i < c->n_custom; i++) {
        const struct df_custom_token *ct = &c->custom[i];
        const df_tensor *vec = emb ? df_embeddings_get(emb, ct->name, W) : NULL;
        if (!vec || ct->vector >= vec->shape[0] || ct->chunk >= batch || ct->pos >= len) {
            df_tensor_free(x);
            return df_error(DF_EINVAL, "clip: textual-inversion embedding '%s' has no vector %d of width %lld",
                            ct->name ? ct->name : "?", ct->vector, (long long)W);
        }
        memcpy(d + ((int64_t)ct->chunk * len + ct->pos) * W, (const float *)df_tensor_data(vec) + ct->vector * W,
               (size_t)W * sizeof(float));
    }
    for (int64_t b = 0; b < batch; b++)
        for (int64_t i = 0; i < len * W; i++) d[b * len * W + i] += pos[i];
    if (m->be == df_backend_cpu()) {
        *out = x;
        return DF_OK;
    }
    int rc = df_tensor_to(x, m->be, out);
    df_tensor_free(x);
    return rc;
}

int df_clip_embed_ids(const df_clip *m, const int32_t *ids, int batch, int len, df_tensor **out)
{
    return embed(m, ids, batch, len, NULL, NULL, out);
}

int df_clip_embed_chunks(const df_clip *m, const df_token_chunks *c, const df_embeddings *emb, df_tensor **out)
{
    return embed(m, c->ids, c->n_chunks, DF_CLIP_CONTEXT, c, emb, out);
}

/* ---- forward ---- */

df_clip_forward_params df_clip_forward_default_params(void) { return (df_clip_forward_params){-1, 1, 0}; }

/* x + f(x) for the two halves of a block; frees x, returns the sum in *out. */
static int residual(df_tensor *x, df_tensor *fx, df_tensor **out)
{
    int rc = df_add(x, fx, out);
    df_tensor_free(x);
    df_tensor_free(fx);
    return rc;
}

/* One pre-LN block: x + attn(ln1(x)), then + mlp(ln2(x)). Takes x (freed on failure too); *out may be the
 * caller's x, so it is cleared first: on failure it is NULL. */
static int block(const df_clip *m, const clip_layer *l, df_tensor *x, df_tensor **out)
{
    *out = NULL;
    const df_clip_config *c = &m->cfg;
    df_tensor *h = NULL, *q = NULL, *k = NULL, *v = NULL, *a = NULL, *o = NULL, *f = NULL;
    int rc = df_layer_norm(x, l->ln1_w, l->ln1_b, c->eps, &h);
    if (!rc) rc = df_linear(h, l->q_w, l->q_b, &q);
    if (!rc) rc = df_linear(h, l->k_w, l->k_b, &k);
    if (!rc) rc = df_linear(h, l->v_w, l->v_b, &v);
    if (!rc) rc = df_attention_causal(q, k, v, (int)c->heads, 0.0f, &a);
    if (!rc) rc = df_linear(a, l->out_w, l->out_b, &o);
    df_tensor_free(h), df_tensor_free(q), df_tensor_free(k), df_tensor_free(v), df_tensor_free(a);
    h = q = NULL;
    if (rc) {
        df_tensor_free(x);
        return rc;
    }
    if ((rc = residual(x, o, &x))) return rc;
    rc = df_layer_norm(x, l->ln2_w, l->ln2_b, c->eps, &h);
    if (!rc) rc = df_linear(h, l->fc1_w, l->fc1_b, &f);
    if (!rc) rc = df_unary(c->act, f, &q);
    df_tensor_free(f), df_tensor_free(h);
    f = NULL;
    if (!rc) rc = df_linear(q, l->fc2_w, l->fc2_b, &f);
    df_tensor_free(q);
    if (rc) {
        df_tensor_free(x);
        return rc;
    }
    return residual(x, f, out);
}

/* The first EOS of each row (the highest id where there is none). */
static int64_t eos_position(const int32_t *row, int64_t len)
{
    int64_t best = 0;
    for (int64_t t = 0; t < len; t++) {
        if (row[t] == DF_CLIP_EOS) return t;
        if (row[t] > row[best]) best = t;
    }
    return best;
}

static int pool(const df_clip *m, const df_tensor *last, const int32_t *ids, df_tensor **out)
{
    int64_t B = last->shape[0], L = last->shape[1], W = m->cfg.width;
    df_tensor *flat = NULL, *normed = NULL, *rows[64] = {0}, *pooled = NULL;
    if (B > 64) return df_error(DF_EINVAL, "clip: pooling supports at most 64 rows, got %lld", (long long)B);
    int rc = df_layer_norm(last, m->lnf_w, m->lnf_b, m->cfg.eps, &normed);
    if (!rc) rc = df_tensor_reshape(normed, 2, (int64_t[]){B * L, W}, &flat);
    for (int64_t b = 0; !rc && b < B; b++) rc = df_tensor_narrow0(flat, b * L + eos_position(ids + b * L, L), 1, &rows[b]);
    if (!rc) rc = df_concat((int)B, (const df_tensor *const *)rows, 0, &pooled);
    for (int64_t b = 0; b < B; b++) df_tensor_free(rows[b]);
    df_tensor_free(flat);
    df_tensor_free(normed);
    if (rc || !m->proj) {
        *out = rc ? NULL : pooled;
        if (rc) df_tensor_free(pooled);
        return rc;
    }
    /* transformers: a bias-free linear; OpenCLIP: pooled @ text_projection */
    if (m->cfg.layout == DF_CLIP_LAYOUT_HF) {
        rc = df_linear(pooled, m->proj, NULL, out);
    } else {
        df_tensor *p3 = NULL;
        rc = df_matmul(pooled, m->proj, 0, 0, &p3);
        if (!rc) rc = df_tensor_reshape(p3, 2, (int64_t[]){B, m->cfg.proj_dim}, out);
        df_tensor_free(p3);
    }
    df_tensor_free(pooled);
    return rc;
}

int df_clip_forward(const df_clip *m, const df_tensor *x, const int32_t *ids, const df_clip_forward_params *p,
                    df_tensor **hidden, df_tensor **pooled)
{
    df_clip_forward_params dp = df_clip_forward_default_params();
    if (!p) p = &dp;
    *hidden = NULL;
    if (pooled) *pooled = NULL;
    const df_clip_config *c = &m->cfg;
    if (!x || x->ndim != 3 || x->shape[2] != c->width || x->dtype != DF_F32) {
        char b[64];
        return df_error(DF_ESHAPE, "clip: input must be (B, L, %lld) F32, got %s", (long long)c->width,
                        x ? df_tensor_shape_str(x, b, sizeof b) : "NULL");
    }
    if (p->layer >= 0 || -p->layer > c->layers)
        return df_error(DF_EINVAL, "clip: layer %d out of range (-1 .. -%lld)", p->layer, (long long)c->layers);
    if (p->pooled && !pooled) return df_error(DF_EINVAL, "clip: pooled output asked for without a place to put it");
    int64_t keep = c->layers + 1 + p->layer; /* number of layers whose output is the wanted hidden state */
    int64_t run = p->pooled ? c->layers : keep;
    df_tensor *h = df_tensor_ref(x), *kept = NULL;
    if (!h) return DF_ENOMEM;
    int rc = DF_OK;
    for (int64_t i = 0; i < run && !rc; i++) {
        rc = block(m, &m->layers[i], h, &h);
        if (!rc && i + 1 == keep && !(kept = df_tensor_ref(h))) rc = DF_ENOMEM;
    }
    if (!rc && p->pooled) rc = pool(m, h, ids, pooled);
    df_tensor_free(h);
    if (!rc && p->final_norm) {
        df_tensor *n = NULL;
        rc = df_layer_norm(kept, m->lnf_w, m->lnf_b, c->eps, &n);
        df_tensor_free(kept);
        kept = n;
    }
    if (rc) {
        df_tensor_free(kept);
        if (pooled) {
            df_tensor_free(*pooled);
            *pooled = NULL;
        }
        return rc;
    }
    *hidden = kept;
    return DF_OK;
}

/* ---- emphasis ---- */

static int tensor_mean(const df_tensor *t, double *mean)
{
    df_tensor *flat = NULL, *r = NULL, *host = NULL;
    int rc = df_tensor_reshape(t, 1, (int64_t[]){df_tensor_numel(t)}, &flat);
    if (!rc) rc = df_reduce(DF_REDUCE_MEAN, flat, 0, 0, &r);
    if (!rc) rc = df_tensor_to(r, NULL, &host);
    if (!rc) *mean = ((const float *)df_tensor_data(host))[0];
    df_tensor_free(flat);
    df_tensor_free(r);
    df_tensor_free(host);
    return rc;
}

int df_clip_apply_emphasis(df_tensor *z, const float *weights, df_tensor **out)
{
    *out = NULL;
    if (!z || z->ndim != 3 || z->dtype != DF_F32) return df_error(DF_ESHAPE, "clip emphasis: z must be (chunks, tokens, width) F32");
    int64_t n = z->shape[0], L = z->shape[1];
    df_tensor *parts[64] = {0};
    if (n > 64) return df_error(DF_EINVAL, "clip emphasis: at most 64 chunks");
    int rc = DF_OK;
    for (int64_t i = 0; i < n && !rc; i++) {
        df_tensor *zi = NULL, *w = NULL, *wd = NULL, *zw = NULL;
        double before = 0, after = 0;
        rc = df_tensor_narrow0(z, i, 1, &zi);
        if (!rc) rc = tensor_mean(zi, &before);
        if (!rc && !(w = df_tensor_from_data(DF_F32, 3, (int64_t[]){1, L, 1}, weights + i * L))) rc = DF_ENOMEM;
        if (!rc) rc = df_tensor_to(w, df_tensor_backend(z), &wd);
        if (!rc) rc = df_mul(zi, wd, &zw);
        if (!rc) rc = tensor_mean(zw, &after);
        /* A1111: z · (original_mean / new_mean) */
        if (!rc) rc = df_scale(zw, after != 0 ? (float)(before / after) : 1.0f, 0.0f, &parts[i]);
        df_tensor_free(zi), df_tensor_free(w), df_tensor_free(wd), df_tensor_free(zw);
    }
    if (!rc) rc = df_concat((int)n, (const df_tensor *const *)parts, 0, out);
    for (int64_t i = 0; i < n; i++) df_tensor_free(parts[i]);
    return rc;
}
