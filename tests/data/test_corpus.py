"""Local corpora, tokenizers and the hub (offline here: its errors)."""

import json
import socket
import time

import numpy as np
import pytest
import torch
from corpus_helpers import local, smoke

from moe_core.data import corpus, splits
from moe_core.errors import UserInputError


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


def test_hub_fails_at_once_when_offline_and_points_to_local(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(UserInputError, match="HF_HUB_OFFLINE.*data_source: local"):
        splits.prepare_data(smoke(data_source="hub"), tmp_path)
    assert time.monotonic() - start < 2


@pytest.mark.slow
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
