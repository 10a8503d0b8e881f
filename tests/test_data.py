"""Data preparation: split by document, EOS-joined streams cut into windows, cached; the
synthetic language's exact Bayes floor; local files and the hub through one text pipeline."""

import json
import math
import socket
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from moe_core.config.run_config import build_config
from moe_core.data import corpus, splits, synthetic
from moe_core.errors import UserInputError

WORDS = ("alpha beta gamma delta river stone cloud ember forest lantern quiet rapid silver "
         "tiger violet window yellow zephyr amber basil cedar dune echo fable").split()


def smoke(**overrides):
    return build_config("baseline", "smoke", overrides=overrides)


def local(path, **overrides):
    values = {"data_source": "local", "data_path": str(path), "vocab_size": 300, "seq_len": 16,
              "num_documents": 40}
    return smoke(**{**values, **overrides})


@pytest.fixture(scope="module")
def documents():
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(WORDS, size=rng.integers(20, 40))) + f" {i}." for i in range(48)]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory, documents):
    """The same documents as a folder of .txt, a .txt of paragraphs, a .jsonl and a .parquet."""
    root = tmp_path_factory.mktemp("corpora")
    (root / "txt").mkdir()
    for i, doc in enumerate(documents):
        (root / "txt" / f"doc{i:03d}.txt").write_text(doc + "\n")
    (root / "paragraphs.txt").write_text("\n\n".join(documents) + "\n")
    (root / "docs.jsonl").write_text(
        "".join(json.dumps({"id": i, "text": d}) + "\n" for i, d in enumerate(documents)))
    pq.write_table(pa.table({"id": list(range(len(documents))), "text": documents}),
                   root / "docs.parquet")
    return root


# ---- the shared pipeline -------------------------------------------------------------------


def test_split_keeps_the_first_documents_for_training_and_the_rest_for_validation():
    train, val = splits.split_documents(list(range(20)), 0.1, "test")
    assert train == list(range(18)) and val == [18, 19]


def test_a_split_without_documents_is_a_user_error_naming_num_documents():
    with pytest.raises(UserInputError, match="num_documents"):
        splits.split_documents([1, 2, 3], 0.1, "test")


def test_windows_overlap_by_one_token_and_drop_the_partial_tail():
    windows = splits.cut_windows(np.arange(11), 3)
    assert windows.dtype == torch.int64
    assert windows.tolist() == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]


def test_each_document_is_followed_by_eos_in_the_stream():
    assert splits.join_documents([[5, 6], [7]], eos_id=0).tolist() == [5, 6, 0, 7, 0]


# ---- synthetic data ------------------------------------------------------------------------


def test_same_seed_gives_the_same_corpus_and_another_seed_a_different_one(tmp_path):
    first = splits.prepare_data(smoke(), tmp_path / "a")
    again = splits.prepare_data(smoke(), tmp_path / "b")
    other = splits.prepare_data(smoke(data_seed=7), tmp_path / "c")
    assert torch.equal(first.train, again.train) and torch.equal(first.val, again.val)
    assert first.bayes_floor == again.bayes_floor
    assert not torch.equal(first.train[:5], other.train[:5])


def test_document_i_depends_only_on_the_seed_so_more_documents_extend_the_corpus():
    language = synthetic.synthetic_language(smoke())
    few = synthetic.generate_synthetic_documents(language, 60, seed=3)
    many = synthetic.generate_synthetic_documents(language, 700, seed=3)
    assert len(many) == 700
    assert all(np.array_equal(a, b) for a, b in zip(few, many[:60], strict=True))


def test_documents_hold_content_tokens_with_mean_length_synthetic_doc_tokens():
    cfg = smoke(synthetic_doc_tokens=50)
    language = synthetic.synthetic_language(cfg)
    docs = synthetic.generate_synthetic_documents(language, 2000, seed=1)
    tokens = np.concatenate(docs)
    assert tokens.min() >= 1 and tokens.max() < cfg.vocab_size  # EOS (0) only between documents
    assert np.mean([len(d) for d in docs]) == pytest.approx(50, rel=0.1)


