"""Training data: documents -> split by document -> tokens -> one stream per split -> windows.

Every source goes through the same steps, as in the reference recipe:

1. documents: token-id arrays (`synthetic`) or strings (`local` files, the `hub`);
2. the first (1 - val_fraction) of the first num_documents train and the rest validate, split
   before tokenization so that no document is in both; train_documents_factor > 1 adds the
   documents that follow to the train split only, so the val split stays the same documents
   and runs with more train data are compared with the others on the same val sequences;
3. each split is tokenized and its documents joined into one stream, each followed by EOS
   (on the hub, as the reference recipe, only by the special tokens the tokenizer adds);
4. the stream is cut into non-overlapping windows of seq_len inputs plus one shifted target,
   window i = stream[i*L : i*L + L + 1], and the partial tail is dropped.

Prepared splits are cached under `<cache_dir>/data/<fingerprint>/`, so a suite of runs,
even in concurrent processes, prepares them once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from moe_core.config import RunConfig, stable_hash
from moe_core.errors import UserInputError

try:  # lets concurrent processes wait for one preparer; absent on Windows
    import fcntl
except ImportError:
    fcntl = None

PIPELINE_VERSION = "data-v2"  # bump when a change in this file changes the prepared windows
EOS_TEXT = "<|endoftext|>"
EOS_CANDIDATES = (EOS_TEXT, "</s>", "<|end_of_text|>", "<eos>")
TEXT_FORMATS = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
HUB_PROBE_TIMEOUT_S = 3.0
SYNTHETIC_BLOCK = 512  # documents drawn per random stream; document i depends on (seed, i) only

T = TypeVar("T")


@dataclass
class PreparedData:
    """One data config's windows: inputs = w[:, :-1], targets = w[:, 1:], both (n, seq_len)."""

    train: torch.Tensor  # (n_train_sequences, seq_len + 1) int64
    val: torch.Tensor  # (n_val_sequences, seq_len + 1) int64
    vocab_size: int
    eos_id: int
    # {split: {"documents", "sequences", "tokens", "windows_sha"}}; tokens = stream length, EOS
    # incl.; windows_sha identifies the split's windows: runs with the same val sha are paired
    stats: dict
    bayes_floor: float | None  # nats per val target token (synthetic only)
    fingerprint: str
    source: str


def default_cache_dir() -> Path:
    """The cache root: $MOE_CORE_CACHE if set, else ~/.cache/moe_core."""
    return Path(os.environ.get("MOE_CORE_CACHE") or Path.home() / ".cache" / "moe_core")


def prepare_data(cfg: RunConfig, cache_dir: Path | None = None) -> PreparedData:
    """The train and val windows of cfg's data fields, from the cache when prepared before."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    fingerprint = data_fingerprint(cfg)
    folder = cache_dir / "data" / fingerprint
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserInputError(f"data cache {folder.parent} cannot be created ({e.strerror}); "
                             "set MOE_CORE_CACHE to a writable folder") from None
    with _exclusive(folder.with_suffix(".lock")):
        if (folder / "meta.json").is_file():
            return _load_prepared(folder)
        if cfg.data_source == "synthetic":
            data = _prepare_synthetic(cfg, fingerprint)
        elif cfg.data_source == "local":
            data = _prepare_text(load_local_documents(cfg, cache_dir), cfg, cache_dir,
                                 fingerprint, download=False)
        else:
            data = _prepare_text(load_hub_documents(cfg, cache_dir), cfg, cache_dir,
                                 fingerprint, download=True)
        _save_prepared(data, folder)
    return data


def data_fingerprint(cfg: RunConfig) -> str:
    """Stable hash of cfg.data_fields(), the pipeline version and any local file contents."""
    key = {"fields": cfg.data_fields(), "pipeline": PIPELINE_VERSION}
    if cfg.data_source == "local":
        # editing a corpus file must not serve stale windows from the cache
        key["files"] = _digest_files(local_corpus_files(cfg)[1])
    if cfg.data_source == "hub":
        # these decide hub data too, though data_fields() leaves them out
        key["text_field"] = cfg.text_field
        key["separator"] = "the tokenizer's own"  # document_separator; local files: EOS
        if cfg.tokenizer == "bpe":
            key["vocab_size"] = cfg.vocab_size
    tokenizer_file = _tokenizer_file(cfg.tokenizer)
    if cfg.data_source != "synthetic" and tokenizer_file:
        key["tokenizer_file"] = _digest_files([tokenizer_file])
    return stable_hash(key)


# ---- the shared pipeline: split, join, cut -------------------------------------------------


def split_documents(documents: Sequence[T], val_fraction: float, where: str,
                    extra_train: int = 0) -> tuple[list[T], list[T]]:
    """Of all but the last extra_train documents, the first (1 - val_fraction) train and the
    rest validate; the last extra_train documents are added to the train split."""
    base = len(documents) - extra_train
    n_val = round(base * val_fraction)
    n_train = base - n_val
    if n_train <= 0 or n_val <= 0:
        raise UserInputError(
            f"{where}: {base} documents with val_fraction = {val_fraction} leave "
            f"{n_train} for training and {n_val} for validation; each split needs at least one: "
            "raise num_documents (or use a larger corpus) or change val_fraction")
    return list(documents[:n_train]) + list(documents[base:]), list(documents[n_train:base])


def extra_train_documents(cfg: RunConfig) -> int:
    """Documents beyond num_documents that train_documents_factor adds to the train split."""
    n_train = cfg.num_documents - round(cfg.num_documents * cfg.val_fraction)
    return round(n_train * (cfg.train_documents_factor - 1.0))


def documents_needed(cfg: RunConfig) -> int:
    """How many documents of the source a run reads: num_documents plus the extra train ones."""
    return cfg.num_documents + extra_train_documents(cfg)


def windows_sha(windows: torch.Tensor) -> str:
    """A short hash of a split's token windows: equal hashes mean the same sequences."""
    return hashlib.sha256(windows.numpy().tobytes()).hexdigest()[:16]


