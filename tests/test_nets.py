"""Noise-conditioned backbones: shapes, conditioning, errors, gradients, autocast, YAML wiring."""

import pytest
import torch
from jsonargparse import ArgumentParser

from pdegen.diffusion import EDMPreconditioner, Heun, karras_sigmas
from pdegen.nets import NoiseConditionedFNO, NoiseConditionedNet, NoiseEmbedding, UNet


def small_fno(channels: int = 2) -> NoiseConditionedFNO:
    return NoiseConditionedFNO(channels, width=16, modes=[8, 8], n_layers=2, emb_dim=32)


def small_unet(channels: int = 2, **kwargs) -> UNet:
    net = UNet(channels, base_channels=16, channel_mults=[1, 2], emb_dim=32, **kwargs)
    torch.nn.init.normal_(net.conv_out.weight, std=0.1)  # undo the zero init so F depends on x, σ
    return net


BUILDERS = {"fno": small_fno, "unet": small_unet}


@pytest.fixture(params=sorted(BUILDERS))
def net(request) -> NoiseConditionedNet:
    torch.manual_seed(0)
    return BUILDERS[request.param]()


def test_default_nets_build_with_sane_sizes():
    for net in (NoiseConditionedFNO(2), UNet(2)):
        assert net.channels == 2
        assert 1e5 < sum(p.numel() for p in net.parameters()) < 1e8
        assert net(torch.randn(2, 2, 32, 32), torch.zeros(2)).shape == (2, 2, 32, 32)
    assert not UNet(2)(torch.randn(1, 2, 32, 32), torch.zeros(1)).any()  # zero-initialised output


@pytest.mark.parametrize("size", [32, 64])
def test_shape_is_preserved(net, size):
    x = torch.randn(3, 2, size, size)
    assert net(x, torch.randn(3)).shape == x.shape


def test_fno_takes_other_resolutions_and_rejects_too_many_modes():
    net = small_fno(1)
    for size in (48, 128):
        assert net(torch.randn(1, 1, size, size), torch.zeros(1)).shape == (1, 1, size, size)
    with pytest.raises(ValueError, match="modes .* exceed the input grid"):
        net(torch.randn(1, 1, 6, 32), torch.zeros(1))


def test_output_depends_on_noise_level_per_sample(net):
    x = torch.randn(1, 2, 32, 32).expand(2, -1, -1, -1)
    c_noise = torch.tensor([-1.0, 0.5])
    out = net(x, c_noise)
    assert (out[0] - out[1]).abs().max() > 1e-3
    # each sample is conditioned on its own σ: the batch equals the samples run one by one
    for i in range(2):
        alone = net(x[i : i + 1], c_noise[i : i + 1])
        torch.testing.assert_close(out[i : i + 1], alone, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(net(x, torch.tensor(0.5)), net(x, torch.full((2,), 0.5)))


def test_wrong_channel_count_is_explained(net):
    with pytest.raises(ValueError, match="wrong channel count.*built for 2 channels.*set `channels`"):
        net(torch.randn(1, 3, 32, 32), torch.zeros(1))


def test_unet_grid_must_be_divisible():
    net = UNet(1, base_channels=8, channel_mults=[1, 2, 2])
    with pytest.raises(ValueError, match="not divisible by 4"):
        net(torch.randn(1, 1, 32, 30), torch.zeros(1))
    assert net(torch.randn(1, 1, 36, 20), torch.zeros(1)).shape == (1, 1, 36, 20)


@pytest.mark.parametrize("builder", [small_fno, lambda: small_unet(attention=True, num_res_blocks=2)])
def test_gradient_reaches_every_parameter(builder):
    torch.manual_seed(0)
    net = builder()
    out = net(torch.randn(2, 2, 32, 32), torch.tensor([-0.8, 0.3]))
    (out * torch.randn_like(out)).sum().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reaches {missing}"


def test_autocast_bf16(net):
    """Runs under CPU bf16 autocast; the FNO keeps its spectral blocks in float32 (no bf16 FFT)."""
    x, c_noise = torch.randn(2, 2, 32, 32), torch.tensor([-0.5, 0.5])
    reference = net(x, c_noise)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x, c_noise)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert (out.float() - reference).norm() < 0.1 * reference.norm()


def test_noise_embedding():
    emb = NoiseEmbedding(16)
    assert emb(torch.linspace(-2, 2, 5)).shape == (5, 16)
    with pytest.raises(ValueError, match="even"):
        NoiseEmbedding(15)


