#include "text_encoder.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

struct df_text_encoder {
    df_text_family family;
    df_weights *owned[2];  /* folders opened here */
    df_clip *clip[2];
    df_tokenizer *tok;
    int n;
};

typedef struct {
    const char *prefix;
    int encoder; /* 0, 1 */
} probe;

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

void df_text_encoder_free(df_text_encoder *te)
{
    if (!te) return;
    for (int i = 0; i < 2; i++) {
        df_clip_free(te->clip[i]);
        df_weights_free(te->owned[i]);
    }
    df_tokenizer_free(te->tok);
    df_free(te);
}

df_text_family df_text_encoder_family(const df_text_encoder *te) { return te->family; }

const df_clip *df_text_encoder_clip(const df_text_encoder *te, int i) { return i >= 0 && i < te->n ? te->clip[i] : NULL; }

int64_t df_text_encoder_width(const df_text_encoder *te)
{
    int64_t w = 0;
    for (int i = 0; i < te->n; i++) w += df_clip_get_config(te->clip[i])->width;
    return w;
}

static int load_folder(df_text_encoder *te, const char *root, df_backend *be)
{
    char path[4096];
    int rc;
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, i ? "%s/text_encoder_2" : "%s/text_encoder", root);
        if (!is_dir(path)) {
            if (i == 0) return df_error(DF_ENOTFOUND, "%s: no text_encoder folder", root);
            break;
        }
        if ((rc = df_weights_open(path, &te->owned[i])) || (rc = df_clip_load(te->owned[i], "text_model.", be, &te->clip[i])))
            return rc;
        te->n++;
    }
    char vocab[4096], merges[4096];
    snprintf(vocab, sizeof vocab, "%s/tokenizer/vocab.json", root);
    snprintf(merges, sizeof merges, "%s/tokenizer/merges.txt", root);
    struct stat st;
    if (stat(vocab, &st) == 0 && stat(merges, &st) == 0) return df_tokenizer_load(vocab, merges, &te->tok);
    return df_tokenizer_new_default(&te->tok);
}

static int load_single(df_text_encoder *te, const df_weights *w, df_backend *be)
{
    static const char *const sdxl[2] = {"conditioner.embedders.0.transformer.text_model.", "conditioner.embedders.1.model."};
    static const char *const single[2] = {"cond_stage_model.transformer.text_model.", "cond_stage_model.model."};
    int rc;
    if (df_weights_findf(w, "%stoken_embedding.weight", sdxl[1])) {
        for (int i = 0; i < 2; i++) {
            if ((rc = df_clip_load(w, sdxl[i], be, &te->clip[i]))) return rc;
            te->n++;
        }
    } else {
        const char *prefix = df_weights_findf(w, "%sembeddings.token_embedding.weight", single[0]) ? single[0] : single[1];
        if ((rc = df_clip_load(w, prefix, be, &te->clip[0]))) return rc;
        te->n = 1;
    }
    return df_tokenizer_new_default(&te->tok);
}

int df_text_encoder_load(const df_weights *w, const char *root_dir, df_backend *be, df_text_encoder **out)
{
    *out = NULL;
    if (!w == !root_dir) return df_error(DF_EINVAL, "text encoder: give either a checkpoint or a diffusers folder");
    df_text_encoder *te = df_calloc(1, sizeof *te);
    if (!te) return DF_ENOMEM;
    int rc = root_dir ? load_folder(te, root_dir, be) : load_single(te, w, be);
    if (rc) {
        df_text_encoder_free(te);
        return rc;
    }
    const df_clip_config *c0 = df_clip_get_config(te->clip[0]);
    te->family = te->n == 2 ? DF_FAMILY_SDXL : c0->width == 1024 || c0->layout == DF_CLIP_LAYOUT_OPENCLIP ? DF_FAMILY_SD2 : DF_FAMILY_SD1;
    if (te->family == DF_FAMILY_SDXL && !df_clip_get_config(te->clip[1])->proj_dim) {
        rc = df_error(DF_ENOTFOUND, "%s: SDXL's second text encoder has no text projection",
                      w ? df_weights_path(w) : root_dir);
        df_text_encoder_free(te);
        return rc;
    }
    *out = te;
    return DF_OK;
}

df_text_encode_params df_text_encode_default_params(void) { return (df_text_encode_params){1, 1, NULL}; }

