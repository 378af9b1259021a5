"""Models: Savani's MLP, ResNet-18/34/50, Wide ResNet-50-2 and ResNeXt-50 with named stages,
Bahng's SimpleConvNet, taps into any named layer, and the torchvision ResNet importer
(:mod:`~debiasjax.models.from_torch`)."""

from debiasjax.models import from_torch
from debiasjax.models.convnet import SimpleConvNet
from debiasjax.models.from_torch import load_torch_resnet, resnet_from_state_dict
from debiasjax.models.mlp import MLP
from debiasjax.models.resnet import RESNETS, BasicBlock, BottleneckBlock, ResNet, ResNet18, \
    ResNet34, ResNet50, ResNeXt50, WideResNet50
from debiasjax.models.taps import Intervened, Tap, penultimate_layer, tap, tap_from_functions, \
    top_level_call_order

__all__ = ["MLP", "RESNETS", "SimpleConvNet", "ResNet", "ResNet18", "ResNet34", "ResNet50",
           "ResNeXt50", "WideResNet50",
           "BasicBlock", "BottleneckBlock", "Intervened", "Tap", "penultimate_layer", "tap",
           "tap_from_functions", "top_level_call_order", "from_torch", "load_torch_resnet",
           "resnet_from_state_dict"]
