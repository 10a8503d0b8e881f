"""Text sources and tokenizers: local files and the Hugging Face Hub read through
`datasets`, how many documents a run reads, and the tokenizer (a byte-level BPE trained on
the train split, a tokenizer.json, or a hub name).
"""

from __future__ import annotations

import hashlib
import os
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from moe_core.config.run_config import RunConfig
from moe_core.errors import UserInputError

BPE_VERSION = "bpe-v1"  # bump when a change here changes the trained tokenizer
EOS_TEXT = "<|endoftext|>"
EOS_CANDIDATES = (EOS_TEXT, "</s>", "<|end_of_text|>", "<eos>")
TEXT_FORMATS = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
HUB_PROBE_TIMEOUT_S = 3.0


def extra_train_documents(cfg: RunConfig) -> int:
    """Documents beyond num_documents that train_documents_factor adds to the train split
    (negative: how many of its documents a factor below 1 leaves out)."""
    n_train = cfg.num_documents - round(cfg.num_documents * cfg.val_fraction)
    return round(n_train * (cfg.train_documents_factor - 1.0))


def val_sample_documents(cfg: RunConfig) -> int:
    """Documents after every train document that hold val sample cfg.val_sample: k blocks of
    as many documents as the val split has (0 for the split's own val documents)."""
    return cfg.val_sample * round(cfg.num_documents * cfg.val_fraction)


def documents_needed(cfg: RunConfig) -> int:
    """How many documents of the source a run reads: num_documents plus the extra train ones
    plus those of its val sample's blocks."""
    return cfg.num_documents + max(extra_train_documents(cfg), 0) + val_sample_documents(cfg)


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
    if extra > 0:
        why += (f" plus {extra} more train documents for train_documents_factor = "
                f"{cfg.train_documents_factor:g}")
    raise UserInputError(
        f"{where} holds {len(texts)} non-empty documents but this run needs {needed} ({why}); "
        "lower num_documents" + (" or train_documents_factor" if extra > 0 else "")
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
    digest = hashlib.sha256(f"{BPE_VERSION} {vocab_size}".encode())
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
