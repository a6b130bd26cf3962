"""The part of ONNX's protobuf format that build_lm.py writes, in plain Python.

A Yocto build converts the GGUF at build time with python3-native and numpy only (no
`onnx` package in oe-core), so the graph is encoded here. The bytes are those `onnx`'s own
helpers and `onnx.save` write for the same calls (fields in number order, proto2 rules: a
field that was set is written even when empty, repeated scalars unpacked): build_lm.py's
check_model compares every file it writes with `onnx`'s serialisation where `onnx` is
installed, and the fixtures made through `onnx` before this module came out the same.

    node(op_type, inputs, outputs, domain=None, **attrs)   like onnx.helper.make_node
    tensor_value_info(name, elem_type, shape)               like make_tensor_value_info
    from_array(array, name)                                 like numpy_helper.from_array
    Model(nodes, name, inputs, outputs, initializers, opsets, producer_name, ir_version)
    Model.save(path, external_location=None, size_threshold=1024)   like onnx.save
"""

import os
import struct

import numpy as np

# TensorProto.DataType
FLOAT, UINT8, INT8, UINT16, INT16, INT32, INT64, STRING, BOOL, FLOAT16, DOUBLE = range(1, 12)
_DTYPES = {
    np.dtype(np.float32): FLOAT,
    np.dtype(np.uint8): UINT8,
    np.dtype(np.int8): INT8,
    np.dtype(np.uint16): UINT16,
    np.dtype(np.int16): INT16,
    np.dtype(np.int32): INT32,
    np.dtype(np.int64): INT64,
    np.dtype(np.bool_): BOOL,
    np.dtype(np.float16): FLOAT16,
    np.dtype(np.float64): DOUBLE,
}
# AttributeProto.AttributeType
_ATTR_FLOAT, _ATTR_INT, _ATTR_STRING, _ATTR_INTS = 1, 2, 3, 7
_EXTERNAL = 1  # TensorProto.DataLocation


# ---------------------------------------------------------------- wire format


def _varint(value):
    value &= (1 << 64) - 1  # negative int64s as ten bytes, as protobuf does
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _tag(field, wire):
    return _varint(field << 3 | wire)


def _int(field, value):
    return _tag(field, 0) + _varint(int(value))


def _float(field, value):
    return _tag(field, 5) + struct.pack("<f", value)


def _bytes(field, value):
    if isinstance(value, str):
        value = value.encode("utf-8")
    return _tag(field, 2) + _varint(len(value)) + value


class _Message:
    """A message's fields, already encoded; parts are bytes or nested lists (a tensor's raw
    data stays one bytes object until the file is written)."""

    def __init__(self):
        self.parts = []
        self.size = 0

    def add(self, encoded):
        self.parts.append(encoded)
        self.size += len(encoded)
        return self

    def add_message(self, field, message):
        head = _tag(field, 2) + _varint(message.size)
        self.parts.append(head)
        self.parts.append(message)
        self.size += len(head) + message.size
        return self

    def write(self, out):
        for part in self.parts:
            if isinstance(part, _Message):
                part.write(out)
            else:
                out.write(part)


# ---------------------------------------------------------------- the messages


class Node:
    def __init__(self, op_type, inputs, outputs, domain=None, **attrs):
        self.op_type, self.inputs, self.outputs, self.domain = op_type, list(inputs), list(outputs), domain
        self.attrs = {k: v for k, v in sorted(attrs.items()) if v is not None}

    def message(self):
        m = _Message()
        for name in self.inputs:
            m.add(_bytes(1, name))
        for name in self.outputs:
            m.add(_bytes(2, name))
        m.add(_bytes(4, self.op_type))
        for key, value in self.attrs.items():
            m.add_message(5, _attribute(key, value))
        if self.domain is not None:
            m.add(_bytes(7, self.domain))
        return m


def node(op_type, inputs, outputs, domain=None, **attrs):
    return Node(op_type, inputs, outputs, domain, **attrs)