def join_documents(token_docs: Sequence[Sequence[int]], eos_id: int | None) -> np.ndarray:
    """One int64 stream of the documents, each followed by eos_id, or by nothing when eos_id is
    None: (sum(len(doc) + 1),) or (sum(len(doc)),)."""
    separator = () if eos_id is None else (np.array([eos_id], dtype=np.int64),)
    parts = [part for doc in token_docs
             for part in (np.asarray(doc, dtype=np.int64), *separator)]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def cut_windows(stream: np.ndarray, seq_len: int) -> torch.Tensor:
    """Non-overlapping windows stream[i*L : i*L + L + 1], tail dropped: (n, seq_len + 1) int64."""
    if len(stream) < seq_len + 1:
        return torch.empty(0, seq_len + 1, dtype=torch.int64)
    return torch.from_numpy(stream).unfold(0, seq_len + 1, seq_len).clone()


def _streams_and_windows(splits: dict[str, list], eos_id: int | None, seq_len: int,
                         where: str) -> tuple[dict, dict, dict]:
    """Per split: the EOS-joined stream, its windows and its counts; zero windows is an error."""
    streams, windows, stats = {}, {}, {}
    for split, docs in splits.items():
        streams[split] = join_documents(docs, eos_id)
        windows[split] = cut_windows(streams[split], seq_len)
        stats[split] = {"documents": len(docs), "sequences": len(windows[split]),
                        "tokens": len(streams[split]), "windows_sha": windows_sha(windows[split])}
        if len(windows[split]) == 0:
            raise UserInputError(
                f"{where}: the {split} split has {len(streams[split])} tokens in {len(docs)} "
                f"documents, but one window of seq_len = {seq_len} needs {seq_len + 1}; "
                "lower seq_len or raise num_documents"
                + (" or val_fraction" if split == "val" else ""))
    return streams, windows, stats


# ---- synthetic: a topic mixture of sparse Markov chains ------------------------------------


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


def _prepare_synthetic(cfg: RunConfig, fingerprint: str) -> PreparedData:
    language = synthetic_language(cfg)
    extra = extra_train_documents(cfg)
    documents = generate_synthetic_documents(language, cfg.num_documents + extra, cfg.data_seed)
    where = "synthetic data"
    train_docs, val_docs = split_documents(documents, cfg.val_fraction, where, extra)
    splits = {"train": train_docs, "val": val_docs}
    streams, windows, stats = _streams_and_windows(splits, language.eos_id, cfg.seq_len, where)
    # only the targets inside val windows count: the dropped tail is never evaluated
    n_targets = len(windows["val"]) * cfg.seq_len
    floor = true_token_nll(language, streams["val"])[1 : n_targets + 1].mean()
    return PreparedData(
        train=windows["train"], val=windows["val"], vocab_size=cfg.vocab_size,
        eos_id=language.eos_id, stats=stats, bayes_floor=float(floor), fingerprint=fingerprint,
        source=f"synthetic ({cfg.synthetic_topics} topics, vocab {cfg.vocab_size}, "
               f"seed {cfg.data_seed})",
    )


