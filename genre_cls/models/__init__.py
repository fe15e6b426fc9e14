"""The networks as plain ``nn.Module``s; no-argument constructors give the paper's sizes."""

from genre_cls.models.cgan import Discriminator, Generator
from genre_cls.models.cnn import Net2, Net3
from genre_cls.models.lstm import Net5
from genre_cls.models.mlp import Net1
from genre_cls.models.resnet import ShortChunkResNet

# Architecture name -> (class, input kind: genre_cls.data.kinds). Net4 is Net3's network (trained
# with RMSprop); Net6 is Net5's network (trained on CGAN-augmented data); mel_resnet reads
# waveforms through its log-mel front end.
ARCHITECTURES = {
    "net1": (Net1, "image"),
    "net2": (Net2, "image"),
    "net3": (Net3, "image"),
    "net5": (Net5, "features"),
    "mel_resnet": (ShortChunkResNet, "waveform"),
}

__all__ = ["ARCHITECTURES", "Discriminator", "Generator", "Net1", "Net2", "Net3", "Net5", "ShortChunkResNet"]