/* The hidden state encoder i of the family conditions on. */
static df_clip_forward_params layer_for(const df_text_encoder *te, int i, int clip_skip)
{
    const df_clip_config *c = df_clip_get_config(te->clip[i]);
    df_clip_forward_params p = df_clip_forward_default_params();
    int penultimate = te->family == DF_FAMILY_SDXL || (te->family == DF_FAMILY_SD2 && c->layout == DF_CLIP_LAYOUT_OPENCLIP);
    p.layer = (penultimate ? -2 : -1) - (clip_skip > 1 ? clip_skip - 1 : 0);
    p.final_norm = te->family != DF_FAMILY_SDXL;
    p.pooled = te->family == DF_FAMILY_SDXL && i == 1;
    return p;
}

/* Encoder i on the prompt: (chunks, 77, width) with emphasis applied. */
static int encode_one(const df_text_encoder *te, int i, const char *prompt, const df_text_encode_params *p,
                      df_tensor **z, df_tensor **pooled)
{
    const df_clip_config *c = df_clip_get_config(te->clip[i]);
    df_prompt_params pp = df_prompt_default_params();
    /* OpenAI's CLIP pads with EOS; OpenCLIP's encoders (SD2, SDXL's bigG) with 0 */
    pp.pad_with_eos = te->family == DF_FAMILY_SD1 || (te->family == DF_FAMILY_SDXL && i == 0);
    pp.emphasis = p->emphasis;
    pp.embedding_width = c->width;
    df_token_chunks *chunks = NULL;
    df_tensor *x = NULL, *h = NULL;
    df_clip_forward_params fp = layer_for(te, i, p->clip_skip);
    if (-fp.layer > c->layers)
        return df_error(DF_EINVAL, "text encoder: clip_skip %d is deeper than the encoder's %lld layers", p->clip_skip,
                        (long long)c->layers);
    int rc = df_prompt_tokenize(te->tok, p->embeddings, prompt, &pp, &chunks);
    if (!rc) rc = df_clip_embed_chunks(te->clip[i], chunks, p->embeddings, &x);
    if (!rc) rc = df_clip_forward(te->clip[i], x, chunks->ids, &fp, &h, fp.pooled ? pooled : NULL);
    if (!rc && fp.pooled && pooled && chunks->n_chunks > 1) { /* A1111 / ComfyUI pool the first chunk */
        df_tensor *first = NULL;
        rc = df_tensor_narrow0(*pooled, 0, 1, &first);
        df_tensor_free(*pooled);
        *pooled = first;
    }
    if (!rc && p->emphasis) {
        rc = df_clip_apply_emphasis(h, chunks->weights, z);
        df_tensor_free(h);
    } else if (!rc) {
        *z = h;
    } else {
        df_tensor_free(h);
    }
    df_tensor_free(x);
    df_token_chunks_free(chunks);
    return rc;
}

int df_text_encoder_encode(const df_text_encoder *te, const char *prompt, const df_text_encode_params *p,
                           df_tensor **cond, df_tensor **pooled)
{
    df_text_encode_params dp = df_text_encode_default_params();
    if (!p) p = &dp;
    *cond = NULL;
    if (pooled) *pooled = NULL;
    if (!prompt) return df_error(DF_EINVAL, "text encoder: prompt is NULL");
    df_tensor *z[2] = {NULL, NULL}, *pool = NULL, *joined = NULL;
    int rc = DF_OK;
    for (int i = 0; i < te->n && !rc; i++) rc = encode_one(te, i, prompt, p, &z[i], &pool);
    if (!rc && te->n == 2) {
        if (z[0]->shape[0] != z[1]->shape[0])
            rc = df_error(DF_ESHAPE, "text encoder: the two encoders made %lld and %lld chunks",
                          (long long)z[0]->shape[0], (long long)z[1]->shape[0]);
        else
            rc = df_concat(2, (const df_tensor *const *)z, 2, &joined);
    } else if (!rc) {
        joined = df_tensor_ref(z[0]);
        if (!joined) rc = DF_ENOMEM;
    }
    if (!rc) /* chunks follow one another along the sequence */
        rc = df_tensor_reshape(joined, 3, (int64_t[]){1, joined->shape[0] * joined->shape[1], joined->shape[2]}, cond);
    df_tensor_free(joined);
    df_tensor_free(z[0]);
    df_tensor_free(z[1]);
    if (!rc && pooled) *pooled = pool;
    else df_tensor_free(pool);
    return rc;
}
