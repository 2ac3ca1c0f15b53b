"""Writes tests/fixtures/rng.safetensors: the noise difusa's generators must
reproduce bit for bit (tests/test_rng.c).

  cpu.s<seed>.n<numel>         torch.manual_seed(seed); torch.randn(shape) with
                               torch's AVX2 kernel (ATEN_CPU_CAPABILITY=avx2;
                               the script checks avx512 gives the same)
  cpu-scalar.s<seed>.n<numel>  the same under ATEN_CPU_CAPABILITY=default
  cuda.s<seed>.n<numel>        tools/philox_ref.py (AUTOMATIC1111's numpy Philox)

A name with several sizes ("cpu.s42.n7+20+5") holds consecutive randn calls on
one generator, concatenated. Each tensor has a metadata entry of the same name,
"kind=<kind> seed=<seed> sizes=<n1>,<n2>,...", that the test reads.

  cpu.s<seed>.n<numel>.digest  an I64 tensor: FNV-1a (64-bit, over the float32
                               bit patterns as 32-bit words) of each block of
                               `block` values of a call too big to store; it
                               reaches the rare roundings where one fused
                               multiply-add of torch's AVX2 kernel matters.

The torch runs happen in child processes because the CPU capability is fixed
when torch loads. Usage: gen_rng_fixtures.py [outdir]   (default tests/fixtures)
"""

import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import philox_ref  # noqa: E402
from fixture_io import write_safetensors  # noqa: E402

# (seed, shapes of consecutive randn calls). Sizes below 16 take torch's double
# Box-Muller path, 16 and up its 16-wide path, non-multiples of 16 its tail
# redraw; the CPU seed is truncated to 32 bits (2**40 + 5 acts as 5).
CASES = [
    (0, [(1,)]),
    (0, [(7,)]),
    (42, [(3, 5)]),
    (42, [(16,)]),
    (42, [(17,)]),
    (2**32 - 1, [(33,)]),
    (2**40 + 5, [(100,)]),
    (42, [(4, 8, 8)]),
    (0, [(1, 4, 64, 64)]),
    (42, [(7,), (20,), (5,)]),  # state carried, incl. the cached Box-Muller half
    (1, [(1,), (16,), (1,)]),  # the 16-wide call leaves that cache alone
]
CUDA_EXTRA = [(2**64 - 1, [(17,)])]
DIGEST_CASES = [(99, 1 << 22)]  # cpu kind only: the others' values rest on libm
DIGEST_BLOCK = 1 << 16

CAPABILITIES = {"avx2": "AVX2", "avx512": "AVX512", "default": "NO AVX"}


def numel(shape):
    return int(np.prod(shape))


def case_name(kind, seed, shapes):
    return f"{kind}.s{seed}.n" + "+".join(str(numel(s)) for s in shapes)


def case_meta(kind, seed, shapes):
    return f"kind={kind} seed={seed} sizes=" + ",".join(str(numel(s)) for s in shapes)


def fnv1a_blocks(values, block):
    """FNV-1a 64 of each block of float32 values, taken as uint32 words."""
    words = values.view(np.uint32).reshape(-1, block).astype(np.uint64)
    h = np.full(words.shape[0], 0xCBF29CE484222325, dtype=np.uint64)
    prime = np.uint64(0x100000001B3)
    for i in range(block):
        h = (h ^ words[:, i]) * prime
    return h.view(np.int64)


