"""Device-side augmentation (genre_cls/models/augment.py): masks, gain, mixup and its loss."""

import pytest
import torch
import torch.nn.functional as F

from genre_cls.models.batch_augment import RandomGain, SpecAugment, mixup, soft_cross_entropy


def runs(flags: torch.Tensor) -> list[int]:
    """Lengths of the runs of True in a 1-D bool tensor."""
    out, n = [], 0
    for f in flags.tolist() + [False]:
        if f:
            n += 1
        elif n:
            out.append(n)
            n = 0
    return out


def test_spec_augment_masks_whole_bands_and_spans_within_bounds_with_the_example_mean():
    torch.manual_seed(0)
    spec = torch.randn(64, 1, 128, 130) * 10 + torch.arange(64.0)[:, None, None, None]
    aug = SpecAugment(freq_masks=2, freq_width=16, time_masks=3, time_width=10).train()
    out = aug(spec)
    changed = out != spec
    freq_counts, time_counts = [], []
    for i in range(len(spec)):
        rows = changed[i, 0].all(dim=1)  # a masked mel bin is masked in every frame
        cols = changed[i, 0].all(dim=0)
        assert torch.equal(changed[i, 0], rows[:, None] | cols[None, :])  # nothing else changed
        assert len(runs(rows)) <= 2 and int(rows.sum()) <= 2 * 16
        assert len(runs(cols)) <= 3 and int(cols.sum()) <= 3 * 10
        assert torch.allclose(out[i][changed[i]], spec[i].mean().expand(int(changed[i].sum())))
        freq_counts.append(int(rows.sum()))
        time_counts.append(int(cols.sum()))
    # Drawn per example: widths vary, and the widest bands reach (near) their bound.
    assert len(set(freq_counts)) > 5 and max(freq_counts) > 16 and max(time_counts) > 10


def test_spec_augment_is_the_identity_in_eval_mode_and_with_no_masks():
    spec = torch.randn(4, 1, 32, 40)
    assert SpecAugment().eval()(spec) is spec
    assert torch.equal(SpecAugment(freq_masks=0, time_masks=0).train()(spec), spec)


def test_spec_augment_widths_beyond_the_spectrogram_are_clamped():
    torch.manual_seed(1)
    spec = torch.randn(16, 1, 8, 6)
    out = SpecAugment(freq_masks=1, freq_width=100, time_masks=1, time_width=100).train()(spec)
    assert out.shape == spec.shape and torch.isfinite(out).all()


def test_random_gain_stays_in_range_per_example_and_only_in_training():
    torch.manual_seed(0)
    wave = torch.randn(256, 1000)
    gain = RandomGain(db=6.0).train()
    ratio = gain(wave) / wave
    per_example = ratio[:, 0]
    assert torch.allclose(ratio, per_example[:, None].expand_as(ratio), rtol=1e-5)  # one gain per example
    db = 20 * torch.log10(per_example)
    assert float(db.min()) >= -6.0 - 1e-4 and float(db.max()) <= 6.0 + 1e-4
    assert float(db.min()) < -5.0 and float(db.max()) > 5.0  # the whole range is used
    assert gain.eval()(wave) is wave
    assert RandomGain(db=0.0).train()(wave) is wave


def test_mixup_with_alpha_zero_is_the_identity():
    x, y = torch.randn(8, 100), torch.arange(8) % 3
    mixed, soft = mixup(x, y, alpha=0.0, num_classes=3)
    assert mixed is x and torch.equal(soft, F.one_hot(y, 3).float())


def test_mixup_soft_labels_sum_to_one_and_follow_the_mixing_weights():
    """With x = I each mixed row shows its weights: soft labels must be those weights times the labels."""
    torch.manual_seed(0)
    n, classes = 16, 4
    y = torch.randint(0, classes, (n,))
    seen = set()
    for _ in range(5):
        mixed, soft = mixup(torch.eye(n), y, alpha=0.4, num_classes=classes)
        assert torch.allclose(soft.sum(dim=1), torch.ones(n))
        assert torch.allclose(soft, mixed @ F.one_hot(y, classes).float(), atol=1e-6)
        lam = float(mixed.max(dim=1).values.min())  # each row is lam e_i + (1 - lam) e_perm(i)
        assert 0.0 <= lam <= 1.0 and torch.allclose(mixed.sum(dim=1), torch.ones(n))
        seen.add(round(lam, 6))
    assert len(seen) == 5  # a fresh lam per batch


def test_mixup_accepts_soft_labels_and_spectrogram_batches():
    torch.manual_seed(0)
    x = torch.randn(6, 1, 16, 20)
    soft = F.softmax(torch.randn(6, 5), dim=1)
    mixed, out = mixup(x, soft, alpha=1.0, num_classes=5)
    assert mixed.shape == x.shape and torch.allclose(out.sum(dim=1), torch.ones(6))


def test_soft_cross_entropy_equals_cross_entropy_for_one_hot_and_soft_targets():
    torch.manual_seed(0)
    logits, y = torch.randn(12, 10), torch.randint(0, 10, (12,))
    assert torch.allclose(soft_cross_entropy(logits, F.one_hot(y, 10).float()), F.cross_entropy(logits, y))
    soft = F.softmax(torch.randn(12, 10), dim=1)
    assert torch.allclose(soft_cross_entropy(logits, soft), F.cross_entropy(logits, soft))
    assert soft_cross_entropy(logits.half(), soft).dtype == torch.float32


@pytest.mark.parametrize("bad", [dict(freq_masks=-1), dict(time_width=-2)])
def test_negative_mask_settings_are_refused(bad):
    with pytest.raises(ValueError, match="non-negative"):
        SpecAugment(**bad)
