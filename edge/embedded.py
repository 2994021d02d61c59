"""Metadata embedded in the ``.tflite`` flatbuffer (its ``metadata`` field), so a lone model file
still describes itself. Uses the schema module that ships with ai-edge-litert (pure Python)."""
from __future__ import annotations

import json
from pathlib import Path

KEY = "lesionlite"


def schema_module():
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:
        return None
    return schema_py_generated


def can_read() -> bool:
    """Whether this install can read embedded metadata (tflite-runtime and TensorFlow alone cannot)."""
    return schema_module() is not None


def read_embedded(model_path: str | Path) -> dict | None:
    """The lesionlite metadata stored in the model file, or None (none stored, not a JSON object, or
    no reader)."""
    schema = schema_module()
    if schema is None:
        return None
    data = Path(model_path).read_bytes()
    try:
        model = schema.Model.GetRootAs(data, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name() and entry.Name().decode() == KEY:
                raw = model.Buffers(entry.Buffer()).DataAsNumpy()
                meta = json.loads(bytes(raw).decode("utf-8"))
                return meta if isinstance(meta, dict) else None
    except Exception:  # a file that is not a valid flatbuffer has no readable metadata
        return None
    return None


def unpack(model_bytes: bytes):
    """The model as an editable object tree (the schema's ``ModelT``)."""
    schema = schema_module()
    if schema is None:
        raise RuntimeError("editing a .tflite needs ai-edge-litert (pip install ai-edge-litert)")
    return schema.ModelT.InitFromPackedBuf(model_bytes, 0)


def pack(model, size_hint: int = 1 << 20) -> bytes:
    """A ``ModelT`` back to ``.tflite`` bytes."""
    import flatbuffers

    builder = flatbuffers.Builder(size_hint)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def embed(model_bytes: bytes, metadata: dict) -> bytes:
    """``model_bytes`` with ``metadata`` (JSON) stored under the ``lesionlite`` metadata key."""
    import numpy as np

    schema = schema_module()
    model = unpack(model_bytes)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(metadata, sort_keys=True).encode("utf-8"), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = KEY
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name not in (KEY, KEY.encode())] + [entry]
    return pack(model, len(model_bytes) + 1024)
