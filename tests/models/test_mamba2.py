"""The Mamba-2 mixer: chunked SSD equals the sequential reference, decoding equals the full forward,
and the whole `ssm` stack equals `transformers`' independent Mamba-2 with the same weights."""

from __future__ import annotations

import pytest
import torch

from looplab.errors import LooplabError
from looplab.models import create_model
from looplab.models.mamba2 import Mamba2, Mamba2Options, SSMCache, mamba_kernels, ssd_chunked, ssd_sequential

V = 260


def _inputs(b=2, t=37, h=4, p=8, g=2, n=6, dtype=torch.float64, seed=0):
    """Random scan inputs with strong and weak decays (dt A from about -0.002 to -40 per step)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, h, p, generator=gen, dtype=dtype)
    dt = torch.nn.functional.softplus(torch.randn(b, t, h, generator=gen, dtype=dtype) - 1)
    A = -torch.exp(torch.rand(h, generator=gen, dtype=dtype) * 4 - 1)
    B = torch.randn(b, t, g, n, generator=gen, dtype=dtype)
    C = torch.randn(b, t, g, n, generator=gen, dtype=dtype)
    h0 = torch.randn(b, h, p, n, generator=gen, dtype=dtype)
    return x, dt, A, B, C, h0


@pytest.mark.parametrize("t", [1, 5, 37, 64, 100])
@pytest.mark.parametrize("chunk", [1, 4, 16, 64])
def test_chunked_equals_sequential(t, chunk):
    x, dt, A, B, C, h0 = _inputs(t=t)
    for init in (None, h0):
        y_ref, h_ref = ssd_sequential(x, dt, A, B, C, init)
        y, h = ssd_chunked(x, dt, A, B, C, chunk, init)
        torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(h, h_ref, rtol=1e-10, atol=1e-10)


def test_chunked_equals_sequential_float32_long_sequence():
    """Float32 over many chunks: the state passed across chunks keeps its precision."""
    x, dt, A, B, C, h0 = _inputs(b=1, t=700, h=4, p=4, g=1, n=4, dtype=torch.float32, seed=1)
    y_ref, h_ref = ssd_sequential(x, dt, A, B, C, h0)
    y, h = ssd_chunked(x, dt, A, B, C, 32, h0)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(h, h_ref, rtol=1e-4, atol=1e-4)


def scan_grads(scan, inputs) -> list[torch.Tensor]:
    """Gradients of y^2 + h summed, with respect to every input of a scan."""
    leaves = [v.clone().requires_grad_(True) for v in inputs]
    y, h = scan(*leaves)
    (y.square().sum() + h.sum()).backward()
    return [v.grad for v in leaves]


def test_chunked_gradients_equal_sequential():
    inputs = _inputs(t=23)
    ref = scan_grads(ssd_sequential, inputs)
    got = scan_grads(lambda x, dt, A, B, C, h0: ssd_chunked(x, dt, A, B, C, 8, h0), inputs)
    for g, r in zip(got, ref):
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g, r, rtol=1e-8, atol=1e-8)


def _mixer(impl="chunked", chunk=8, groups=1):
    torch.manual_seed(0)
    m = Mamba2(24, Mamba2Options(head_dim=8, d_state=8, n_groups=groups, chunk=chunk, ssm_impl=impl))
    m.init_weights(out_std=0.02)
    return m.eval()


@pytest.mark.parametrize("groups", [1, 3])
def test_mixer_paths_share_weights_and_agree(groups):
    chunked, sequential = _mixer("chunked", groups=groups), _mixer("sequential", groups=groups)
    sequential.load_state_dict(chunked.state_dict())
    u = torch.randn(2, 29, 24)
    torch.testing.assert_close(chunked(u), sequential(u), rtol=1e-5, atol=1e-6)
    assert chunked.path(u.device) == "chunked" and sequential.path(u.device) == "sequential"


def test_mixer_decoding_equals_full_forward():
    """Prefill, single steps, then a multi-token chunk: the cached pieces equal one full pass."""
    m = _mixer()
    u = torch.randn(3, 30, 24)
    cache = SSMCache.empty(1, 3, m, u.device, u.dtype)
    with torch.no_grad():
        pieces = [m(u[:, :11], cache)]
        pieces += [m(u[:, t : t + 1], cache) for t in range(11, 20)]
        pieces.append(m(u[:, 20:], cache))
        torch.testing.assert_close(torch.cat(pieces, 1), m(u), rtol=1e-5, atol=1e-6)


def test_auto_takes_chunked_on_cpu_and_options_are_checked():
    assert _mixer("auto").path(torch.device("cpu")) == "chunked"
    with pytest.raises(LooplabError, match="ssm_impl must be a str \\(allowed: auto, chunked, sequential\\)"):
        Mamba2Options(ssm_impl="fast")
    with pytest.raises(LooplabError, match="head_dim 20 must divide"):
        Mamba2(24, Mamba2Options(head_dim=20))


def _transformers_twin(model):
    """transformers' Mamba2ForCausalLM holding `model`'s weights (an `ssm` built with mlp=False)."""
    transformers = pytest.importorskip("transformers")
    mixer = model.mixers[0]
    o = mixer.opts
    cfg = transformers.Mamba2Config(
        vocab_size=V, hidden_size=model.cfg.d_model, num_hidden_layers=model.cfg.n_layer, num_heads=mixer.n_head,
        head_dim=o.head_dim, state_size=o.d_state, n_groups=o.n_groups, expand=o.expand, conv_kernel=o.d_conv,
        chunk_size=o.chunk, layer_norm_epsilon=model.cfg.norm_eps, tie_word_embeddings=True, use_cache=False)
    twin = transformers.Mamba2ForCausalLM(cfg).eval()
    ours = {"backbone.embeddings.weight": model.embed.weight, "backbone.norm_f.weight": model.norm.weight,
            "lm_head.weight": model.head.weight}
    theirs_to_ours = {"conv1d.weight": "conv.weight", "conv1d.bias": "conv.bias"}
    for i, layer in enumerate(model.layers):
        ours[f"backbone.layers.{i}.norm.weight"] = layer.norm1.weight
        for name in ("in_proj.weight", "conv1d.weight", "conv1d.bias", "dt_bias", "A_log", "D", "norm.weight",
                     "out_proj.weight"):
            ours[f"backbone.layers.{i}.mixer.{name}"] = layer.mixer.get_parameter(theirs_to_ours.get(name, name))
    twin.load_state_dict({k: v.detach().clone() for k, v in ours.items()}, strict=True)
    return twin


@pytest.mark.parametrize("groups", [1, 2])
def test_matches_transformers_mamba2(groups):
    """Same weights, fp32: logits within 1e-4 relative error of transformers' pure PyTorch Mamba-2
    (measured about 2e-7). 50 tokens with chunk 16: several chunks and a partial one."""
    if mamba_kernels() is not None:
        pytest.skip("with mamba_ssm installed, transformers routes Mamba-2 to its CUDA-only kernels, "
                    "not the pure PyTorch path this test compares against")
    torch.manual_seed(0)
    model = create_model("ssm", "tiny", V, mlp=False, chunk=16, n_groups=groups, d_state=16,
                         head_dim=16).eval()
    twin = _transformers_twin(model)
    idx = torch.randint(0, V, (2, 50))
    with torch.no_grad():
        ours, theirs = model(idx).logits, twin(idx).logits
    rel = float((ours - theirs).norm() / theirs.norm())
    print(f"relative error against transformers Mamba2ForCausalLM (n_groups={groups}): {rel:.2e}")
    assert rel < 1e-4


@pytest.mark.gpu
def test_kernel_path_matches_chunked_on_gpu():
    if mamba_kernels() is None:
        pytest.skip("mamba_ssm is not installed")
    kernel, chunked = _mixer("auto", chunk=16).cuda(), _mixer("chunked", chunk=16).cuda()
    chunked.load_state_dict(kernel.state_dict())
    u = torch.randn(2, 100, 24, device="cuda")
    assert kernel.path(u.device) == "kernel"
    torch.testing.assert_close(kernel(u), chunked(u), rtol=1e-3, atol=1e-4)
