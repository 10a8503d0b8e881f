"""The trainer's cross-entropy and evaluation."""

import pytest
import torch

from moe_core.config.run_config import build_config
from moe_core.data.splits import prepare_data


def smoke(experiment="baseline", **overrides):
    return build_config(experiment, "smoke", overrides)


def test_eval_accuracy_and_losses_do_not_depend_on_how_windows_are_batched(monkeypatch):
    from moe_core.model.transformer import MoEModel
    from moe_core.training import objective
    from moe_core.training.objective import evaluate

    cfg = smoke()
    data = prepare_data(cfg)
    torch.manual_seed(0)
    model = MoEModel(cfg, vocab_size=data.vocab_size)
    together = evaluate(model, data.val, len(data.val), torch.device("cpu"), None)
    monkeypatch.setattr(objective, "EVAL_BATCH_TOKENS", 1)
    one_at_a_time = evaluate(model, data.val, 1, torch.device("cpu"), None)
    torch.testing.assert_close(together["per_sequence"], one_at_a_time["per_sequence"])
    model.eval()
    with torch.no_grad():
        logits, _, _ = model(data.val[:, :-1])
    argmax_accuracy = (logits.argmax(-1) == data.val[:, 1:]).double().mean().item()
    assert together["accuracy"] == pytest.approx(argmax_accuracy)


def test_cross_entropy_matches_torchs_in_value_and_gradient():
    from moe_core.training.objective import cross_entropy

    gen = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(300, 50, generator=gen, dtype=torch.float64)
    targets = torch.randint(0, 50, (300,), generator=gen)
    theirs, ours = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    expected = torch.nn.functional.cross_entropy(theirs, targets)
    expected.backward()
    loss = cross_entropy(ours * 1.0, targets)  # a non-leaf: its backward overwrites it
    loss.backward()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(ours.grad, theirs.grad)