def test_preconditioned_net_samples_in_float64(net):
    denoiser = EDMPreconditioner(net, sigma_data=0.5)
    out = Heun()(denoiser, 80.0 * torch.randn(2, 2, 32, 32), karras_sigmas(3))
    assert out.dtype == torch.float64 and out.shape == (2, 2, 32, 32) and torch.isfinite(out).all()


@pytest.mark.parametrize("class_path", ["pdegen.nets.UNet", "pdegen.nets.NoiseConditionedFNO"])
def test_nets_are_configurable_by_class_path(class_path):
    parser = ArgumentParser()
    parser.add_argument("--net", type=NoiseConditionedNet)
    init_args = {"channels": 3, "emb_dim": 32}
    config = parser.parse_object({"net": {"class_path": class_path, "init_args": init_args}})
    net = parser.instantiate(config).net
    assert net.channels == 3 and net(torch.randn(1, 3, 32, 32), torch.zeros(1)).shape == (1, 3, 32, 32)


def test_time_as_channels_round_trips_trajectories():
    from pdegen.nets import TimeAsChannels

    inner = UNet(channels=2 * 3, base_channels=8, channel_mults=[1, 2])
    for p in inner.parameters():  # the zero-initialised output layer would hide the layout
        torch.nn.init.normal_(p, std=0.05)
    net = TimeAsChannels(inner, channels=2, num_times=3)
    x = torch.randn(4, 2, 3, 8, 8)
    out = net(x, torch.zeros(4))
    assert out.shape == x.shape and net.channels == 2
    # the same as running the inner net on the stacked layout
    assert torch.equal(out, inner(x.reshape(4, 6, 8, 8), torch.zeros(4)).reshape(4, 2, 3, 8, 8))
    with pytest.raises(ValueError, match="wrong channel count"):
        TimeAsChannels(inner, channels=2, num_times=4)
    with pytest.raises(ValueError, match="expected samples"):
        net(torch.randn(4, 2, 5, 8, 8), torch.zeros(4))


# --- UNet generalisation: 1-D fields, circular padding, conditioning channels ------------------------------------


def tiny_unet(channels: int = 2, randomise_out: bool = True, **kwargs) -> UNet:
    kwargs = {"base_channels": 8, "channel_mults": [1, 2, 2], "emb_dim": 16, **kwargs}
    net = UNet(channels, **kwargs)
    if randomise_out:  # undo the zero init so F depends on its input
        torch.nn.init.normal_(net.conv_out.weight, std=0.1)
    return net


def test_unet_1d_shape_and_zero_init():
    torch.manual_seed(0)
    net = tiny_unet(2, randomise_out=False, dims=1, padding_mode="circular")
    assert all(isinstance(m, torch.nn.Conv1d) for m in (net.conv_in, net.conv_out, net.down[1], net.up[-1].conv1))
    x = torch.randn(3, 2, 16)
    out = net(x, torch.randn(3))
    assert out.shape == (3, 2, 16) and not out.any()  # conv_out is zero-initialised
    torch.nn.init.normal_(net.conv_out.weight, std=0.1)
    assert net(x, torch.randn(3)).abs().max() > 1e-3
    with pytest.raises(ValueError, match="not divisible by 4"):
        net(torch.randn(1, 2, 30), torch.zeros(1))
    with pytest.raises(ValueError, match=r"expected input of shape \(B, C, R\) \(1-D fields\)"):
        net(torch.randn(1, 2, 16, 16), torch.zeros(1))


@pytest.mark.parametrize("attention", [False, True])
@pytest.mark.parametrize("dims", [1, 2])
def test_circular_unet_is_exactly_shift_equivariant(dims, attention):
    """With circular padding, rolling the input by a multiple of 2^(levels - 1) = 4 rolls the output; with zero
    padding the boundary breaks it (so the test can fail)."""
    grid = (16,) if dims == 1 else (8, 16)
    axes = tuple(range(-dims, 0))
    shifts = (4,) if dims == 1 else (4, 8)
    x, c_noise = torch.randn(2, 2, *grid), torch.tensor([-0.7, 0.4])
    for padding_mode in ("circular", "zeros"):
        torch.manual_seed(0)
        net = tiny_unet(2, dims=dims, padding_mode=padding_mode, attention=attention)
        with torch.no_grad():
            diff = (net(x.roll(shifts, axes), c_noise) - net(x, c_noise).roll(shifts, axes)).abs().max()
        if padding_mode == "circular":
            assert diff < 1e-5
        else:
            assert diff > 1e-3