def test_windows_are_the_split_streams_of_the_generated_documents(tmp_path):
    cfg = smoke(num_documents=60, val_fraction=0.1)
    prepared = splits.prepare_data(cfg, tmp_path)
    language = synthetic.synthetic_language(cfg)
    docs = synthetic.generate_synthetic_documents(language, 60, cfg.data_seed)
    for split, split_docs in (("train", docs[:54]), ("val", docs[54:])):
        stream = splits.join_documents(split_docs, prepared.eos_id)
        windows = getattr(prepared, split)
        n = (len(stream) - 1) // cfg.seq_len
        assert windows.shape == (n, cfg.seq_len + 1)
        for i in range(n):
            expected = stream[i * cfg.seq_len : (i + 1) * cfg.seq_len + 1]
            assert windows[i].tolist() == expected.tolist()
        # the last target of a window is the first input of the next
        assert torch.equal(windows[:-1, -1], windows[1:, 0])
        assert prepared.stats[split] == {"documents": len(split_docs), "sequences": n,
                                         "tokens": len(stream),
                                         "windows_sha": splits.windows_sha(windows)}


def test_more_train_documents_leave_the_val_split_identical(tmp_path):
    base = splits.prepare_data(smoke(num_documents=60), tmp_path)
    fresh = splits.prepare_data(smoke(num_documents=60, train_documents_factor=5.0), tmp_path)
    assert torch.equal(fresh.val, base.val) and fresh.bayes_floor == base.bayes_floor
    assert fresh.stats["val"]["windows_sha"] == base.stats["val"]["windows_sha"]
    assert fresh.stats["train"]["documents"] == 5 * base.stats["train"]["documents"] == 270
    # the base train split comes first, then documents 60.. that no other run's val holds
    assert torch.equal(fresh.train[: len(base.train) - 1], base.train[:-1])


def test_more_train_documents_keep_the_val_tokens_of_a_local_corpus(tmp_path, corpora):
    base = splits.prepare_data(local(corpora / "docs.jsonl", num_documents=20), tmp_path)
    fresh = splits.prepare_data(local(corpora / "docs.jsonl", num_documents=20,
                                    train_documents_factor=1.5), tmp_path)
    # the BPE is trained on the base train split only, so the val windows do not move
    assert torch.equal(fresh.val, base.val)
    assert fresh.stats["train"]["documents"] == 27 and fresh.stats["val"]["documents"] == 2


@pytest.mark.parametrize("factor, needed", [(1.0, 60), (20.0, 60 + 54 * 19)])
def test_a_corpus_smaller_than_the_run_needs_is_an_error_naming_the_counts(
        tmp_path, corpora, factor, needed):
    cfg = local(corpora / "docs.jsonl", num_documents=60, train_documents_factor=factor)
    with pytest.raises(UserInputError) as error:
        splits.prepare_data(cfg, tmp_path)
    message = str(error.value)
    assert f"holds 48 non-empty documents but this run needs {needed}" in message
    assert ("train_documents_factor" in message) == (factor > 1)


def test_no_document_appears_in_both_splits(tmp_path):
    cfg = smoke(num_documents=60)
    prepared = splits.prepare_data(cfg, tmp_path)
    train, val = prepared.stats["train"], prepared.stats["val"]
    assert train["documents"] + val["documents"] == 60 and val["documents"] == 6
    # the val stream starts a fresh document: its windows match no part of the train stream
    train_stream = torch.cat([prepared.train[:, :-1].flatten(), prepared.train[-1:, -1]])
    first_val = prepared.val[0]
    matches = train_stream.unfold(0, len(first_val), 1).eq(first_val).all(dim=1)
    assert not matches.any()


