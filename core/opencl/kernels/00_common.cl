/* Shared by every kernel file (the .cl files are concatenated in name order
 * and built as one program). Tensors arrive as a buffer plus an element
 * offset, so views (narrow0) need no sub-buffers. */
#define DF_F32 0
#define DF_F16 1
#define DF_BF16 2

inline float df_bf16_load(__global const ushort *p, int i) { return as_float((uint)p[i] << 16); }

inline ushort df_bf16_round(float f)
{
    uint x = as_uint(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (ushort)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (ushort)(x >> 16);
}

inline float df_sigmoid(float x) { return 1.0f / (1.0f + exp(-x)); }