def _attribute(key, value):
    m = _Message().add(_bytes(1, key))
    if isinstance(value, (bool, int, np.integer)):
        m.add(_int(3, value)).add(_int(20, _ATTR_INT))
    elif isinstance(value, (float, np.floating)):
        m.add(_float(2, value)).add(_int(20, _ATTR_FLOAT))
    elif isinstance(value, (str, bytes)):
        m.add(_bytes(4, value)).add(_int(20, _ATTR_STRING))
    elif isinstance(value, (list, tuple)) and all(isinstance(v, (int, np.integer)) for v in value):
        for v in value:
            m.add(_int(8, v))
        m.add(_int(20, _ATTR_INTS))
    else:
        raise TypeError(f"attribute {key}: {value!r} is not a kind build_lm.py writes")
    return m


class Tensor:
    def __init__(self, array, name):
        array = np.asarray(array)
        if array.dtype not in _DTYPES:
            raise TypeError(f"tensor {name}: dtype {array.dtype} is not written here")
        self.name, self.dims, self.data_type = name, array.shape, _DTYPES[array.dtype]
        self.raw = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        self.external = None  # (location, offset, length) once saved beside the graph

    def message(self):
        m = _Message()
        for d in self.dims:
            m.add(_int(1, d))
        m.add(_int(2, self.data_type))
        m.add(_bytes(8, self.name))
        if self.external is None:
            m.add(_tag(9, 2) + _varint(len(self.raw)))
            m.add(self.raw)
        else:
            for key, value in zip(("location", "offset", "length"), self.external):
                m.add_message(13, _Message().add(_bytes(1, key)).add(_bytes(2, str(value))))
            m.add(_int(14, _EXTERNAL))
        return m


def from_array(array, name):
    return Tensor(array, name)


class ValueInfo:
    def __init__(self, name, elem_type, shape):
        self.name, self.elem_type, self.shape = name, elem_type, list(shape)

    def message(self):
        shape = _Message()
        for d in self.shape:
            dim = _Message().add(_bytes(2, d) if isinstance(d, str) else _int(1, d))
            shape.add_message(1, dim)
        tensor_type = _Message().add(_int(1, self.elem_type)).add_message(2, shape)
        type_proto = _Message().add_message(1, tensor_type)
        return _Message().add(_bytes(1, self.name)).add_message(2, type_proto)


def tensor_value_info(name, elem_type, shape):
    return ValueInfo(name, elem_type, shape)


class Model:
    def __init__(self, nodes, name, inputs, outputs, initializers, opsets, producer_name, ir_version):
        self.nodes, self.name, self.inputs, self.outputs = nodes, name, inputs, outputs
        self.initializers, self.opsets = initializers, opsets  # opsets: [(domain, version)]
        self.producer_name, self.ir_version = producer_name, ir_version

    def weight_bytes(self):
        return sum(len(t.raw) for t in self.initializers)

    def message(self):
        graph = _Message()
        for n in self.nodes:
            graph.add_message(1, n.message())
        graph.add(_bytes(2, self.name))
        for t in self.initializers:
            graph.add_message(5, t.message())
        for v in self.inputs:
            graph.add_message(11, v.message())
        for v in self.outputs:
            graph.add_message(12, v.message())
        m = _Message().add(_int(1, self.ir_version)).add(_bytes(2, self.producer_name))
        m.add_message(7, graph)
        for domain, version in self.opsets:
            m.add_message(8, _Message().add(_bytes(1, domain)).add(_int(2, version)))
        return m

    def save(self, path, external_location=None, size_threshold=1024):
        """Writes the graph; with `external_location`, every initializer of `size_threshold`
        bytes or more goes to that file beside it, one after another (onnx.save's
        all_tensors_to_one_file, whose threshold counts CPython's 33-byte bytes header)."""
        if external_location is not None:
            data_path = os.path.join(os.path.dirname(path), external_location)
            with open(data_path, "wb") as data:
                offset = 0
                for t in self.initializers:
                    if len(t.raw) + 33 >= size_threshold:
                        data.write(t.raw)
                        t.external = (external_location, offset, len(t.raw))
                        offset += len(t.raw)
        with open(path, "wb") as out:
            self.message().write(out)
