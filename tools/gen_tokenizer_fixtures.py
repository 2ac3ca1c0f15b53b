"""The CLIP tokenizer's reference data (tests/test_tokenizer.c) and its Unicode
tables (core/nn/tokenizer_unicode_data.c).

The reference is transformers' slow CLIPTokenizer of the 4.x series (pinned in
tools/requirements.txt) with ftfy absent, so that it cleans text with its
BasicTokenizer fallback (control characters dropped, whitespace collapsed, CJK
ideographs spaced, NFC, Python's lower()) before the CLIP regex and byte-level
BPE. (transformers 5 no longer has that tokenizer: its CLIPTokenizer is the
`tokenizers` one.) The script refuses to run where ftfy is installed.

Usage:
  gen_tokenizer_fixtures.py [outdir]      writes outdir/tokenizer_ids.json and the
                                          tiny vocabulary pair (default tests/fixtures)
  gen_tokenizer_fixtures.py --tables OUT  writes the C tables (core/nn/tokenizer_unicode_data.c)

Both read the vocabulary from data/clip/merges.txt.gz (the standard CLIP merges,
see data/clip/README); vocab.json is derived from it as CLIP's SimpleTokenizer
does, which is the openai/clip-vit-large-patch14 vocab.json.
"""

import gzip
import importlib.util
import json
import os
import random
import sys
import tempfile
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MERGES_GZ = os.path.join(ROOT, "data", "clip", "merges.txt.gz")
N_MERGES = 49152 - 256 - 2  # what CLIP reads: lines 1 .. 48894 of the merges file


# ---- the environment --------------------------------------------------------


def check_reference_env():
    import transformers

    if not transformers.__version__.startswith("4."):
        sys.exit(f"transformers {transformers.__version__}: the reference is the 4.x slow CLIPTokenizer "
                 "(tools/requirements.txt)")
    if importlib.util.find_spec("ftfy") is not None:
        sys.exit("ftfy is installed: transformers would not take its BasicTokenizer path; uninstall it")


# ---- the vocabulary, as CLIP's SimpleTokenizer builds it ----------------------


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def standard_merges():
    lines = gzip.open(MERGES_GZ).read().decode("utf-8").split("\n")
    return lines[1 : N_MERGES + 1]


def standard_vocab(merges):
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(vocab)}


