"""A GGUF file's metadata and tensors, read with numpy only (the `gguf` package is not in
oe-core, and a Yocto build converts the GGUF at build time).

Format (llama.cpp's docs/gguf.md, version 2 and 3): "GGUF", u32 version, u64 tensor count,
u64 metadata count, the metadata (key, type, value), the tensor infos (name, dims innermost
first, type, offset), then the tensor data from the next multiple of `general.alignment`
(32 if absent). Little-endian throughout.

    f = GgufFile(path)
    f.fields["llama.block_count"]        # ints, floats, strings, bools, lists of those
    f.tensors["blk.0.attn_q.weight"]     # Tensor: name, shape (outermost first), type, data
    f.dequantise(name)                   # float32 array in that shape
"""

import struct

import numpy as np

# GGML tensor types this reader knows: (name, weights per block, bytes per block)
F32, F16, Q4_0, Q4_1, Q8_0 = 0, 1, 2, 3, 8
TYPES = {F32: ("F32", 1, 4), F16: ("F16", 1, 2), Q4_0: ("Q4_0", 32, 18), Q4_1: ("Q4_1", 32, 20), Q8_0: ("Q8_0", 32, 34)}

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class GgufError(Exception):
    pass


class Tensor:
    def __init__(self, name, shape, ggml_type, data):
        self.name, self.shape, self.type, self.data = name, shape, ggml_type, data

    def blocks(self):
        """The raw blocks as uint8 [rows, blocks per row, bytes per block]."""
        _, per_block, size = TYPES[self.type]
        rows = int(np.prod(self.shape[:-1], dtype=np.int64))
        return self.data.reshape(rows, self.shape[-1] // per_block, size)


class GgufFile:
    def __init__(self, path):
        self.path = path
        self.raw = np.memmap(path, dtype=np.uint8, mode="r")
        self.pos = 0
        if bytes(self.raw[:4]) != b"GGUF":
            raise GgufError(f"{path}: not a GGUF file")
        self.pos = 4
        version = self._scalar("<I")
        if version not in (2, 3):
            raise GgufError(f"{path}: GGUF version {version}; only 2 and 3 are read")
        n_tensors, n_fields = self._scalar("<Q"), self._scalar("<Q")
        self.fields = {}
        for _ in range(n_fields):
            key = self._string()
            self.fields[key] = self._value(self._scalar("<I"))
        infos = []
        for _ in range(n_tensors):
            name = self._string()
            dims = [self._scalar("<Q") for _ in range(self._scalar("<I"))]
            infos.append((name, dims, self._scalar("<I"), self._scalar("<Q")))
        alignment = int(self.fields.get("general.alignment", 32))
        start = -(-self.pos // alignment) * alignment
        self.tensors = {}
        for name, dims, ggml_type, offset in infos:
            if ggml_type not in TYPES:
                raise GgufError(f"{path}: tensor {name} has GGML type {ggml_type}, which this reader does not know "
                                f"(it reads {', '.join(t[0] for t in TYPES.values())})")
            _, per_block, size = TYPES[ggml_type]
            count = int(np.prod(dims, dtype=np.int64))
            if dims[0] % per_block:
                raise GgufError(f"{path}: tensor {name}: a row of {dims[0]} is not whole blocks of {per_block}")
            nbytes = count // per_block * size
            begin = start + offset
            if begin + nbytes > len(self.raw):
                raise GgufError(f"{path}: tensor {name} runs past the end of the file (truncated?)")
            self.tensors[name] = Tensor(name, list(reversed(dims)), ggml_type, self.raw[begin : begin + nbytes])

    def _scalar(self, fmt):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.raw):
            raise GgufError(f"{self.path}: ends inside its header")
        (value,) = struct.unpack_from(fmt, self.raw, self.pos)
        self.pos += size
        if fmt == "<f":  # the shortest decimal that is this float32 (1e-05, not 9.99999974e-06)
            value = float(str(np.float32(value)))
        return value

    def _string(self):
        n = self._scalar("<Q")
        if self.pos + n > len(self.raw):
            raise GgufError(f"{self.path}: ends inside its header")
        value = bytes(self.raw[self.pos : self.pos + n]).decode("utf-8")
        self.pos += n
        return value

    def _value(self, kind):
        if kind in _SCALARS:
            return self._scalar(_SCALARS[kind])
        if kind == _STRING:
            return self._string()
        if kind == _ARRAY:
            item, n = self._scalar("<I"), self._scalar("<Q")
            if item in _SCALARS:  # read a numeric array in one go (token types: 49k entries)
                dtype = np.dtype(_SCALARS[item])
                if self.pos + n * dtype.itemsize > len(self.raw):
                    raise GgufError(f"{self.path}: ends inside its header")
                values = np.frombuffer(self.raw, dtype=dtype, count=n, offset=self.pos)
                self.pos += n * dtype.itemsize
                return [float(str(v)) for v in values] if dtype == np.float32 else values.tolist()
            return [self._value(item) for _ in range(n)]
        raise GgufError(f"{self.path}: metadata value of unknown type {kind}")

    def dequantise(self, name):
        """The tensor as float32, shape outermost first (a linear's [out, in])."""
        t = self.tensors[name]
        if t.type == F32:
            out = t.data.view(np.float32)
        elif t.type == F16:
            out = t.data.view(np.float16).astype(np.float32)
        else:
            blocks = t.blocks()
            d = blocks[..., 0:2].copy().view(np.float16).astype(np.float32)  # [rows, nb, 1]
            if t.type == Q8_0:
                out = blocks[..., 2:].view(np.int8).astype(np.float32) * d
            elif t.type == Q4_1:
                codes, d, m = self.q4_1_blocks(name)
                out = codes.reshape(*d.shape, -1) * d[..., None] + m[..., None]
            else:
                out = (_nibbles(blocks[..., 2:]).astype(np.float32) - 8.0) * d
        return np.ascontiguousarray(out, dtype=np.float32).reshape(t.shape)

    def q4_1_blocks(self, name):
        """A Q4_1 tensor as it is stored: codes uint8 [rows, K] in element order, and each
        block's d and m as f32 [rows, K/32] (a weight is `code * d + m`)."""
        t = self.tensors[name]
        if t.type != Q4_1:
            raise GgufError(f"{self.path}: tensor {name} is {TYPES[t.type][0]}, not Q4_1")
        blocks = t.blocks()
        d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
        m = blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
        return _nibbles(blocks[..., 4:]).reshape(blocks.shape[0], -1), d, m


def _nibbles(qs):
    """GGML's 4-bit codes in element order: element j in the low nibble of byte j, element
    j + 16 in its high nibble."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=-1)