def test_true_token_nll_equals_the_brute_force_posterior_on_a_tiny_language():
    cfg = smoke(vocab_size=7, synthetic_topics=3, synthetic_branching=3, synthetic_doc_tokens=4,
                synthetic_zipf=0.8)
    language = synthetic.synthetic_language(cfg)
    eos = language.eos_id
    stream = splits.join_documents(synthetic.generate_synthetic_documents(language, 6, seed=2), eos)

    def step(k, prev, x):  # P(x | prev, topic k), read off the definition of the language
        if x == eos:
            return 0.0 if prev == eos else language.end_prob
        successors = language.successors[k, prev].tolist()
        go_on = 1.0 if prev == eos else 1.0 - language.end_prob
        return go_on * language.rank_probs[successors.index(x)] if x in successors else 0.0

    def joint(tokens, k):  # P(tokens | k) for tokens starting a document
        return math.prod(step(k, p, x) for p, x in zip([eos, *tokens], tokens, strict=False))

    expected, start = [], 0
    for t in range(len(stream)):
        prefix = stream[start : t + 1].tolist()
        with_x = sum(joint(prefix, k) for k in range(language.topics)) / language.topics
        without = sum(joint(prefix[:-1], k) for k in range(language.topics)) / language.topics
        expected.append(-math.log(with_x / without))
        start = t + 1 if stream[t] == eos else start
    assert language.topics == 3 and len(stream) > 10
    np.testing.assert_allclose(synthetic.true_token_nll(language, stream), expected, rtol=0,
                               atol=1e-9)


def test_bayes_floor_is_the_mean_true_nll_over_the_val_window_targets(tmp_path):
    cfg = smoke()
    prepared = splits.prepare_data(cfg, tmp_path)
    val = prepared.val
    covered = torch.cat([val[0, :1], val[:, 1:].flatten()]).numpy()  # stream[0 : n*L + 1]
    nll = synthetic.true_token_nll(synthetic.synthetic_language(cfg), covered)
    assert prepared.bayes_floor == pytest.approx(nll[1:].mean(), abs=1e-12)


@pytest.mark.parametrize("preset", ["smoke", "cpu"])
def test_bayes_floor_is_above_zero_and_below_the_val_unigram_entropy(tmp_path, preset):
    prepared = splits.prepare_data(build_config("baseline", preset), tmp_path)
    unigram = synthetic.unigram_entropy(prepared.val[:, 1:])
    assert 0.5 < prepared.bayes_floor < unigram - 1.0


def test_branching_must_leave_distinct_successors_in_the_vocabulary(tmp_path):
    with pytest.raises(UserInputError, match="synthetic_branching"):
        splits.prepare_data(smoke(vocab_size=8, synthetic_branching=8), tmp_path)


# ---- the cache -----------------------------------------------------------------------------


def test_second_prepare_loads_from_the_cache_without_generating(tmp_path, monkeypatch):
    first = splits.prepare_data(smoke(), tmp_path)
    assert (tmp_path / "data" / first.fingerprint / "meta.json").is_file()

    def fail(*args, **kwargs):
        raise AssertionError("the cached corpus was generated again")

    monkeypatch.setattr(splits, "generate_synthetic_documents", fail)
    second = splits.prepare_data(smoke(), tmp_path)
    assert torch.equal(first.train, second.train) and torch.equal(first.val, second.val)
    assert (second.stats, second.bayes_floor, second.source, second.vocab_size) == (
        first.stats, first.bayes_floor, first.source, first.vocab_size)


def test_fingerprint_follows_the_data_fields_only():
    base = splits.data_fingerprint(smoke())
    assert splits.data_fingerprint(smoke(dropout=0.3, lr=0.001)) == base
    assert splits.data_fingerprint(smoke(seq_len=16)) != base
    assert splits.data_fingerprint(smoke(data_seed=9)) != base


