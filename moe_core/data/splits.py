"""Training data: documents -> split by document -> tokens -> one stream per split -> windows.

Every source goes through the same steps, as in the reference recipe:

1. documents: token-id arrays (`synthetic`) or strings (`local` files, the `hub`);
2. the first (1 - val_fraction) of the first num_documents train and the rest validate, split
   before tokenization so that no document is in both; train_documents_factor > 1 adds the
   documents that follow to the train split only, and a factor below 1 keeps only the first
   of the train documents, so the val split stays the same documents and runs with more or
   less train data are compared with the others on the same val sequences;
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
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from moe_core.config.run_config import RunConfig, stable_hash
from moe_core.data.corpus import (
    _tokenizer_file,
    document_separator,
    documents_needed,
    end_of_text_id,
    extra_train_documents,
    load_hub_documents,
    load_local_documents,
    load_tokenizer,
    local_corpus_files,
    tokenize_documents,
    val_sample_documents,
)
from moe_core.data.synthetic import (
    generate_synthetic_documents,
    synthetic_language,
    true_token_nll,
)
from moe_core.errors import UserInputError

try:  # lets concurrent processes wait for one preparer; absent on Windows
    import fcntl
except ImportError:
    fcntl = None

PIPELINE_VERSION = "data-v2"  # bump when a change in this file changes the prepared windows

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
                    extra_train: int = 0, val_sample: int = 0, val_documents: int = 0
                    ) -> tuple[list[T], list[T], list[T]]:
    """(train, val, base train) documents. The base documents come first: their first
    (1 - val_fraction) train and the rest validate. Then extra_train documents added to the
    train split (a negative extra_train drops that many from the end of the train split
    instead; the val split is the same documents either way). Then, for val_sample k >= 1,
    the last val_documents: k blocks of as many documents as the val split has, of which
    the k-th validates instead, the train documents unchanged. The base train documents are
    the train split's own (what a tokenizer is trained on, whatever extra_train adds)."""
    base = len(documents) - max(extra_train, 0) - val_documents
    n_val = round(base * val_fraction)
    n_train = base - n_val
    if n_train <= 0 or n_val <= 0:
        raise UserInputError(
            f"{where}: {base} documents with val_fraction = {val_fraction} leave "
            f"{n_train} for training and {n_val} for validation; each split needs at least one: "
            "raise num_documents (or use a larger corpus) or change val_fraction")
    kept = n_train + min(extra_train, 0)
    if kept <= 0:
        raise UserInputError(
            f"{where}: train_documents_factor keeps {kept} of the {n_train} train documents; "
            "raise train_documents_factor or num_documents")
    extra_end = base + max(extra_train, 0)
    train = list(documents[:kept]) + list(documents[base:extra_end])
    if val_sample <= 0:
        return train, list(documents[n_train:base]), list(documents[:n_train])
    if val_documents != val_sample * n_val:
        raise UserInputError(
            f"{where}: val_sample = {val_sample} needs {val_sample * n_val} documents after "
            f"the {extra_end} that the train and val splits use, but the source has "
            f"{len(documents) - extra_end} there: use a larger corpus or a smaller val_sample")
    start = extra_end + (val_sample - 1) * n_val
    return train, list(documents[start:start + n_val]), list(documents[:n_train])


def check_val_sample_source(cfg: RunConfig, available: int, where: str) -> None:
    """A val sample beyond the split's own needs every document before it: a shorter source
    would shrink the base documents, and so change the train split it must keep."""
    if cfg.val_sample and available < documents_needed(cfg):
        raise UserInputError(
            f"{where}: val_sample = {cfg.val_sample} reads {documents_needed(cfg)} documents "
            f"(num_documents, the extra train ones, {cfg.val_sample} val block(s)) but the "
            f"source has {available}: use a larger corpus or a smaller val_sample")


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


# ---- synthetic ------------------------------------------------------------------------------


def _prepare_synthetic(cfg: RunConfig, fingerprint: str) -> PreparedData:
    language = synthetic_language(cfg)
    extra = extra_train_documents(cfg)
    documents = generate_synthetic_documents(language, documents_needed(cfg), cfg.data_seed)
    where = "synthetic data"
    train_docs, val_docs, _ = split_documents(documents, cfg.val_fraction, where, extra,
                                              cfg.val_sample, val_sample_documents(cfg))
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


# ---- text ------------------------------------------------------------------------------------


def _prepare_text(documents: list[str], cfg: RunConfig, cache_dir: Path, fingerprint: str,
                  download: bool) -> PreparedData:
    """The one text pipeline of `local` and `hub`: split, tokenize, join, cut."""
    if cfg.data_source == "local":
        where = f"data_path {cfg.data_path}"
        origin = f"local {Path(cfg.data_path).expanduser()}"
    else:
        where = origin = f"hub {cfg.hub_dataset}/{cfg.hub_config}:{cfg.hub_split}"
    extra = extra_train_documents(cfg)
    # the tokenizer is trained on the base train split only (whatever train_documents_factor
    # adds or leaves out, whichever val sample scores), so that the val split's tokens, and
    # so its pairing with the other runs, stay the same
    check_val_sample_source(cfg, len(documents), where)
    train_docs, val_docs, base_train = split_documents(
        documents, cfg.val_fraction, where, extra, cfg.val_sample, val_sample_documents(cfg))
    tokenizer = load_tokenizer(cfg, base_train, cache_dir, download)
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
