_base_ = './senformer_fpnt_swin_tiny_512x512_160k_ade20k.py'
model = dict(
    pretrained='pretrain/swin_small_patch4_window7_224.pth',
    backbone=dict(depths=[2, 2, 18, 2]))