def test_default_cache_dir_follows_moe_core_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MOE_CORE_CACHE", str(tmp_path))
    assert splits.default_cache_dir() == tmp_path
    monkeypatch.delenv("MOE_CORE_CACHE")
    assert splits.default_cache_dir().parts[-2:] == (".cache", "moe_core")


# ---- local text ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["paragraphs.txt", "docs.jsonl", "docs.parquet"])
def test_txt_jsonl_and_parquet_give_the_windows_of_a_folder_of_txt(tmp_path, corpora, name):
    folder = splits.prepare_data(local(corpora / "txt"), tmp_path)
    other = splits.prepare_data(local(corpora / name), tmp_path)
    assert folder.fingerprint != other.fingerprint
    assert torch.equal(folder.train, other.train) and torch.equal(folder.val, other.val)
    assert folder.stats == other.stats and folder.stats["val"]["documents"] == 4
    assert other.vocab_size == 300 and other.bayes_floor is None


def test_bpe_is_trained_on_the_train_split_only_and_reused(tmp_path, corpora, documents,
                                                          monkeypatch):
    trained_on = []
    train_bpe = corpus.train_bpe_tokenizer

    def spy(docs, vocab_size):
        trained_on.append(list(docs))
        return train_bpe(docs, vocab_size)

    monkeypatch.setattr(corpus, "train_bpe_tokenizer", spy)
    first = splits.prepare_data(local(corpora / "docs.jsonl"), tmp_path)
    splits.prepare_data(local(corpora / "docs.jsonl", seq_len=8), tmp_path)  # new windows
    assert trained_on == [documents[:36]]
    assert len(list((tmp_path / "tokenizers").glob("bpe-300-*.json"))) == 1
    eos = first.eos_id
    assert eos == 0 and (first.val == eos).sum() >= 3  # documents are joined by <|endoftext|>


def test_a_tokenizer_json_path_sets_vocab_size_and_eos(tmp_path, corpora, documents):
    tokenizer = corpus.train_bpe_tokenizer(documents, 280)
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    prepared = splits.prepare_data(local(corpora / "docs.jsonl", tokenizer=str(tmp_path)), tmp_path)
    assert prepared.vocab_size == 280
    assert prepared.eos_id == tokenizer.token_to_id("<|endoftext|>")


def test_editing_a_local_corpus_file_prepares_it_again(tmp_path, corpora, documents):
    path = tmp_path / "docs.jsonl"
    path.write_text((corpora / "docs.jsonl").read_text())
    before = splits.prepare_data(local(path), tmp_path)
    path.write_text("".join(json.dumps({"text": d.upper()}) + "\n" for d in documents))
    after = splits.prepare_data(local(path), tmp_path)
    assert after.fingerprint != before.fingerprint
    assert not torch.equal(after.val, before.val)


def test_missing_data_path_names_the_key_and_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(UserInputError, match="data_path") as error:
        splits.prepare_data(local(missing), tmp_path)
    assert str(missing) in str(error.value)


def test_missing_text_field_names_the_key_and_the_columns_present(tmp_path):
    path = tmp_path / "body.jsonl"
    path.write_text("".join(json.dumps({"body": f"doc {i}"}) + "\n" for i in range(10)))
    with pytest.raises(UserInputError, match="text_field") as error:
        splits.prepare_data(local(path), tmp_path)
    assert "body" in str(error.value)


def test_empty_corpus_names_the_path(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "blank.txt").write_text("\n\n")
    with pytest.raises(UserInputError, match="no non-empty documents") as error:
        splits.prepare_data(local(tmp_path / "empty"), tmp_path)
    assert str(tmp_path / "empty") in str(error.value)


def test_a_corpus_smaller_than_one_window_says_what_seq_len_needs(tmp_path):
    path = tmp_path / "short.jsonl"
    path.write_text("".join(json.dumps({"text": f"word {i}"}) + "\n" for i in range(200)))
    with pytest.raises(UserInputError, match="seq_len = 32 needs 33") as error:
        splits.prepare_data(local(path, seq_len=32, num_documents=10), tmp_path)
    assert str(path) in str(error.value) and "num_documents" in str(error.value)


