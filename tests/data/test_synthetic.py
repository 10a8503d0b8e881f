"""The built-in language: reproducible documents and the exact Bayes floor."""

import math

import numpy as np
import pytest
import torch

from moe_core.config.run_config import build_config
from moe_core.data import splits, synthetic
from moe_core.errors import UserInputError


def smoke(**overrides):
    return build_config("baseline", "smoke", overrides=overrides)


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
