from .resnet import ResNet, ResNetV1c
from .swin import SwinTransformer

__all__ = ['ResNet', 'ResNetV1c', 'SwinTransformer']