def test_a_hub_tokenizer_missing_from_the_local_cache_is_a_user_error(tmp_path, corpora):
    cfg = local(corpora / "docs.jsonl", tokenizer="nobody/no-such-tokenizer")
    with pytest.raises(UserInputError, match="nobody/no-such-tokenizer.*bpe"):
        splits.prepare_data(cfg, tmp_path)


# ---- the hub -------------------------------------------------------------------------------


def test_hub_fails_at_once_when_offline_and_points_to_local(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(UserInputError, match="HF_HUB_OFFLINE.*data_source: local"):
        splits.prepare_data(smoke(data_source="hub"), tmp_path)
    assert time.monotonic() - start < 2


@pytest.mark.parametrize("endpoint", ["refuses", "never_answers"])
def test_hub_fails_within_seconds_when_the_endpoint_is_unreachable(tmp_path, monkeypatch,
                                                                    endpoint):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    if endpoint == "refuses":
        server.close()
    else:
        server.listen(1)  # connections queue up but no reply ever comes
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    start = time.monotonic()
    try:
        with pytest.raises(UserInputError, match="unreachable.*data_source: local"):
            splits.prepare_data(smoke(data_source="hub"), tmp_path)
    finally:
        server.close()
    assert time.monotonic() - start < 10


def test_hub_documents_are_joined_as_the_tokenizer_encodes_them_and_local_ones_by_eos(
        tmp_path, corpora, documents, monkeypatch):
    """The hub recipe is the reference's (its 2,521 / 279 windows): each document's ids with the
    tokenizer's own special tokens, concatenated; local documents get one EOS each."""
    monkeypatch.setattr(corpus, "stream_hub_rows",
                        lambda cfg, cache_dir: iter([{"text": d, "id": 0} for d in documents]))
    hub = splits.prepare_data(local(corpora / "docs.jsonl", data_source="hub"), tmp_path)
    from_file = splits.prepare_data(local(corpora / "docs.jsonl"), tmp_path)
    assert hub.source.startswith("hub ") and hub.fingerprint != from_file.fingerprint
    tokenizer = corpus._cached_bpe(documents[:36], 300, tmp_path)  # adds no special tokens
    ids = [tokenizer.encode(d).ids for d in documents[:40]]
    for split, docs in (("train", ids[:36]), ("val", ids[36:])):
        stream = np.concatenate(docs)
        assert torch.equal(getattr(hub, split), splits.cut_windows(stream, 16))
        assert hub.stats[split]["tokens"] == len(stream)
        assert from_file.stats[split]["tokens"] == len(stream) + len(docs)  # one EOS each


def test_a_tokenizer_that_appends_eos_gives_hub_and_local_documents_one_eos_each(
        tmp_path, corpora, documents, monkeypatch):
    from tokenizers import processors

    tokenizer = corpus.train_bpe_tokenizer(documents, 300)
    eos = tokenizer.token_to_id(corpus.EOS_TEXT)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {corpus.EOS_TEXT}", special_tokens=[(corpus.EOS_TEXT, eos)])
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    monkeypatch.setattr(corpus, "stream_hub_rows",
                        lambda cfg, cache_dir: iter([{"text": d, "id": 0} for d in documents]))
    cfg = {"tokenizer": str(tmp_path / "tokenizer.json")}
    hub = splits.prepare_data(local(corpora / "docs.jsonl", data_source="hub", **cfg), tmp_path)
    from_file = splits.prepare_data(local(corpora / "docs.jsonl", **cfg), tmp_path)
    assert torch.equal(hub.train, from_file.train) and torch.equal(hub.val, from_file.val)
    assert hub.stats["val"]["tokens"] == sum(len(tokenizer.encode(d).ids)
                                             for d in documents[36:40])