@pytest.mark.parametrize("dims", [1, 2])
def test_unet_cond_channels(dims):
    torch.manual_seed(0)
    net = tiny_unet(2, dims=dims, channel_mults=[1, 2], cond_channels=3, padding_mode="circular")
    assert net.channels == 2 and net.cond_channels == 3 and net.conv_in.in_channels == 5
    grid = (8,) * dims
    field, cond = torch.randn(2, 2, *grid), torch.randn(2, 3, *grid)
    out = net(torch.cat([field, cond], dim=1), torch.zeros(2))
    assert out.shape == field.shape
    other = net(torch.cat([field, cond + torch.randn_like(cond)], dim=1), torch.zeros(2))
    assert (out - other).abs().max() > 1e-3  # the output reads the condition
    with pytest.raises(ValueError, match=r"built for 5 input channels \(channels=2 .*cond_channels=3.*`cond_channels`"):
        net(field, torch.zeros(2))
    with pytest.raises(ValueError, match="cond_channels must be >= 0"):
        UNet(2, cond_channels=-1)


def test_unet_rejects_bad_dims_and_padding_mode():
    with pytest.raises(ValueError, match=r"dims must be one of \[1, 2\]"):
        UNet(1, dims=3)
    with pytest.raises(ValueError, match=r"padding_mode must be one of \('zeros', 'circular'\), got 'reflect'"):
        UNet(1, padding_mode="reflect")


def test_unet_1d_circular_conditional_gradients_and_yaml():
    parser = ArgumentParser()
    parser.add_argument("--net", type=NoiseConditionedNet)
    init_args = {"channels": 2, "base_channels": 8, "channel_mults": [1, 2], "emb_dim": 16, "attention": True,
                 "dims": 1, "padding_mode": "circular", "cond_channels": 1}
    config = parser.parse_object({"net": {"class_path": "pdegen.nets.UNet", "init_args": init_args}})
    net = parser.instantiate(config).net
    assert isinstance(net, UNet) and net.conv_in.padding_mode == "circular" and net.down[1].stride == (2,)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    out = net(torch.randn(2, 3, 16), torch.tensor([-0.8, 0.3]))
    assert out.shape == (2, 2, 16)
    (out * torch.randn_like(out)).sum().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reaches {missing}"


# state_dict keys of UNet(1, base_channels=8, channel_mults=[1, 2], num_res_blocks=1), written down from the code
# before dims / padding_mode / cond_channels existed: defaults must keep them so old checkpoints still load.
_RES = ["norm1", "conv1", "film", "norm2", "conv2"]
_LEGACY_MODULES = (
    ["embedding.mlp.0", "embedding.mlp.2", "conv_in"]
    + [f"down.0.{m}" for m in _RES] + ["down.1"] + [f"down.2.{m}" for m in _RES + ["skip"]]
    + [f"mid1.{m}" for m in _RES] + [f"mid2.{m}" for m in _RES]
    + [f"up.0.{m}" for m in _RES + ["skip"]] + [f"up.1.{m}" for m in _RES + ["skip"]] + ["up.2.1"]
    + [f"up.3.{m}" for m in _RES + ["skip"]] + [f"up.4.{m}" for m in _RES + ["skip"]]
    + ["norm_out", "conv_out"]
)
LEGACY_UNET_KEYS = [f"{m}.{p}" for m in _LEGACY_MODULES for p in ("weight", "bias")]
LEGACY_ATTENTION_KEYS = ["mid_attn.norm.weight", "mid_attn.norm.bias", "mid_attn.attn.in_proj_weight",
                         "mid_attn.attn.in_proj_bias", "mid_attn.attn.out_proj.weight", "mid_attn.attn.out_proj.bias"]


def test_default_unet_keeps_its_state_dict_keys():
    net = UNet(1, base_channels=8, channel_mults=[1, 2], num_res_blocks=1)
    assert len(LEGACY_UNET_KEYS) == 104 and list(net.state_dict()) == LEGACY_UNET_KEYS
    assert isinstance(net.conv_in, torch.nn.Conv2d) and net.conv_in.padding_mode == "zeros"
    assert net.conv_in.weight.shape == (8, 1, 3, 3) and net.down[1].weight.shape == (8, 8, 3, 3)
    with_attention = UNet(1, base_channels=8, channel_mults=[1, 2], num_res_blocks=1, attention=True)
    assert [k for k in with_attention.state_dict() if k.startswith("mid_attn.")] == LEGACY_ATTENTION_KEYS
    # the new options change shapes/modes, never names: an old checkpoint's keys load into a circular 1-D net
    assert list(UNet(1, base_channels=8, channel_mults=[1, 2], dims=1, padding_mode="circular").state_dict()) == (
        LEGACY_UNET_KEYS
    )
