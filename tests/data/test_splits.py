"""Splits by document, windows, the cache and its fingerprint."""

import numpy as np
import pytest
import torch
from corpus_helpers import local, smoke

from moe_core.data import splits, synthetic
from moe_core.errors import UserInputError


def test_split_keeps_the_first_documents_for_training_and_the_rest_for_validation():
    train, val, base = splits.split_documents(list(range(20)), 0.1, "test")
    assert train == base == list(range(18)) and val == [18, 19]


def test_a_negative_extra_keeps_the_first_train_documents_and_the_same_val_split():
    train, val, base = splits.split_documents(list(range(20)), 0.1, "test", extra_train=-9)
    assert train == list(range(9)) and val == [18, 19] and base == list(range(18))
    with pytest.raises(UserInputError, match="train_documents_factor keeps 0 of the 18"):
        splits.split_documents(list(range(20)), 0.1, "test", extra_train=-18)


def test_a_val_sample_scores_other_documents_and_trains_on_the_same_ones():
    # 20 base documents, 5 extra train ones, then 2 blocks of 2 val documents
    documents = list(range(29))
    own = splits.split_documents(documents[:25], 0.1, "test", extra_train=5)
    second = splits.split_documents(documents[:27], 0.1, "test", 5, val_sample=1,
                                    val_documents=2)
    third = splits.split_documents(documents, 0.1, "test", 5, val_sample=2, val_documents=4)
    assert own[1] == [18, 19] and second[1] == [25, 26] and third[1] == [27, 28]
    assert own[0] == second[0] == third[0] == [*range(18), *range(20, 25)]
    assert own[2] == second[2] == third[2] == list(range(18))
    # blocks of another size than the val split's: a user error naming val_sample
    with pytest.raises(UserInputError, match="val_sample = 2 needs 4 documents"):
        splits.split_documents(documents[:28], 0.1, "test", 5, val_sample=2, val_documents=3)
    # a source shorter than the run reads: its base would shrink, and its train split with it
    cfg = smoke(num_documents=20, val_fraction=0.1, val_sample=1)
    with pytest.raises(UserInputError, match="val_sample = 1 reads 22 documents"):
        splits.check_val_sample_source(cfg, 21, "test")
    splits.check_val_sample_source(cfg, 22, "test")


def test_a_split_without_documents_is_a_user_error_naming_num_documents():
    with pytest.raises(UserInputError, match="num_documents"):
        splits.split_documents([1, 2, 3], 0.1, "test")


def test_windows_overlap_by_one_token_and_drop_the_partial_tail():
    windows = splits.cut_windows(np.arange(11), 3)
    assert windows.dtype == torch.int64
    assert windows.tolist() == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]


def test_each_document_is_followed_by_eos_in_the_stream():
    assert splits.join_documents([[5, 6], [7]], eos_id=0).tolist() == [5, 6, 0, 7, 0]


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


def test_a_factor_below_one_keeps_the_first_train_documents_and_the_val_split(tmp_path):
    base = splits.prepare_data(smoke(num_documents=60), tmp_path)
    small = splits.prepare_data(smoke(num_documents=60, train_documents_factor=0.5), tmp_path)
    assert torch.equal(small.val, base.val) and small.bayes_floor == base.bayes_floor
    assert 2 * small.stats["train"]["documents"] == base.stats["train"]["documents"]
    # a prefix of the base train split: the same documents, in the same order
    assert torch.equal(small.train[:-1], base.train[: len(small.train) - 1])


@pytest.mark.parametrize("factor, train_documents", [(1.5, 27), (0.5, 9)])
def test_more_or_fewer_train_documents_keep_the_val_tokens_of_a_local_corpus(
        tmp_path, corpora, factor, train_documents):
    base = splits.prepare_data(local(corpora / "docs.jsonl", num_documents=20), tmp_path)
    other = splits.prepare_data(local(corpora / "docs.jsonl", num_documents=20,
                                    train_documents_factor=factor), tmp_path)
    # the BPE is trained on the base train split only, so the val windows do not move
    assert torch.equal(other.val, base.val)
    assert other.stats["train"]["documents"] == train_documents
    assert other.stats["val"]["documents"] == 2


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
    # another val sample is other data; the split's own keeps the key it had before the
    # field existed (runs recorded earlier name the same data)
    assert splits.data_fingerprint(smoke(val_sample=1)) != base
    assert "val_sample" not in smoke().data_fields()


def test_default_cache_dir_follows_moe_core_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MOE_CORE_CACHE", str(tmp_path))
    assert splits.default_cache_dir() == tmp_path
    monkeypatch.delenv("MOE_CORE_CACHE")
    assert splits.default_cache_dir().parts[-2:] == (".cache", "moe_core")