# ---- text: local files and the Hugging Face Hub ---------------------------------------------


def local_corpus_files(cfg: RunConfig) -> tuple[str, list[Path]]:
    """The `datasets` builder ("text", "json" or "parquet") and the sorted files of data_path."""
    path = Path(cfg.data_path).expanduser()
    formats = ", ".join(TEXT_FORMATS)
    if not cfg.data_path or not path.exists():
        raise UserInputError(f"data_path = {cfg.data_path!r}: {path} does not exist; give a file "
                             f"or folder of {formats} files")
    if path.is_file():
        files = [path]
    else:
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in TEXT_FORMATS
                       and p.is_file() and not any(part.startswith(".")
                                                   for part in p.relative_to(path).parts))
    builders = {TEXT_FORMATS.get(p.suffix.lower()) for p in files}
    if not files or None in builders:
        raise UserInputError(f"data_path = {cfg.data_path!r}: {path} is not a {formats} file "
                             "or a folder holding some")
    if len(builders) > 1:
        raise UserInputError(f"data_path = {cfg.data_path!r}: {path} mixes formats "
                             f"({', '.join(sorted(p.suffix for p in files))}); keep one format")
    return builders.pop(), files


def load_local_documents(cfg: RunConfig, cache_dir: Path) -> list[str]:
    """The first num_documents non-empty texts of data_path, read through `datasets`.

    .jsonl and .parquet: one document per row, from the text_field column. .txt: a folder holds
    one document per file, a single file one document per blank-line-separated paragraph;
    surrounding whitespace is stripped.
    """
    from datasets import load_dataset  # slow to import; only text sources need it

    builder, files = local_corpus_files(cfg)
    path = Path(cfg.data_path).expanduser()
    options = {}
    if builder == "text":
        options["sample_by"] = "paragraph" if path.is_file() else "document"
    where = f"data_path {path}"
    try:
        rows = load_dataset(builder, data_files=[str(f) for f in files], split="train",
                            streaming=True, cache_dir=str(cache_dir / "hf_datasets"), **options)
        field = "text" if builder == "text" else cfg.text_field
        texts = _first_texts(rows, field, documents_needed(cfg), where)
    except UserInputError:
        raise
    except Exception as e:  # the readers' errors for malformed files have no common base
        raise UserInputError(f"{where}: cannot be read as {builder} ({e})") from e
    if builder == "text":
        texts = [t.strip() for t in texts]
    if not texts:
        raise UserInputError(f"data_path = {cfg.data_path!r}: {path} contains no non-empty "
                             "documents")
    return _enough_documents(texts, cfg, f"data_path = {cfg.data_path!r}: {path}")


def load_hub_documents(cfg: RunConfig, cache_dir: Path) -> list[str]:
    """The first num_documents texts of hub_dataset (hub_config, hub_split), streamed."""
    where = (f"hub_dataset {cfg.hub_dataset!r} (hub_config {cfg.hub_config!r}, "
             f"hub_split {cfg.hub_split!r})")
    try:
        texts = _first_texts(stream_hub_rows(cfg, cache_dir), cfg.text_field,
                             documents_needed(cfg), where)
    except UserInputError:
        raise
    except Exception as e:  # network and dataset-lookup errors from several libraries
        raise UserInputError(f"{where} could not be streamed ({e}); check those keys, or "
                             f"{_OFFLINE_ADVICE}") from e
    if not texts:
        raise UserInputError(f"{where} yielded no non-empty '{cfg.text_field}' documents")
    return _enough_documents(texts, cfg, where)


def _enough_documents(texts: list[str], cfg: RunConfig, where: str) -> list[str]:
    """texts, when the source held every document the run asks for; else a UserInputError
    (a smaller split than configured would silently change what the run measures)."""
    needed = documents_needed(cfg)
    if len(texts) >= needed:
        return texts
    extra = extra_train_documents(cfg)
    why = f"num_documents = {cfg.num_documents}"
    if extra:
        why += (f" plus {extra} more train documents for train_documents_factor = "
                f"{cfg.train_documents_factor:g}")
    raise UserInputError(
        f"{where} holds {len(texts)} non-empty documents but this run needs {needed} ({why}); "
        "lower num_documents" + (" or train_documents_factor" if extra else "")
        + ", or use a larger corpus")


