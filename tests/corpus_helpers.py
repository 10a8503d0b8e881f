"""What the data tests share: configs of the smoke preset, a local corpus's config, and the
words its documents are made of."""

from moe_core.config.run_config import build_config

WORDS = ("alpha beta gamma delta river stone cloud ember forest lantern quiet rapid silver "
         "tiger violet window yellow zephyr amber basil cedar dune echo fable").split()


def smoke(**overrides):
    return build_config("baseline", "smoke", overrides=overrides)


def local(path, **overrides):
    values = {"data_source": "local", "data_path": str(path), "vocab_size": 300, "seq_len": 16,
              "num_documents": 40}
    return smoke(**{**values, **overrides})
