"""Writes safetensors fixtures with deterministic bytes: a sorted header and
the data ordered widest dtype first, so every tensor is aligned for a
zero-copy load. (safetensors' own writer orders metadata as a hash map does,
so regenerating would change the file every time.)"""
import json
import os
import struct

ITEMSIZE = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "I16": 2, "U8": 1, "I8": 1}


def write_safetensors(path, tensors, metadata):
    """tensors: name -> (dtype name, shape, data); metadata: str -> str. data is little-endian bytes, or a
    torch tensor, turned into bytes only as it is written (so a checkpoint of several GB is never held twice)."""
    def nbytes(data):
        return len(data) if isinstance(data, (bytes, bytearray)) else data.numel() * data.element_size()

    header = {"__metadata__": dict(sorted(metadata.items()))} if metadata else {}
    order, off = sorted(tensors, key=lambda k: (-ITEMSIZE[tensors[k][0]], k)), 0
    for name in order:
        dtype, shape, data = tensors[name]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + nbytes(data)]}
        off += nbytes(data)
    h = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for name in order:
            data = tensors[name][2]
            f.write(data if isinstance(data, (bytes, bytearray)) else data.contiguous().numpy().tobytes())
    os.replace(tmp, path)