def torch_worker(cap, out_path):
    """Child process: runs every CPU case under one torch CPU capability."""
    import torch

    got_cap = torch.backends.cpu.get_cpu_capability()
    if got_cap != CAPABILITIES[cap]:
        sys.exit(f"ATEN_CPU_CAPABILITY={cap} gave torch capability {got_cap!r}; "
                 f"this machine cannot produce the {cap} fixtures")
    results = {}
    for seed, shapes in CASES:
        torch.manual_seed(seed)
        parts = [torch.randn(*s).reshape(-1) for s in shapes]
        results[case_name("cpu", seed, shapes)] = torch.cat(parts).numpy()
        # randn(shape) is randn(numel) laid out in shape.
        torch.manual_seed(seed)
        flat = torch.cat([torch.randn(numel(s)) for s in shapes])
        assert torch.equal(flat, torch.cat(parts)), (seed, shapes)
    for seed, n in DIGEST_CASES:
        torch.manual_seed(seed)
        results[f"{case_name('cpu', seed, [(n,)])}.digest"] = fnv1a_blocks(torch.randn(n).numpy(), DIGEST_BLOCK)
    # torch.manual_seed keeps the low 32 bits.
    torch.manual_seed(2**40 + 5)
    a = torch.randn(100)
    torch.manual_seed(5)
    assert torch.equal(a, torch.randn(100))
    np.savez(out_path, **results)


def run_worker(cap, tmpdir):
    path = os.path.join(tmpdir, f"{cap}.npz")
    env = dict(os.environ, ATEN_CPU_CAPABILITY=cap)
    subprocess.run([sys.executable, os.path.abspath(__file__), "--torch-worker", cap, path],
                   env=env, check=True)
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def np_entry(arr):
    names = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}
    return (names[arr.dtype], arr.shape, np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes())


def verify(path, tensors, metadata):
    """Reads the file back with the safetensors library."""
    from safetensors import safe_open

    with safe_open(path, framework="np") as f:
        assert f.metadata() == metadata, "metadata mismatch"
        assert set(f.keys()) == set(tensors), "tensor set mismatch"
        for k in f.keys():
            got = f.get_tensor(k)
            assert got.dtype == tensors[k].dtype and got.shape == tensors[k].shape, k
            assert got.tobytes() == tensors[k].tobytes(), k


def bits_equal(a, b):
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def main(outdir):
    import torch

    philox_ref.self_check()
    with tempfile.TemporaryDirectory() as tmp:
        runs = {cap: run_worker(cap, tmp) for cap in CAPABILITIES}

    tensors, meta = {}, {}

    def add(kind, seed, shapes, values):
        name = case_name(kind, seed, shapes)
        shape = shapes[0] if len(shapes) == 1 else (values.size,)
        tensors[name] = np.ascontiguousarray(values.reshape(shape), dtype=np.float32)
        meta[name] = case_meta(kind, seed, shapes)

    n_diff = 0
    for seed, shapes in CASES:
        key = case_name("cpu", seed, shapes)
        avx2, avx512, scalar = runs["avx2"][key], runs["avx512"][key], runs["default"][key]
        assert bits_equal(avx2, avx512), f"{key}: AVX512 differs from AVX2"
        if all(numel(s) < 16 for s in shapes):
            assert bits_equal(avx2, scalar), f"{key}: the < 16 path differs between capabilities"
        n_diff += not bits_equal(avx2, scalar)
        add("cpu", seed, shapes, avx2)
        add("cpu-scalar", seed, shapes, scalar)
    for seed, n in DIGEST_CASES:
        name = f"{case_name('cpu', seed, [(n,)])}.digest"
        assert np.array_equal(runs["avx2"][name], runs["avx512"][name]), name
        tensors[name] = runs["avx2"][name]
        meta[name] = case_meta("cpu", seed, [(n,)]) + f" block={DIGEST_BLOCK}"
    for seed, shapes in CASES + CUDA_EXTRA:
        g = philox_ref.PhiloxGenerator(seed)
        add("cuda", seed, shapes, np.concatenate([g.randn(numel(s)) for s in shapes]))

    meta["generator"] = (f"tools/gen_rng_fixtures.py: torch {torch.__version__}, numpy {np.__version__}; "
                         f"cpu = ATEN_CPU_CAPABILITY avx2 (= avx512), cpu-scalar = default")
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, "rng.safetensors")
    write_safetensors(path, {k: np_entry(v) for k, v in tensors.items()}, meta)
    verify(path, tensors, meta)
    print(f"{path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes; "
          f"cpu and cpu-scalar differ in {n_diff} of {len(CASES)} cases")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--torch-worker":
        torch_worker(sys.argv[2], sys.argv[3])
    else:
        main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")
