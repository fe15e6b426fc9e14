import pytest
import torch

from genre_cls.models import Discriminator, Generator, Net1, Net2, Net3, Net5, ShortChunkResNet, frontends, networks


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    "cls, expected",
    [(Net1, 50_034_698), (Net2, 66_460_522), (Net3, 66_461_034), (Net5, 216_842),
     (Generator, 137_915_444), (Discriminator, 68_120_677)],
)
def test_parameter_counts_match_the_spec(cls, expected):
    assert n_params(cls()) == expected


@pytest.mark.parametrize("cls", [Net1, Net2, Net3])
def test_image_nets_map_images_to_ten_logits(cls):
    assert cls()(torch.rand(2, 3, 180, 180)).shape == (2, 10)


def test_cnn_flattens_259200_features_and_net3_has_batchnorm_after_every_conv():
    net2, net3 = Net2(), Net3()
    assert net2.classifier[1].in_features == 259_200
    assert net2.features(torch.rand(1, 3, 180, 180)).shape == (1, 128, 45, 45)
    layers = list(net3.features)
    convs = [i for i, m in enumerate(layers) if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 4
    assert all(isinstance(layers[i + 1], torch.nn.BatchNorm2d) for i in convs)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net2.modules())


def test_net5_is_a_two_layer_lstm_on_feature_sequences():
    net = Net5()
    assert (net.lstm.num_layers, net.lstm.hidden_size, net.lstm.dropout) == (2, 128, 0.3)
    assert net(torch.randn(4, 16, 33)).shape == (4, 10)


def test_cgan_shapes():
    g = Generator(hidden=(8, 8, 8), out_dim=66_000)
    d = Discriminator(in_dim=66_000, hidden=(8, 8))
    labels = torch.tensor([0, 9])
    fake = g(torch.randn(2, 100), labels)
    assert fake.shape == (2, 66_000)
    assert d(fake, labels).shape == (2,)


def test_the_registry_finds_every_network_and_front_end_by_the_name_configs_give():
    from genre_cls.models.head import EmbeddingHead
    from genre_cls.models.musicnn import MusicnnClassifier

    assert networks() == {"embedding_head": EmbeddingHead, "mel_resnet": ShortChunkResNet, "musicnn": MusicnnClassifier,
                          "net1": Net1, "net2": Net2, "net3": Net3, "net5": Net5}
    assert {"scale", "standardize", "logmel", "musicnn_logmel"} <= set(frontends())


@pytest.mark.parametrize("model, reads", [
    ("net1", ("net1", "image", "scale")), ("net2", ("net2", "image", "scale")), ("net3", ("net3", "image", "scale")),
    ("net4", ("net3", "image", "scale")), ("net5", ("net5", "features", "standardize")),
    ("net6", ("net5", "features", "standardize")), ("mel_resnet", ("mel_resnet", "waveform", "logmel")),
    ("musicnn_head", ("embedding_head", "embedding", "standardize")), ("musicnn_finetune", ("musicnn", "waveform", "musicnn_logmel")),
])
def test_each_model_config_says_what_its_network_reads(model, reads):
    """Each model config names its network, input kind and front end; checkpoints written before
    they named them read what their network read then."""
    from genre_cls.conf import compose
    from genre_cls.systems.classifier import READ_BEFORE_3

    cfg = compose([f"model={model}"]).model
    assert (cfg.arch, cfg.input_kind, cfg.frontend) == reads
    assert READ_BEFORE_3.get(cfg.arch, cfg.input_kind) == cfg.input_kind  # networks newer than format 3 have no old reading
