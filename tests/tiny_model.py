"""A tiny model the project makes itself (never downloaded): config, tokenizer, safetensors, GGUF."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

WORDS = ["hello", "world", "sovereign", "gpu", "mirror", "model", "site", "node"]


def make_tiny_model(folder: Path, weights_bytes: int = 64 * 1024, extras: bool = True) -> Path:
    from gguf import GGUFWriter
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {w: i for i, w in enumerate(["[UNK]", "[PAD]", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]", "pad_token": "[PAD]"})
    )
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": "gpt2",
                "architectures": ["GPT2LMHeadModel"],
                "vocab_size": len(vocab),
                "n_embd": 16,
                "n_layer": 1,
                "n_head": 2,
                "n_positions": 64,
                "bos_token_id": 0,
                "eos_token_id": 0,
            }
        )
    )
    rng = np.random.default_rng(7)
    n = max(16, weights_bytes // 4)
    save_file({"wte.weight": rng.standard_normal(n, dtype=np.float32)}, str(folder / "model.safetensors"))
    writer = GGUFWriter(str(folder / "tiny.Q8_0.gguf"), "gpt2")
    writer.add_tensor("token_embd.weight", rng.standard_normal((len(vocab), 16), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    if extras:
        (folder / "nested" / "deeper").mkdir(parents=True, exist_ok=True)
        (folder / "nested" / "deeper" / "notes with spaces.txt").write_text("spaces work\n")
        (folder / "nested" / "modèle-ünïcode.json").write_text(json.dumps({"ok": True}))
        (folder / "README.md").write_text("# tiny\nMade by sovinfra's tests.\n")
    return folder