def stream_hub_rows(cfg: RunConfig, cache_dir: Path) -> Iterable[dict]:
    """The hub dataset's rows as a stream; fails at once when the Hub cannot be reached."""
    require_hub_reachable()
    from datasets import load_dataset

    return load_dataset(cfg.hub_dataset, cfg.hub_config or None, split=cfg.hub_split,
                        streaming=True, cache_dir=str(cache_dir / "hf_datasets"))


_OFFLINE_ADVICE = ("to work offline set data_source: local with data_path: <a .txt, .jsonl or "
                   ".parquet file or folder> and tokenizer: bpe (or a path to a tokenizer.json)")


def require_hub_reachable(timeout_s: float = HUB_PROBE_TIMEOUT_S) -> None:
    """Raise UserInputError within ~timeout_s seconds if the Hugging Face Hub cannot be reached."""
    for flag in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(flag, "").strip().upper() in ("1", "ON", "YES", "TRUE"):
            raise UserInputError(f"data_source 'hub' needs the Hugging Face Hub, but {flag} is "
                                 f"set; {_OFFLINE_ADVICE}")
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    answered = []

    def probe() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"),
                                   timeout=timeout_s).close()
        except urllib.error.HTTPError:
            pass  # any HTTP answer means the Hub is reachable
        except (OSError, ValueError):
            return
        answered.append(True)

    # a thread bounds the whole probe, DNS lookups included, which socket timeouts do not
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s + 0.5)
    if not answered:
        raise UserInputError(f"data_source 'hub': the Hugging Face Hub ({endpoint}) is "
                             f"unreachable from here; {_OFFLINE_ADVICE}")


def _first_texts(rows: Iterable[dict], field: str, n: int, where: str) -> list[str]:
    """The first n non-blank values of column `field`; a missing column names those present."""
    texts: list[str] = []
    for row in rows:
        if field not in row:
            raise UserInputError(f"{where}: text_field = {field!r} is not a column; columns "
                                 f"present: {', '.join(row)}; set text_field to one of them")
        text = row[field]
        if text is not None and not isinstance(text, str):
            raise UserInputError(f"{where}: text_field = {field!r} holds "
                                 f"{type(text).__name__} values, not text")
        if text and text.strip():
            texts.append(text)
            if len(texts) == n:
                break
    return texts


def load_tokenizer(cfg: RunConfig, train_docs: list[str], cache_dir: Path,
                   download: bool) -> Tokenizer:
    """cfg.tokenizer: `bpe` (trained on train_docs, cached), a tokenizer.json path or a hub name."""
    if cfg.tokenizer == "bpe":
        return _cached_bpe(train_docs, cfg.vocab_size, cache_dir)
    path = _tokenizer_file(cfg.tokenizer)
    if path:
        return Tokenizer.from_file(str(path))
    if cfg.tokenizer.endswith(".json") or cfg.tokenizer.startswith(("/", ".", "~")):
        raise UserInputError(f"tokenizer = {cfg.tokenizer!r}: no such file; give a path to a "
                             "tokenizer.json, bpe, or a Hugging Face Hub name")
    from huggingface_hub import hf_hub_download

    try:
        return Tokenizer.from_file(hf_hub_download(cfg.tokenizer, "tokenizer.json",
                                                   local_files_only=not download))
    except Exception as e:  # not cached, unknown repository, network: all the user's to fix
        how = "could not be downloaded" if download else "is not in the local Hugging Face cache"
        raise UserInputError(
            f"tokenizer = {cfg.tokenizer!r} {how} ({type(e).__name__}); use tokenizer: bpe, a "
            f"path to a tokenizer.json, or run `hf download {cfg.tokenizer} tokenizer.json` "
            "once while online") from e


def _tokenizer_file(name: str) -> Path | None:
    path = Path(name).expanduser()
    if path.is_dir():
        path = path / "tokenizer.json"
    return path if name != "bpe" and path.is_file() else None


