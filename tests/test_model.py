"""The MoE transformer matches the reference architecture and its two dispatch paths agree."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from moe_core.config import build_config
from moe_core.model import Experts, MoEModel, _cpu_experts, _keep_mask, apply_rope, rope_tables
from moe_core.train import total_loss


def small_cfg(**changes):
    return dataclasses.replace(build_config("baseline", "smoke"), **changes)


def test_paper_model_has_the_reference_parameter_counts():
    cfg = build_config("baseline", "paper")
    counts = MoEModel(cfg).parameter_counts()
    d, f, v, layers = 384, 1536, 49152, 6
    per_layer = 4 * d * d + 8 * 2 * d * f + 8 * d + 2 * d  # attention, experts, router, norms
    expected_total = v * d + layers * per_layer + d  # tied embedding, final norm
    assert counts["total"] == expected_total
    # ORIGINAL.md's 79.07M sums its rounded components; the exact count is 79.060M
    assert round(counts["total"] / 1e6, 2) == 79.06
    assert round(counts["non_expert"] / 1e6, 1) == 22.4
    assert round(counts["active_per_token"] / 1e6, 1) == 36.6
    assert counts["active_per_token"] == counts["non_expert"] + layers * 2 * 2 * d * f


def test_lm_head_is_tied_to_the_token_embedding():
    model = MoEModel(small_cfg())
    assert model.lm_head.weight is model.embed.weight


@pytest.mark.parametrize("cpu_kernel", [True, False], ids=["cpu-kernel", "grouped_mm"])
def test_fast_and_reference_dispatch_agree_in_outputs_and_gradients(cpu_kernel, monkeypatch):
    monkeypatch.setattr(Experts, "cpu_kernel", cpu_kernel)  # False: the GPU's grouped_mm path
    cfg = small_cfg(dropout=0.0, num_experts=4, top_k=2, n_layers=2)
    torch.manual_seed(0)
    fast = MoEModel(cfg)
    ref = MoEModel(cfg)
    ref.load_state_dict(fast.state_dict())
    ref.set_reference_dispatch(True)
    tokens = torch.randint(0, cfg.vocab_size, (4, 16))
    outputs = []
    for model in (fast, ref):
        torch.manual_seed(1)  # same router noise in both
        logits, balance, z = model(tokens)
        loss = F.cross_entropy(logits.flatten(0, 1), tokens.flatten()) + 0.01 * balance + z
        loss.backward()
        outputs.append((logits, {n: p.grad for n, p in model.named_parameters()}))
    (l_fast, g_fast), (l_ref, g_ref) = outputs
    torch.testing.assert_close(l_fast, l_ref, rtol=1e-5, atol=1e-6)
    for name in g_fast:
        torch.testing.assert_close(g_fast[name], g_ref[name], rtol=1e-4, atol=1e-6, msg=name)
    assert g_fast["blocks.0.moe.experts.w_in.0"].abs().sum() > 0


def test_cpu_expert_kernel_gradients_with_dropout_and_an_empty_expert_pass_gradcheck():
    torch.manual_seed(0)
    d, f = 5, 7
    counts = torch.tensor([3, 0, 4, 2])  # expert 1 gets no tokens
    x = torch.randn(int(counts.sum()), d, dtype=torch.float64, requires_grad=True)
    w_in = [torch.randn(f, d, dtype=torch.float64, requires_grad=True) for _ in range(4)]
    w_out = [torch.randn(d, f, dtype=torch.float64, requires_grad=True) for _ in range(4)]

    def experts(x, *weights):
        torch.manual_seed(3)  # the same dropout mask at every evaluation
        return _cpu_experts(x, counts, 0.3, list(weights[:4]), list(weights[4:]))

    assert torch.autograd.gradcheck(experts, (x, *w_in, *w_out))
    # without dropout it is exactly each expert's MLP on its rows
    y = _cpu_experts(x, counts, 0.0, w_in, w_out)
    lo = 0
    for e, n in enumerate(counts.tolist()):
        expected = F.linear(F.silu(F.linear(x[lo:lo + n], w_in[e])), w_out[e])
        torch.testing.assert_close(y[lo:lo + n], expected)
        lo += n


def test_cpu_kernel_dropout_keeps_1_minus_p_of_the_units_and_scales_them_up():
    torch.manual_seed(0)
    keep, scale = _keep_mask((400, 1000), 0.1)
    assert set(keep.unique().tolist()) == {0.0, 1.0}
    assert abs(keep.mean().item() - 0.9) < 0.003  # 400k draws: SE 0.0005
    assert scale == pytest.approx(1 / 0.9, rel=1e-4)
    # the kept units of a row are independent of its neighbours' (no 4-word striding)
    pairs = (keep[:, 0::4] * keep[:, 1::4]).mean().item()
    assert abs(pairs - 0.81) < 0.005


def test_load_balancing_weight_changes_router_gradient_and_is_exactly_zero_at_zero():
    torch.manual_seed(0)
    cfg = small_cfg(dropout=0.0, router_noise_std=0.0)
    model = MoEModel(cfg)
    tokens = torch.randint(0, cfg.vocab_size, (4, 16))
    grads, auxes = {}, {}
    for weight in (0.0, 0.01):
        model.zero_grad()
        logits, balance, z = model(tokens)
        ce = F.cross_entropy(logits.flatten(0, 1), tokens.flatten())
        loss, aux = total_loss(dataclasses.replace(cfg, load_balancing_weight=weight), ce,
                               balance, z)
        loss.backward()
        grads[weight] = model.blocks[0].moe.router.gate.weight.grad.clone()
        auxes[weight] = aux
    assert auxes[0.0].item() == 0.0
    assert auxes[0.01].item() > 0.0
    assert not torch.allclose(grads[0.0], grads[0.01])


def test_balance_term_alone_gives_router_gradient_only_when_weighted():
    torch.manual_seed(0)
    cfg = small_cfg(dropout=0.0, router_noise_std=0.0)
    model = MoEModel(cfg)
    tokens = torch.randint(0, cfg.vocab_size, (2, 8))
    _, balance, z = model(tokens)
    zero = torch.zeros(())
    _, aux = total_loss(dataclasses.replace(cfg, load_balancing_weight=0.0), zero, balance, z)
    assert not aux.requires_grad  # the term is not in the graph at all


def test_model_is_causal():
    torch.manual_seed(0)
    model = MoEModel(small_cfg(dropout=0.0)).eval()
    tokens = torch.randint(0, 100, (1, 16))
    changed = tokens.clone()
    changed[0, 10:] = (changed[0, 10:] + 1) % 100
    a, _, _ = model(tokens)
    b, _, _ = model(changed)
    torch.testing.assert_close(a[0, :10], b[0, :10])
    assert not torch.allclose(a[0, 10:], b[0, 10:])


def test_rope_scores_depend_only_on_relative_position():
    head_dim = 8
    cos, sin = rope_tables(32, head_dim, 10000.0)
    q, k = torch.randn(head_dim), torch.randn(head_dim)

    def score(i, j):
        qi = apply_rope(q.expand(1, 1, 32, head_dim), cos, sin)[0, 0, i]
        kj = apply_rope(k.expand(1, 1, 32, head_dim), cos, sin)[0, 0, j]
        return qi @ kj

    torch.testing.assert_close(score(5, 2), score(20, 17))
    assert not torch.allclose(score(5, 2), score(5, 4))


def test_routing_statistics_fall_out_of_the_training_forward_pass():
    torch.manual_seed(0)
    cfg = small_cfg(num_experts=4, top_k=2)
    model = MoEModel(cfg).train()
    tokens = torch.randint(0, cfg.vocab_size, (3, 10))
    model(tokens)
    stats = model.moe_layers[0].read_stats()
    n_tokens = 30
    assert stats["tokens_per_expert"].sum().item() == n_tokens * cfg.top_k
    assert stats["mean_router_prob"].sum().item() == pytest.approx(1.0, abs=1e-5)
    # co-selection diagonal is how often each expert is chosen, per token
    torch.testing.assert_close(stats["coselection"].diagonal() * n_tokens,
                               stats["tokens_per_expert"])
    assert 0 < stats["router_entropy"].item() <= torch.log(torch.tensor(4.0)).item() + 1e-6
    share = stats["tokens_per_expert"] / (n_tokens * cfg.top_k)
    switch_loss = 4 * (share * stats["mean_router_prob"]).sum()
    assert stats["balance_loss"].item() == pytest.approx(switch_loss.item(), rel=1e-5)
    # read_stats resets the accumulators
    assert model.moe_layers[0].read_stats()["tokens_per_expert"].sum().item() == 0


def test_aux_free_bias_moves_toward_the_underloaded_experts():
    torch.manual_seed(0)
    cfg = small_cfg(balance_method="aux_free", num_experts=4)
    model = MoEModel(cfg).train()
    moe = model.moe_layers[0]
    moe.load_since_update.copy_(torch.tensor([10.0, 0.0, 5.0, 5.0]))
    moe.update_selection_bias(0.1)
    bias = moe.router.selection_bias
    assert bias[1] > 0 > bias[0]  # idle expert favoured, busiest one penalised
    assert moe.load_since_update.sum() == 0