def write_pair(dirname, vocab, merges):
    vp, mp = os.path.join(dirname, "vocab.json"), os.path.join(dirname, "merges.txt")
    with open(vp, "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(mp, "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    return vp, mp


# ---- the prompts ----------------------------------------------------------------


def prompts():
    """Deterministic: hand-picked cases, then seeded random ones."""
    P = [
        "", " ", "   ", "\t", "\n", "\t\n \r\n", " \u00a0 \u3000 ",
        "a photo of a cat", "A Photo Of A Cat", "A PHOTO OF A CAT",
        "masterpiece, best quality, 1girl, solo, looking at viewer",
        "(masterpiece:1.2), (best quality), [blurry], ((detailed eyes)), \\(escaped\\)",
        "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
        "an (important) word", "(unbalanced", "\\(literal\\]", "(unnecessary)(parens)",
        "it's", "IT'S", "I'LL", "we're", "they've", "I'm", "you'd", "don't", "WON'T",
        "it\u2019s a dog\u2019s life", "rock 'n' roll", "'s", "''s", "'''", "'", "it'\u017f", "IT'\u015e",
        "12345", "3.14159", "1,000,000", "2x zoom 4k 8K uhd 1080p", "version 2.0.1-beta",
        "hello,world", "hello , world", "a-b_c.d/e\\f|g", "email@example.com http://x.y/z?q=1&r=2#frag",
        "!!!???...", "$%^&*()_+-=[]{};:\"<>,./?~`", "a:b::c:::d", "<|startoftext|>", "<|endoftext|>",
        "a<|endoftext|>b", "<|ENDOFTEXT|>", "<|startoftext|>hello<|endoftext|>", "x <|endoftext|> y",
        "!<|endoftext|>", "<|endoftext|>!", "<|endoftext", "|endoftext|>", "<|start of text|>",
        "<|\u017ftartoftext|>x", "<|endoftext|><|endoftext|>", "<|<|endoftext|>|>",
        "BREAK", "a BREAK b", "a, b, c BREAK d", "embedding:foo", "<lora:name:0.8>",
        "caf\u00e9", "cafe\u0301", "na\u00efve co\u00f6perate", "nai\u0308ve", "\u00c5ngstr\u00f6m \u212b \u212a",
        "stra\u00dfe STRASSE \u1e9e", "\u0130stanbul \u0131s\u0131k", "\u01c4\u01c5\u01c6 \u01c7\u01c8\u01c9",
        "\ufb01ne \ufb02ow \ufb00", "\u2160\u2161\u2162 \u216b \u2170", "\u00bd \u00bc \u00b2 \u00b3 \u2075 \u2082",
        "\u0661\u0662\u0663 \u0967\u0968\u0969 \uff11\uff12\uff13", "\uff21\uff22\uff23 \uff41\uff42\uff43 \uff01\uff1f",
        "\u039f\u0394\u039f\u03a3 \u039f\u0394\u039f\u03a3\u03a3 \u03a3 \u0391\u03a3. \u0391\u03a3\u0391 \u03a3\u0391",
        "\u0391\u0301\u03a3 \u0391\u03a3\u0301 \u0391'\u03a3 \u03a3\u0345 \u0391\u03a3'\u0392 \u0391\u03a3\u00ad",
        "\u041f\u0440\u0438\u0432\u0435\u0442, \u041c\u0418\u0420!", "\u0417\u0434\u0440\u0430\u0432\u0441\u0442\u0432\u0443\u0439\u0442\u0435",
        "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645", "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",
        "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e", "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e04\u0e23\u0e31\u0e1a",
        "\u4f60\u597d\u4e16\u754c", "\u4e00\u53ea\u732b\u5728\u8349\u5730\u4e0a", "\u3053\u3093\u306b\u3061\u306f \u30ab\u30bf\u30ab\u30ca",
        "\u732b\u306e\u5199\u771f", "\uc548\ub155\ud558\uc138\uc694", "\u1100\u1161\u11a8 \u1112\u1161\u11ab",
        "\uf900\uf901 \ufa10 \u2f800", "\U00020000\U0002a700 \U0002b820", "\u3400\u4dbf",
        "\U0001f600 \U0001f431\U0001f436", "\U0001f468\u200d\U0001f469\u200d\U0001f467", "\U0001f44d\U0001f3fd",
        "\U0001f1ef\U0001f1f5 \U0001f1fa\U0001f1f8", "\u2764\ufe0f \u2764", "\U0001fae8 \U0001fa77",
        "zero\u200bwidth", "soft\u00adhyphen", "\ufeffbom", "ctrl\x01\x02\x1fchars", "del\x7fchar",
        "vt\x0bff\x0ccr\rnl\n", "fs\x1cgs\x1drs\x1eus\x1f", "nel\x85line", "ls\u2028ps\u2029",
        "pua\ue000\U000f0000", "unassigned\u0378\U000e0080", "nonchar\ufffe\uffff", "repl\ufffdchar",
        "tabs\tand\tnewlines\nmixed  \t  spacing", "  leading and trailing  ", "a\u3000b\u2003c\u202fd",
        "\u0300\u0301 leading combining", "a\u0300\u0301\u0302\u0303\u0304\u0305", "q\u0323\u0307 \u1e0b\u0323 \u1e0d\u0307",
        "\u00e0\u0323 a\u0323\u0300 a\u0300\u0323", "\u0915\u093c \u0958", "\u212b\u0301", "e\u0301\u0301",
        "\u1f00\u0345 \u1f80", "\u0344 \u0340 \u0341 \u0343 \u0374 \u037e \u0387", "\u2126 \u03a9",
        "\u0f73 \u0f75 \u0f81", "\u09cb \u09c7\u09be", "\u0b4b \u0b47\u0b3e", "\u1026 \u1025\u102e",
        "\u05d1\u05bc \ufb31", "\u2000\u2001 \u2126 \u212a", "a\u0345b !\u0345! \u0345",
        "\u00c0\u00c1\u00c2\u00c3\u00c4\u00c5\u00c6\u00c7\u00c8 \u00d8\u00de",
        "\u0100\u0101\u0102\u0103 \u0141\u0142 \u0150\u0151", "\u1e9b\u0323", "\u03d2\u0301 \u03d3",
        "\u1d2c\u1d2d \u02b0\u02b1", "\u2070\u2071", "\u3131\u314f", "\u1e9e\u00df",
        "a" * 300, "abc " * 120, ", ".join("word%d" % i for i in range(100)),
        "the quick brown fox jumps over the lazy dog " * 10,
        "supercalifragilisticexpialidocious antidisestablishmentarianism",
        "photorealistic, 8k, hdr, octane render, unreal engine 5, trending on artstation",
        "portrait of a woman, by greg rutkowski and alphonse mucha, highly detailed, sharp focus",
        "(((best quality))), ((ultra-detailed)), (illustration), (beautiful detailed eyes:1.3), [[[nsfw]]]",
        "lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped",
        "score_9, score_8_up, score_7_up, source_anime, rating_safe",
        "1girl\n2boys\n\n3cats", "line1\r\nline2\rline3", "x", "\U0001f600" * 30,
        "#hashtag @mention $dollar %percent ^caret &amp; *star", "&lt;html&gt; &quot;quoted&quot; &#39;",
        "__init__ __main__ snake_case camelCase PascalCase kebab-case", "C++ C# F# .NET node.js",
        "R2-D2 C-3PO BB-8 T-800", "\u00a9 \u00ae \u2122 \u00b0C \u2103 \u00b5m \u03bcm",
        "\u2018single\u2019 \u201cdouble\u201d \u00abguillemets\u00bb \u201elow\u201c", "\u2014em\u2013en\u2012fig\u2010hy",
        "\u2026 ... \u00b7 \u2022 \u203b", "\u2190\u2191\u2192\u2193 \u21d2 \u2200\u2203\u2208", "\u221e \u2248 \u2260 \u2264 \u00b1 \u00d7 \u00f7",
        "\u266a\u266b \u2600\u2601\u2602 \u2605\u2606", "\u0e01\u0e34\u0e19\u0e02\u0e49\u0e32\u0e27", "\u10e5\u10d0\u10e0\u10d7\u10e3\u10da\u10d8",
        "\u0561\u0580\u0587 \u0531\u0535\u0552", "\u1200\u1208 \u12a0\u121b\u122d\u129b", "\u13a0\u13a1 \uab70\uab71",
        "\u0d2e\u0d32\u0d2f\u0d3e\u0d33\u0d02", "\u0ba4\u0bae\u0bbf\u0bb4\u0bcd", "\u0c24\u0c46\u0c32\u0c41\u0c17\u0c41",
        "\u1780\u17d2\u1798\u17c2\u179a", "\u0ea5\u0eb2\u0ea7", "\u1019\u103c\u1014\u103a\u1019\u102c",
        "\U00010400\U00010428 \U0001d400\U0001d41a \U0001d7ce", "\U0001e900\U0001e922", "\u10a0\u2d00 \u1c90",
        "\u0130\u0049\u0069\u0131", "\u00cc\u00cd\u0128 \u012e\u0301", "I\u0307 \u0130\u0300",
    ]
    rnd = random.Random(20240611)
    words = ("a the of and cat dog portrait landscape castle dragon neon city night rain forest mountain "
             "cyberpunk steampunk watercolor oil painting photo 35mm bokeh cinematic lighting volumetric "
             "golden hour sunset girl boy knight wizard robot spaceship galaxy nebula ocean wave flower "
             "rose tree house street car train bridge river lake snow fire smoke glass metal wood stone").split()
    caps = [str.lower, str.upper, str.title, lambda w: w]
    punct = [", ", ". ", "! ", "? ", "; ", ": ", " - ", " / ", " & ", " + ", " | ", " ", " ", " ", " "]
    for _ in range(150):
        s = ""
        for _ in range(rnd.randint(1, 40)):
            w = rnd.choice(caps)(rnd.choice(words))
            r = rnd.random()
            if r < 0.08:
                w = "(" + w + ")"
            elif r < 0.12:
                w = "(" + w + ":%.1f)" % rnd.uniform(0.3, 1.8)
            elif r < 0.15:
                w = "[" + w + "]"
            elif r < 0.18:
                w = w + "'s"
            elif r < 0.21:
                w = str(rnd.randint(0, 99999))
            elif r < 0.23:
                w = w.upper() + "'LL"
            s += w + rnd.choice(punct)
        P.append(s)
    pools = [  # scripts, marks, digits, punctuation, spaces, controls
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\u00e0\u00e9\u00ee\u00f5\u00fc\u00c7\u00d1\u00df\u0142\u0151\u0153",
        "\u03b1\u03b2\u03b3\u03b4\u03b5\u03b6\u03b7\u03b8\u03b9\u03ba\u03bb\u03bc\u03a3\u03a9\u0394\u03c3\u03c2\u0391\u0392\u0386\u0388",
        "\u0430\u0431\u0432\u0433\u0434\u0435\u0436\u0437\u0438\u0439\u043a\u0410\u0411\u0412\u0413\u0414\u0401\u0451\u0406\u0456",
        "\u0627\u0628\u062a\u062b\u062c\u062d\u062e\u062f\u0630\u0631\u0632\u0633\u064b\u064c\u064d\u0660\u0669",
        "\u0915\u0916\u0917\u0918\u0919\u091a\u093e\u093f\u0940\u0941\u0942\u094d\u0902\u0903\u0966\u096f",
        "\u4e00\u4e8c\u4e09\u56db\u4e94\u5c71\u6c34\u706b\u6728\u91d1\u571f\u65e5\u6708\u661f\u732b\u72ac",
        "\u3042\u3044\u3046\u3048\u304a\u30a2\u30a4\u30a6\u30a8\u30aa\u30fc\u3063\u3099\u309a\u304b",
        "\uac00\ub098\ub2e4\ub77c\ub9c8\ubc14\uc0ac\u1100\u1161\u11a8\u1102\u1165\u11ab\u3131",
        "\U0001f600\U0001f602\U0001f60d\U0001f44d\U0001f3fb\U0001f3ff\u200d\ufe0f\u2764\U0001f525\u2728\U0001f308\U0001f1fa\U0001f1f8",
        "\u0300\u0301\u0302\u0303\u0308\u030a\u0323\u0327\u0328\u0345\u0344\u0653\u0654\u0655\u093c\u3099",
        "0123456789\u0660\u0669\u0966\u096f\uff10\uff19\u00b2\u00bd\u2160\u2167\u2460",
        "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~\u00a1\u00bf\u2018\u2019\u201c\u201d\u2026\u3001\u3002\uff0c",
        " \t\n\r\u00a0\u2003\u3000\u200b\x0b\x0c\x1c\x85\u2028",
        "\x01\x07\x1b\x7f\x9f\u00ad\u200e\u200f\u2060\ufeff\ue000\ufffd\u0378\U000e0001",
    ]
    for _ in range(250):
        k = rnd.sample(range(len(pools)), rnd.randint(1, 4))
        P.append("".join(rnd.choice(pools[rnd.choice(k)]) for _ in range(rnd.randint(1, 60))))
    for _ in range(120):  # code points from every plane, assigned or not (no NUL, no surrogates)
        cs = []
        n = rnd.randint(1, 25)
        while len(cs) < n:
            r = rnd.random()
            cp = (rnd.randint(1, 0x2FFF) if r < 0.5 else rnd.randint(0x3000, 0xFFFF) if r < 0.8
                  else rnd.randint(0x10000, 0x2FFFF) if r < 0.95 else rnd.randint(0x30000, 0x10FFFF))
            if 0xD800 <= cp <= 0xDFFF:
                continue
            cs.append(chr(cp))
            if rnd.random() < 0.15:
                cs.append(" ")
        P.append("".join(cs))
    for _ in range(12):  # several chunks long
        P.append(" ".join(rnd.choice(words) + rnd.choice(["", ",", ".", "!"]) for _ in range(rnd.randint(80, 400))))
    return P


def tiny_prompts():
    return [
        "", "a photo of a cat", "The Quick Brown Fox", "it's 2024!", "<|endoftext|> x",
        "caf\u00e9 na\u00efve", "\u4f60\u597d", "\U0001f600 ok", "zzzzqqqq", "extraordinary",
        "masterpiece, best quality", "hello world hello", "the the the", "in on at",
    ]


def tiny_pair():
    """A small diffusers-style pair: 600 merges, ids not in SimpleTokenizer order
    (reversed), and some merge results left out of vocab.json (they become
    <|endoftext|>, the unknown token)."""
    merges = standard_merges()[:600]
    full = standard_vocab(standard_merges())
    keep = [t for t, i in sorted(full.items(), key=lambda x: x[1]) if i < 512 or (512 <= i < 1112 and i % 7 != 3)]
    keep += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: len(keep) - 1 - i for i, t in enumerate(keep)}
    return vocab, merges