def train_bpe_tokenizer(documents: list[str], vocab_size: int) -> Tokenizer:
    """A byte-level BPE with vocab_size tokens, <|endoftext|> included, trained on documents."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS_TEXT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(documents, trainer=trainer)
    return tokenizer


def _cached_bpe(train_docs: list[str], vocab_size: int, cache_dir: Path) -> Tokenizer:
    if vocab_size < 257:
        raise UserInputError(f"vocab_size = {vocab_size}: a byte-level BPE needs at least 257 "
                             f"tokens (256 bytes and {EOS_TEXT}); raise vocab_size")
    digest = hashlib.sha256(f"{PIPELINE_VERSION} {vocab_size}".encode())
    for doc in train_docs:
        raw = doc.encode()
        digest.update(f"{len(raw)}:".encode() + raw)
    path = cache_dir / "tokenizers" / f"bpe-{vocab_size}-{digest.hexdigest()[:16]}.json"
    if path.is_file():
        return Tokenizer.from_file(str(path))
    tokenizer = train_bpe_tokenizer(train_docs, vocab_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tokenizer.save(str(tmp))
    os.replace(tmp, path)
    return tokenizer


def end_of_text_id(tokenizer: Tokenizer, name: str) -> int:
    """The id of the tokenizer's end-of-text token, which joins documents."""
    for token in EOS_CANDIDATES:
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return token_id
    raise UserInputError(f"tokenizer = {name!r} has none of the end-of-text tokens "
                         f"{', '.join(EOS_CANDIDATES)}; use a tokenizer that has one, or bpe")


def document_separator(cfg: RunConfig, eos_id: int) -> int | None:
    """The token join_documents puts after each tokenized document: none on the hub, whose recipe
    (the reference's: 2,521 train and 279 val windows) keeps only the special tokens the tokenizer
    adds itself; EOS for local files, whose tokenizer (often our BPE) may mark no boundary."""
    return None if cfg.data_source == "hub" else eos_id


def tokenize_documents(tokenizer: Tokenizer, documents: list[str],
                       eos_id: int | None) -> list[list[int]]:
    """Each document's ids (special tokens added, no truncation), without a trailing eos_id
    (join_documents appends it; None keeps every id the tokenizer gives)."""
    tokenizer.no_truncation()
    tokenizer.no_padding()
    encodings = tokenizer.encode_batch(documents, add_special_tokens=True)
    # join_documents adds the EOS, so one a post-processor appended would be doubled
    return [e.ids[:-1] if e.ids and e.ids[-1] == eos_id else e.ids for e in encodings]


def _prepare_text(documents: list[str], cfg: RunConfig, cache_dir: Path, fingerprint: str,
                  download: bool) -> PreparedData:
    """The one text pipeline of `local` and `hub`: split, tokenize, join, cut."""
    if cfg.data_source == "local":
        where = f"data_path {cfg.data_path}"
        origin = f"local {Path(cfg.data_path).expanduser()}"
    else:
        where = origin = f"hub {cfg.hub_dataset}/{cfg.hub_config}:{cfg.hub_split}"
    extra = extra_train_documents(cfg)
    train_docs, val_docs = split_documents(documents, cfg.val_fraction, where, extra)
    # trained on the base train split only, so that extra train documents leave the val split's
    # tokens, and so its pairing with the other runs, unchanged
    tokenizer = load_tokenizer(cfg, train_docs[:len(train_docs) - extra], cache_dir, download)
    eos_id = end_of_text_id(tokenizer, cfg.tokenizer)
    separator = document_separator(cfg, eos_id)
    splits = {"train": tokenize_documents(tokenizer, train_docs, separator),
              "val": tokenize_documents(tokenizer, val_docs, separator)}
    _, windows, stats = _streams_and_windows(splits, separator, cfg.seq_len, where)
    vocab_size = tokenizer.get_vocab_size()
    return PreparedData(
        train=windows["train"], val=windows["val"], vocab_size=vocab_size, eos_id=eos_id,
        stats=stats, bayes_floor=None, fingerprint=fingerprint,
        source=f"{origin} ({len(documents)} documents, tokenizer {cfg.tokenizer}, "
               f"vocab {vocab_size})",
    )


# ---- the on-disk cache ----------------------------------------------------------------------


def _digest_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on lock_path, so that concurrent runs prepare the data once."""
    if fcntl is None:
        yield
        return
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _save_prepared(data: PreparedData, folder: Path) -> None:
    """Write windows.pt and meta.json into a temporary folder, then rename it into place."""
    tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}")
    tmp.mkdir()
    meta = {f.name: getattr(data, f.name) for f in fields(data) if f.name not in ("train", "val")}
    torch.save({"train": data.train, "val": data.val}, tmp / "windows.pt")
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    try:
        os.replace(tmp, folder)
    except OSError:  # another process (without a working lock) finished first: keep its copy
        shutil.rmtree(tmp, ignore_errors=True)


def _load_prepared(folder: Path) -> PreparedData:
    windows = torch.load(folder / "windows.pt", weights_only=True)
    meta = json.loads((folder / "meta.json").read_text())
    return PreparedData(train=windows["train"], val=windows["val"], **meta)
