"""A tiny Llama-architecture model with random weights, written in the real GGUF v3 format (pure).

The lab serves real tokens from a real engine (llama.cpp) without a hub: this makes a model of a few
hundred kilobytes that llama.cpp loads and samples from. The vocabulary is SentencePiece-style (byte
fallback tokens, so any prompt tokenizes) plus plain English words. One residual dimension carries a
constant that no layer writes to, and the output rows of byte, control and end-of-sequence tokens point
hard against it: the model only ever says words, and always runs to max_tokens, like a load test wants.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

ALIGNMENT = 32
# GGUF metadata value types.
_UINT32, _INT32, _FLOAT32, _BOOL, _STRING, _ARRAY = 4, 5, 6, 7, 8, 9
# llama.cpp token types.
_NORMAL, _UNKNOWN, _CONTROL, _BYTE = 1, 2, 3, 6
_F32 = 0

_WORD_TEXT = """
the of and to in is that for it as was with be by on not he this are or his from at which but have
an they you were her she there been one all we their has would when if so no will can more other
into some time only new like then now these two may first could any way over my such our man me even
most made after also did many before must through back years where much your well down should
because each just those people how too little state good very make world still own see men work long
get here between both life being under never day same another know while last might us great old
year off come since against go came right used take three rack node model token server cluster
mirror cache
"""
WORDS = tuple(_WORD_TEXT.split())


@dataclass(frozen=True)
class Shape:
    embedding: int = 64
    layers: int = 2
    heads: int = 4
    feed_forward: int = 128
    context: int = 2048


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and token types: <unk> <s> </s>, 256 byte tokens, then words and letters."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [_UNKNOWN, _CONTROL, _CONTROL] + [_BYTE] * 256
    pieces = ["\u2581" + w for w in WORDS] + [chr(c) for c in range(0x21, 0x7F)] + ["\u2581"]
    seen = set(tokens)
    for piece in pieces:
        if piece not in seen:
            seen.add(piece)
            tokens.append(piece)
            types.append(_NORMAL)
    # SentencePiece merges prefer higher scores: longer pieces first.
    scores = [0.0 if t != _NORMAL else -1000.0 + len(tok) for tok, t in zip(tokens, types, strict=True)]
    return tokens, scores, types


def spoken(tokens: list[str], types: list[int]) -> list[bool]:
    """Which tokens the model may emit: words only (no bytes, controls or end of sequence)."""
    return [
        t == _NORMAL and tok.startswith("\u2581") and len(tok) > 1
        for tok, t in zip(tokens, types, strict=True)
    ]


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def _value(kind: int, value: object) -> bytes:
    if kind == _STRING:
        return _string(str(value))
    fmt = {_UINT32: "<I", _INT32: "<i", _FLOAT32: "<f", _BOOL: "<?"}[kind]
    return struct.pack(fmt, value)


def _kv(key: str, kind: int, value: object) -> bytes:
    return _string(key) + struct.pack("<I", kind) + _value(kind, value)


def _kv_array(key: str, kind: int, values: list[object]) -> bytes:
    head = _string(key) + struct.pack("<IIQ", _ARRAY, kind, len(values))
    return head + b"".join(_value(kind, v) for v in values)


def _pad(n: int) -> int:
    return (ALIGNMENT - n % ALIGNMENT) % ALIGNMENT


def tensors(
    shape: Shape, n_vocab: int, allowed: list[bool], seed: int
) -> list[tuple[str, list[int], list[float]]]:
    """(name, dims innermost-first, row-major data) for every tensor of a llama model."""
    rng = random.Random(seed)
    e, ff = shape.embedding, shape.feed_forward

    def matrix(n_in: int, n_out: int, scale: float, keep_out0: bool = True) -> list[float]:
        rows = [[rng.gauss(0.0, scale) for _ in range(n_in)] for _ in range(n_out)]
        if not keep_out0:  # no layer writes to residual dimension 0: it stays the constant
            rows[0] = [0.0] * n_in
        return [x for row in rows for x in row]

    embed = []
    for _ in range(n_vocab):
        row = [rng.gauss(0.0, 0.5) for _ in range(e)]
        row[0] = 4.0
        embed.extend(row)
    output = []
    for ok in allowed:
        row = [rng.gauss(0.0, 0.15) for _ in range(e)]
        row[0] = 0.0 if ok else -64.0
        output.extend(row)
    out: list[tuple[str, list[int], list[float]]] = [
        ("token_embd.weight", [e, n_vocab], embed),
        ("output_norm.weight", [e], [1.0] * e),
        ("output.weight", [e, n_vocab], output),
    ]
    for i in range(shape.layers):
        out += [
            (f"blk.{i}.attn_norm.weight", [e], [1.0] * e),
            (f"blk.{i}.attn_q.weight", [e, e], matrix(e, e, 0.2)),
            (f"blk.{i}.attn_k.weight", [e, e], matrix(e, e, 0.2)),
            (f"blk.{i}.attn_v.weight", [e, e], matrix(e, e, 0.2)),
            (f"blk.{i}.attn_output.weight", [e, e], matrix(e, e, 0.2, keep_out0=False)),
            (f"blk.{i}.ffn_norm.weight", [e], [1.0] * e),
            (f"blk.{i}.ffn_gate.weight", [e, ff], matrix(e, ff, 0.2)),
            (f"blk.{i}.ffn_up.weight", [e, ff], matrix(e, ff, 0.2)),
            (f"blk.{i}.ffn_down.weight", [ff, e], matrix(ff, e, 0.2, keep_out0=False)),
        ]
    return out


def model_bytes(name: str, seed: int, shape: Shape = Shape()) -> bytes:
    """The whole .gguf file."""
    tokens, scores, types = vocabulary()
    chat = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    meta = [
        _kv("general.architecture", _STRING, "llama"),
        _kv("general.name", _STRING, name),
        _kv("general.alignment", _UINT32, ALIGNMENT),
        _kv("llama.context_length", _UINT32, shape.context),
        _kv("llama.embedding_length", _UINT32, shape.embedding),
        _kv("llama.block_count", _UINT32, shape.layers),
        _kv("llama.feed_forward_length", _UINT32, shape.feed_forward),
        _kv("llama.attention.head_count", _UINT32, shape.heads),
        _kv("llama.attention.head_count_kv", _UINT32, shape.heads),
        _kv("llama.rope.dimension_count", _UINT32, shape.embedding // shape.heads),
        _kv("llama.attention.layer_norm_rms_epsilon", _FLOAT32, 1e-5),
        _kv("tokenizer.ggml.model", _STRING, "llama"),
        _kv_array("tokenizer.ggml.tokens", _STRING, list(tokens)),
        _kv_array("tokenizer.ggml.scores", _FLOAT32, list(scores)),
        _kv_array("tokenizer.ggml.token_type", _INT32, list(types)),
        _kv("tokenizer.ggml.unknown_token_id", _UINT32, 0),
        _kv("tokenizer.ggml.bos_token_id", _UINT32, 1),
        _kv("tokenizer.ggml.eos_token_id", _UINT32, 2),
        _kv("tokenizer.chat_template", _STRING, chat),
    ]
    weights = tensors(shape, len(tokens), spoken(tokens, types), seed)
    infos, blobs, offset = [], [], 0
    for tensor_name, dims, data in weights:
        infos.append(
            _string(tensor_name)
            + struct.pack("<I", len(dims))
            + b"".join(struct.pack("<Q", d) for d in dims)
            + struct.pack("<IQ", _F32, offset)
        )
        blob = struct.pack(f"<{len(data)}f", *data)
        blob += b"\0" * _pad(len(blob))
        blobs.append(blob)
        offset += len(blob)
    header = b"GGUF" + struct.pack("<IQQ", 3, len(weights), len(meta)) + b"".join(meta) + b"".join(infos)
    return header + b"\0" * _pad(len(header)) + b"".join(blobs)