def reference_ids(vocab_path, merges_path, texts):
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer(vocab_path, merges_path)
    assert tok.fix_text is None, "transformers took the ftfy path"
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


def write_fixtures(outdir):
    import transformers
    import regex

    merges = standard_merges()
    vocab = standard_vocab(merges)
    with tempfile.TemporaryDirectory() as d:
        vp, mp = write_pair(d, vocab, merges)
        P = prompts()
        ids = reference_ids(vp, mp, P)
    tv, tm = tiny_pair()
    tvp = os.path.join(outdir, "tokenizer_tiny_vocab.json")
    tmp_ = os.path.join(outdir, "tokenizer_tiny_merges.txt")
    with open(tvp, "w", encoding="utf-8") as f:
        json.dump(tv, f, ensure_ascii=False, indent=0, sort_keys=True)
        f.write("\n")
    with open(tmp_, "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(tm) + "\n")
    T = tiny_prompts()
    tids = reference_ids(tvp, tmp_, T)
    doc = {
        "reference": "transformers %s CLIPTokenizer (slow, ftfy absent), regex %s, Python %s, unicodedata %s"
        % (transformers.__version__, regex.__version__, sys.version.split()[0], unicodedata.unidata_version),
        "standard": [{"text": t, "ids": i} for t, i in zip(P, ids)],
        "tiny": [{"text": t, "ids": i} for t, i in zip(T, tids)],
    }
    path = os.path.join(outdir, "tokenizer_ids.json")
    with open(path, "w", encoding="ascii") as f:
        f.write("{\n")
        f.write('"reference": %s,\n' % json.dumps(doc["reference"]))
        for key in ("standard", "tiny"):
            f.write('"%s": [\n' % key)
            rows = [json.dumps(r, ensure_ascii=True, separators=(",", ":")) for r in doc[key]]
            f.write(",\n".join(rows))
            f.write("\n]%s\n" % ("," if key == "standard" else ""))
        f.write("}\n")
    print(f"wrote {path}: {len(P)} standard prompts, {len(T)} on the tiny vocabulary")


# ---- the Unicode tables --------------------------------------------------------------

# Property bits (core/nn/tokenizer_unicode.h has the same values).
B_REMOVE = 1 << 0    # BasicTokenizer._clean_text drops it: NUL, U+FFFD, category C* but \t \n \r
B_TOSPACE = 1 << 1   # BasicTokenizer._is_whitespace: ' ' \t \n \r or category Zs
B_PYSPACE = 1 << 2   # str.isspace(): str.split() and Python re's \s
B_PYWORD = 1 << 3    # Python re's \w: str.isalnum() or '_'
B_L = 1 << 4         # regex [\p{L}] with IGNORECASE (the CLIP pattern's flags)
B_N = 1 << 5         # regex [\p{N}] with IGNORECASE
B_O = 1 << 6         # regex [^\s\p{L}\p{N}] with IGNORECASE
B_CASED = 1 << 7     # cased and not case-ignorable (str.lower()'s final-sigma rule)
B_CASEIGN = 1 << 8   # case-ignorable
B_DIGIT = 1 << 9     # Python re's \d (decimal digit, float() takes it)


def props(c, L, N, O):
    cp = ord(c)
    cat = unicodedata.category(c)
    b = 0
    if cp == 0 or cp == 0xFFFD or (c not in "\t\n\r" and cat.startswith("C")):
        b |= B_REMOVE
    if c in " \t\n\r" or cat == "Zs":
        b |= B_TOSPACE
    if c.isspace():
        b |= B_PYSPACE
    if c.isalnum() or c == "_":
        b |= B_PYWORD
    if L(c):
        b |= B_L
    if N(c):
        b |= B_N
    if O(c):
        b |= B_O
    # str.lower()'s Final_Sigma test, probed: see the header of tokenizer_unicode.h
    if cp != 0x3A3:
        if (c + "\u03a3").lower()[-1] == "\u03c2":
            b |= B_CASED
        elif ("A" + c + "\u03a3").lower()[-1] == "\u03c2":
            b |= B_CASEIGN
    else:
        b |= B_CASED
    if c.isdecimal():
        b |= B_DIGIT
    return b


def full_decomposition(c):
    d = unicodedata.decomposition(c)
    if not d or d.startswith("<"):
        return [ord(c)]
    out = []
    for h in d.split():
        out += full_decomposition(chr(int(h, 16)))
    return out


def c_array(name, ctype, values, per_line=12, fmt="0x%x"):
    lines = []
    for i in range(0, len(values), per_line):
        lines.append("    " + ", ".join(fmt % v for v in values[i : i + per_line]) + ",")
    return "DF_INTERNAL const %s %s[%d] = {\n%s\n};\n" % (ctype, name, len(values), "\n".join(lines))


def write_tables(out):
    import regex

    L = regex.compile(r"[\p{L}]", regex.IGNORECASE).fullmatch
    N = regex.compile(r"[\p{N}]", regex.IGNORECASE).fullmatch
    O = regex.compile(r"[^\s\p{L}\p{N}]", regex.IGNORECASE).fullmatch
    starts, bits = [], []
    prev = None
    ccc_ranges = []
    decomp_cp, decomp_off, pool = [], [], []
    lower_cp, lower_1, lower_2 = [], [], []
    digit_zero = []
    hangul = range(0xAC00, 0xAC00 + 11172)
    for cp in range(0x110000):
        c = chr(cp)
        b = props(c, L, N, O)
        if b != prev:
            starts.append(cp)
            bits.append(b)
            prev = b
        k = unicodedata.combining(c)
        if k:
            if ccc_ranges and ccc_ranges[-1][1] == cp - 1 and ccc_ranges[-1][2] == k:
                ccc_ranges[-1][1] = cp
            else:
                ccc_ranges.append([cp, cp, k])
        if cp not in hangul:
            d = full_decomposition(c)
            if d != [cp]:
                decomp_cp.append(cp)
                decomp_off.append(len(pool) << 3 | len(d))
                pool += d
        if cp != 0x3A3 and not 0xD800 <= cp <= 0xDFFF:
            lo = c.lower()
            if lo != c:
                assert len(lo) <= 2, hex(cp)
                lower_cp.append(cp)
                lower_1.append(ord(lo[0]))
                lower_2.append(ord(lo[1]) if len(lo) > 1 else 0)
        if c.isdecimal() and unicodedata.decimal(c) == 0:
            digit_zero.append(cp)
    assert max(x & 7 for x in decomp_off) <= 4  # DF_UC_MAX_DECOMP
    # every decimal digit is one of a run of ten starting at a zero
    for cp in range(0x110000):
        c = chr(cp)
        if c.isdecimal():
            z = cp - unicodedata.decimal(c)
            assert z in digit_zero, hex(cp)
    # primary composites: a two-character canonical decomposition that NFC recomposes
    comp = []
    for cp in range(0x110000):
        c = chr(cp)
        if cp in hangul:
            continue
        d = unicodedata.decomposition(c)
        if d and not d.startswith("<") and len(d.split()) == 2 and unicodedata.normalize("NFC", c) == c:
            a, b_ = (int(h, 16) for h in d.split())
            comp.append((a, b_, cp))
    comp.sort()
    # what the BasicTokenizer leaves that str.split() still splits on
    extra = [cp for cp in range(0x110000)
             if (props(chr(cp), L, N, O) & (B_PYSPACE | B_REMOVE | B_TOSPACE)) == B_PYSPACE]
    assert extra == [0x2028, 0x2029], extra
    # letters that regex's IGNORECASE matches for an ASCII letter of the pattern
    folds = []
    for ch in "abcdefghijklmnopqrstuvwxyz":
        for cp in range(0x80, 0x110000):
            if regex.fullmatch(ch, chr(cp), regex.IGNORECASE):
                folds.append((ord(ch), cp))
    src = [
        "/* Generated by tools/gen_tokenizer_fixtures.py --tables: do not edit.",
        " * Python %s, unicodedata (Unicode) %s, regex %s."
        % (sys.version.split()[0], unicodedata.unidata_version, regex.__version__),
        " * See core/nn/tokenizer_unicode.h for what each table holds. */",
        '#include "tokenizer_unicode.h"',
        "",
        "DF_INTERNAL const int df_uc_prop_count = %d;" % len(starts),
        c_array("df_uc_prop_start", "uint32_t", starts),
        c_array("df_uc_prop_bits", "uint16_t", bits, 16),
        "DF_INTERNAL const int df_uc_ccc_count = %d;" % len(ccc_ranges),
        c_array("df_uc_ccc_ranges", "uint32_t", [r[0] << 8 | r[2] for r in ccc_ranges]
                + [r[1] for r in ccc_ranges], 10),
        "DF_INTERNAL const int df_uc_decomp_count = %d;" % len(decomp_cp),
        c_array("df_uc_decomp_cp", "uint32_t", decomp_cp),
        c_array("df_uc_decomp_off", "uint32_t", decomp_off),
        c_array("df_uc_decomp_pool", "uint32_t", pool),
        "DF_INTERNAL const int df_uc_comp_count = %d;" % len(comp),
        c_array("df_uc_comp", "uint32_t", [x for t in comp for x in t]),
        "DF_INTERNAL const int df_uc_lower_count = %d;" % len(lower_cp),
        c_array("df_uc_lower_cp", "uint32_t", lower_cp),
        c_array("df_uc_lower_1", "uint32_t", lower_1),
        c_array("df_uc_lower_2", "uint32_t", lower_2),
        "DF_INTERNAL const int df_uc_digit_count = %d;" % len(digit_zero),
        c_array("df_uc_digit_zero", "uint32_t", digit_zero),
        "DF_INTERNAL const int df_uc_fold_count = %d;" % len(folds),
        c_array("df_uc_fold", "uint32_t", [x for t in folds for x in t]),
    ]
    with open(out, "w", encoding="ascii") as f:
        f.write("\n".join(src))
    print(f"wrote {out}: {len(starts)} property ranges, {len(ccc_ranges)} ccc ranges, "
          f"{len(decomp_cp)} decompositions, {len(comp)} compositions, {len(lower_cp)} lowercase mappings")


if __name__ == "__main__":
    args = sys.argv[1:]
    check_reference_env()  # the tables come from the same Python and regex as the reference
    if args[:1] == ["--tables"]:
        write_tables(args[1] if len(args) > 1 else os.path.join(ROOT, "core", "nn", "tokenizer_unicode_data.c"))
    else:
        write_fixtures(args[0] if args else os.path.join(ROOT, "tests", "fixtures"))
