"""ShortChunkResNet: shapes, its exact size, gradients to every parameter, any chunk length."""

import pytest
import torch

from genre_cls.models.logmel import LogMel
from genre_cls.models.resnet import ShortChunkResNet, block_channels


def test_channels_double_per_block_up_to_eight_times_the_width():
    assert block_channels(16, 6) == [16, 32, 64, 128, 128, 128]
    assert [b.conv2.out_channels for b in ShortChunkResNet(width=8, depth=5).blocks] == [8, 16, 32, 64, 64]


def test_default_parameter_count():
    """The size the README states for the defaults (width 16, depth 5, 10 classes)."""
    assert sum(p.numel() for p in ShortChunkResNet().parameters()) == 605_244
    assert sum(p.numel() for p in ShortChunkResNet(width=32, depth=6).parameters()) == 3_592_300


@pytest.mark.parametrize("frames", [1, 7, 31, 130, 161])
def test_any_number_of_frames_gives_one_logit_per_class(frames):
    model = ShortChunkResNet(num_classes=7, n_mels=64, width=4, depth=5).eval()
    assert model(torch.randn(3, 1, 64, frames)).shape == (3, 7)


def test_takes_the_log_mel_front_end_output():
    front, model = LogMel(n_mels=128), ShortChunkResNet()
    assert model(front(torch.randn(2, 22050))).shape == (2, 10)


def test_gradients_reach_every_parameter_and_a_step_lowers_the_loss():
    torch.manual_seed(0)
    model = ShortChunkResNet(num_classes=4, n_mels=32, width=4, depth=3, dropout=0.0)
    x, y = torch.randn(8, 1, 32, 40), torch.arange(8) % 4
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert missing == []
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt.step()
    assert torch.nn.functional.cross_entropy(model(x), y).item() < loss.item()


def test_eval_mode_is_deterministic_and_dropout_acts_in_training():
    torch.manual_seed(0)
    model = ShortChunkResNet(n_mels=16, width=4, depth=2, dropout=0.5)
    x = torch.randn(4, 1, 16, 20)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


def test_a_front_end_with_other_mel_bins_is_one_clear_error():
    with pytest.raises(ValueError, match="128 mels"):
        ShortChunkResNet()(torch.randn(2, 1, 64, 130))
    with pytest.raises(ValueError, match="dropout"):
        ShortChunkResNet(dropout=1.0)


def test_channels_last_layout_gives_the_same_logits_and_survives_a_state_dict_round_trip():
    torch.manual_seed(0)
    model = ShortChunkResNet(n_mels=32, width=4, depth=3).eval()
    assert model.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(2, 1, 32, 50)
    reference = model.to(memory_format=torch.contiguous_format)(x)  # the same weights, the plain layout
    rebuilt = ShortChunkResNet(n_mels=32, width=4, depth=3).eval()
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(rebuilt(x), reference, atol=1e-5)


def test_the_max_time_pool_feeds_the_strongest_frame_of_each_channel_to_the_head():
    model = ShortChunkResNet(num_classes=3, n_mels=32, width=4, depth=3, time_pool="max").eval()
    assert model.head.in_features == 16  # one value per channel of the last block (max_mean: 32)
    assert ShortChunkResNet(num_classes=3, n_mels=32, width=4, depth=3).head.in_features == 32
    # The logits are the head applied to the max over frames of the frequency means.
    x = torch.randn(2, 1, 32, 40)
    features = model.blocks(model.stem(model.input_bn(x))).mean(dim=2).amax(dim=2)
    torch.testing.assert_close(model(x), model.head(features))
    with pytest.raises(ValueError, match="time_pool must be one of max_mean, max"):
        ShortChunkResNet(time_pool="mean")
