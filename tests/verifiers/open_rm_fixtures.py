"""Tiny random-init stand-ins of open reward models, saved in their released layouts.

Used by ``test_reward_model_presets.py``, ``test_process_reward.py`` and the contract test
(a helper module, not a test module). Each builder trains a byte-level BPE tokenizer in memory
with the family's special tokens and gives it the family's real chat template, read from the
original templates TRL ships in ``trl/chat_templates`` (Llama 3.1, Qwen2.5, Qwen3; TRL's CI
checks them weekly against the Hub repos that ship them):

- ``skywork_llama``: Skywork-Reward-V2-Llama-3.x, a ``LlamaForSequenceClassification``
  (num_labels 1) with Llama-3.1-Instruct's template; the tokenizer adds
  ``<|begin_of_text|>`` as BOS, as Llama 3's does.
- ``skywork_qwen3``: Skywork-Reward-V2-Qwen3, a ``Qwen3ForSequenceClassification`` with
  Qwen3's template; no BOS.
- ``qwen_prm``: Qwen2.5-Math-PRM, the layout of its ``modeling_qwen2_rm.py``: ``model.*`` =
  a ``Qwen2Model``, ``score.0`` = Linear(h, h), ``score.2`` = Linear(h, 2) (a ReLU between),
  ``architectures: [Qwen2ForProcessRewardModel]`` and the ``auto_map`` to the remote code
  (whose ``.py`` files are absent, as they would be unusable offline); Qwen2.5's template and
  ``<extra_0>`` as an added special token.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

#: Skywork-Reward-V2's model-card example, shortened (the prompt and a response).
CARD_PROMPT = "Jane has 12 apples. She gives 4 apples to her friend Mark. How many are left?"
CARD_RESPONSE = "1. Jane starts with 12 apples and gives 4 to Mark. 12 - 4 = 8.\n2. So 8."

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Jane has 12 apples. She gives 4 apples to her friend Mark.",
    "Please reason step by step, and put your final answer within \\boxed{}.",
    "<think>Let me think step by step.</think> The answer is 30.",
    "Cutting Knowledge Date: December 2023 Today Date: 26 Jul 2024",
    "system user assistant",
]

_FAMILY_TOKENS: dict[str, dict[str, Any]] = {
    "llama3": {
        "special": [
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
            "<|finetune_right_pad_id|>",
        ],
        "bos": "<|begin_of_text|>",
        "eos": "<|eot_id|>",
        "pad": "<|finetune_right_pad_id|>",
        "template": "llama3_1.jinja",
    },
    "qwen3": {
        "special": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "added": ["<think>", "</think>"],
        "bos": None,
        "eos": "<|im_end|>",
        "pad": "<|endoftext|>",
        "template": "qwen3.jinja",
    },
    "qwen2_5_prm": {
        "special": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<extra_0>"],
        "bos": None,
        "eos": "<|im_end|>",
        "pad": "<|endoftext|>",
        "template": "qwen2_5.jinja",
    },
}


def chat_template(name: str) -> str:
    """An original chat template as TRL ships it (``trl/chat_templates/<name>``)."""
    import trl

    return (Path(trl.__file__).parent / "chat_templates" / name).read_text(encoding="utf-8")


def make_tokenizer(dirpath: Path, family: str, *, pad: bool = True) -> Any:
    """Train and save a tiny tokenizer of ``family`` (llama3 | qwen3 | qwen2_5_prm); ``pad=False``
    saves it without a pad token (as Llama 3.1 Instruct's)."""
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    spec = _FAMILY_TOKENS[family]
    tok = Tokenizer(models.BPE())
    if family == "llama3":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        # Qwen2's normalizer and pre-tokenizer: AutoTokenizer rebuilds a qwen2/qwen3
        # checkpoint's tokenizer with them whatever tokenizer.json says.
        from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=spec["special"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer)
    if spec["bos"]:
        # Llama 3's post-processor puts BOS before every text it tokenizes with special tokens.
        tok.post_processor = processors.TemplateProcessing(
            single=f"{spec['bos']} $A", special_tokens=[(spec["bos"], tok.token_to_id(spec["bos"]))]
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=spec["bos"],
        eos_token=spec["eos"],
        pad_token=spec["pad"] if pad else None,
    )
    if spec.get("added"):
        fast.add_tokens(spec["added"])
    fast.chat_template = chat_template(spec["template"])
    fast.save_pretrained(str(dirpath))
    return fast


def _common(vocab: int, pad_id: int, **extra: Any) -> dict[str, Any]:
    return {
        "vocab_size": vocab,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
        "pad_token_id": pad_id,
        "initializer_range": 0.2,
        "tie_word_embeddings": False,
        **extra,
    }


def make_skywork(dirpath: str | Path, family: str, *, seed: int = 0, pad: bool = True) -> Path:
    """A tiny Skywork-Reward-V2 stand-in: ``llama3`` or ``qwen3`` family, num_labels 1.

    ``pad=False``: neither the tokenizer nor ``config.json`` has a pad token / id.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, LlamaConfig, Qwen3Config

    out = Path(dirpath)
    tok = make_tokenizer(out, family, pad=pad)
    cfg_cls = LlamaConfig if family == "llama3" else Qwen3Config
    extra: dict[str, Any] = {"num_labels": 1}
    if family == "qwen3":
        extra["head_dim"] = 8
    if family == "llama3":
        extra["bos_token_id"] = tok.bos_token_id
    cfg = cfg_cls(**_common(len(tok), tok.pad_token_id, eos_token_id=tok.eos_token_id, **extra))
    if not pad:
        cfg.pad_token_id = None
    torch.manual_seed(seed)
    AutoModelForSequenceClassification.from_config(cfg).save_pretrained(str(out))
    return out


def make_qwen_prm(dirpath: str | Path, *, seed: int = 0) -> Path:
    """A tiny Qwen2.5-Math-PRM stand-in in the released layout (see the module docstring)."""
    import torch
    from safetensors.torch import save_file
    from transformers import Qwen2Config, Qwen2Model

    out = Path(dirpath)
    tok = make_tokenizer(out, "qwen2_5_prm")
    cfg = Qwen2Config(**_common(len(tok), tok.pad_token_id, eos_token_id=tok.eos_token_id))
    torch.manual_seed(seed)
    backbone = Qwen2Model(cfg)
    h = cfg.hidden_size
    head = torch.nn.Sequential(torch.nn.Linear(h, h), torch.nn.ReLU(), torch.nn.Linear(h, 2))
    with torch.no_grad():  # spread the logits so step probabilities differ visibly
        for p in head.parameters():
            p.normal_(0.0, 0.15)
    tensors = {f"model.{k}": v for k, v in backbone.state_dict().items()}
    tensors.update({f"score.{k}": v for k, v in head.state_dict().items()})
    save_file(
        {k: v.detach().contiguous() for k, v in tensors.items()},
        str(out / "model.safetensors"),
        metadata={"format": "pt"},
    )
    data = cfg.to_dict()
    data["architectures"] = ["Qwen2ForProcessRewardModel"]
    data["auto_map"] = {
        "AutoConfig": "configuration_qwen2_rm.Qwen2RMConfig",
        "AutoModel": "modeling_qwen2_rm.Qwen2ForProcessRewardModel",
    }
    (out / "config.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    return out


_BUILT: dict[str, Path] = {}
_ROOT: list[str] = []


def tiny_open_rm(kind: str) -> Path:
    """A tiny model of ``kind`` (skywork_llama | skywork_llama_nopad | skywork_qwen3 | qwen_prm),
    built once per session; treat it as read-only."""
    if kind not in _BUILT:
        if not _ROOT:
            _ROOT.append(tempfile.mkdtemp(prefix="safeladder-open-rm-"))
        d = Path(_ROOT[0]) / kind
        d.mkdir()
        if kind == "skywork_llama":
            _BUILT[kind] = make_skywork(d, "llama3")
        elif kind == "skywork_llama_nopad":
            _BUILT[kind] = make_skywork(d, "llama3", seed=2, pad=False)
        elif kind == "skywork_qwen3":
            _BUILT[kind] = make_skywork(d, "qwen3", seed=1)
        elif kind == "qwen_prm":
            _BUILT[kind] = make_qwen_prm(d)
        else:
            raise ValueError(f"unknown kind {kind!r}")
    return _BUILT[kind]
