"""The built-in corpus: a language of latent topics, each a sparse Markov chain with
Zipf-like transitions, whose true probabilities are known, so the best loss any model can
reach on its val split (the Bayes floor) is computed exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from moe_core.config.run_config import RunConfig
from moe_core.errors import UserInputError

SYNTHETIC_BLOCK = 512  # documents drawn per random stream; document i depends on (seed, i) only


@dataclass(frozen=True)
class SyntheticLanguage:
    """Per topic a sparse Markov chain over token ids 1..vocab_size-1; EOS (id 0) ends documents.

    A document draws a topic k uniformly, then its first token from successors[k, EOS] and each
    next one from successors[k, previous]: the r-th successor with probability rank_probs[r].
    After every content token the document ends (EOS) with probability end_prob, whatever the
    topic, so lengths are geometric with mean 1 / end_prob content tokens.
    """

    successors: np.ndarray  # (topics, vocab_size, branching) int64; the EOS row = start tokens
    rank_probs: np.ndarray  # (branching,) Zipf-like probabilities of the successors by rank
    end_prob: float
    eos_id: int = 0

    @property
    def topics(self) -> int:
        return self.successors.shape[0]

    @property
    def vocab_size(self) -> int:
        return self.successors.shape[1]

    def step_log_probs(self, stream: np.ndarray) -> np.ndarray:
        """log P(x_t | x_{t-1}, topic) of a stream that starts a document: (topics, len(stream))."""
        prev = np.concatenate([[self.eos_id], stream[:-1]])
        after_eos = prev == self.eos_id
        p = np.empty((self.topics, len(stream)))
        for k in range(self.topics):  # one topic at a time keeps memory at (len, branching)
            hits = self.successors[k, prev, :] == stream[:, None]  # at most one hit per row
            p[k] = np.where(hits.any(-1), self.rank_probs[hits.argmax(-1)], 0.0)
        p *= np.where(after_eos, 1.0, 1.0 - self.end_prob)
        is_eos = stream == self.eos_id
        p[:, is_eos] = np.where(after_eos[is_eos], 0.0, self.end_prob)
        with np.errstate(divide="ignore"):
            return np.log(p)


def synthetic_language(cfg: RunConfig) -> SyntheticLanguage:
    """The language of cfg's synthetic_* fields, drawn from data_seed alone."""
    vocab, branching = cfg.vocab_size, cfg.synthetic_branching
    if cfg.data_seed < 0:
        raise UserInputError(f"data_seed = {cfg.data_seed}: must be >= 0")
    if branching > vocab - 1:
        raise UserInputError(
            f"synthetic_branching = {branching}: a token's successors are distinct content tokens, "
            f"so it must be at most vocab_size - 1 = {vocab - 1}; lower it or raise vocab_size")
    rng = np.random.default_rng([cfg.data_seed, 0])
    rows = _distinct_samples(rng, cfg.synthetic_topics * vocab, branching, vocab - 1) + 1
    rank_probs = np.arange(1, branching + 1, dtype=np.float64) ** -cfg.synthetic_zipf
    return SyntheticLanguage(
        successors=rows.reshape(cfg.synthetic_topics, vocab, branching),
        rank_probs=rank_probs / rank_probs.sum(),
        end_prob=1.0 / cfg.synthetic_doc_tokens,
    )


def _distinct_samples(rng: np.random.Generator, rows: int, k: int, n: int) -> np.ndarray:
    """Per row k distinct ints from range(n) in random order (Floyd's algorithm): (rows, k)."""
    out = np.empty((rows, k), dtype=np.int64)
    for i, top in enumerate(range(n - k, n)):
        draw = rng.integers(0, top + 1, size=rows)
        taken = (out[:, :i] == draw[:, None]).any(axis=1)
        out[:, i] = np.where(taken, top, draw)
    return np.take_along_axis(out, rng.random((rows, k)).argsort(axis=1), axis=1)


def generate_synthetic_documents(language: SyntheticLanguage, n_documents: int,
                                 seed: int) -> list[np.ndarray]:
    """Documents 0..n-1 as int64 arrays of content tokens (no EOS); doc i depends on (seed, i)."""
    cdf = np.cumsum(language.rank_probs)
    documents: list[np.ndarray] = []
    for block in range(-(-n_documents // SYNTHETIC_BLOCK)):
        # a whole block is always drawn, so a larger corpus extends a smaller one
        rng = np.random.default_rng([seed, 1, block])
        topics = rng.integers(language.topics, size=SYNTHETIC_BLOCK)
        lengths = rng.geometric(language.end_prob, size=SYNTHETIC_BLOCK)
        ranks = np.searchsorted(cdf, rng.random((SYNTHETIC_BLOCK, lengths.max())), side="right")
        ranks = np.minimum(ranks, len(cdf) - 1)  # cdf[-1] may round to just below 1
        tokens = np.empty_like(ranks)
        state = np.full(SYNTHETIC_BLOCK, language.eos_id)
        for t in range(lengths.max()):  # one step for all documents of the block at once
            state = language.successors[topics, state, ranks[:, t]]
            tokens[:, t] = state
        documents.extend(tokens[i, :n] for i, n in enumerate(lengths))
    return documents[:n_documents]


def true_token_nll(language: SyntheticLanguage, stream: np.ndarray) -> np.ndarray:
    """-log p_true(x_t | its document's prefix), nats, of a stream starting a document: (len,).

    The topic is filtered exactly: a topic's log evidence is the sum of its step log-probs since
    the document began, and p(x_t | prefix) = P(prefix, x_t) / P(prefix) mixes them under the
    uniform prior, which is also how a document's first token is predicted after an EOS.
    """
    log_step = language.step_log_probs(stream)
    is_start = np.concatenate([[True], stream[:-1] == language.eos_id])
    starts = np.flatnonzero(is_start)
    doc_of = np.cumsum(is_start) - 1

    def since_document_start(x: np.ndarray) -> np.ndarray:
        total = np.cumsum(x, axis=1)
        return total - (total[:, starts] - x[:, starts])[:, doc_of]

    # impossible steps (-inf) are counted apart so that the running sums stay finite
    impossible = np.isneginf(log_step)
    log_evidence = since_document_start(np.where(impossible, 0.0, log_step))
    log_evidence[since_document_start(impossible.astype(np.int64)) > 0] = -np.inf
    log_joint = np.logaddexp.reduce(log_evidence - np.log(language.topics), axis=0)
    log_joint_before = np.where(is_start, 0.0, np.concatenate([[0.0], log_joint[:-1]]))
    return log_joint_before - log_joint


def unigram_entropy(tokens: np.ndarray | torch.Tensor) -> float:
    """Entropy in nats of the tokens' empirical unigram distribution."""
    counts = np.bincount(np.asarray(tokens).ravel())
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())
