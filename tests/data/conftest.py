"""What the data tests share: one set of documents, as a folder of .txt, a .txt of
paragraphs, a .jsonl and a .parquet."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from corpus_helpers import WORDS


@pytest.fixture(scope="session")
def documents():
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(WORDS, size=rng.integers(20, 40))) + f" {i}." for i in range(48)]


@pytest.fixture(scope="session")
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
