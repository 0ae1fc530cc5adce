# SenFormer with a Swin-L backbone (ImageNet-22k, 384x384 pre-training).
_base_ = './senformer_fpnt_swin.py'
model = dict(
    pretrained='pretrain/swin_large_patch4_window12_384_22k.pth',
    backbone=dict(
        pretrain_img_size=384,
        embed_dims=192,
        window_size=12,
        depths=[2, 2, 18, 2],
        num_heads=[6, 12, 24, 48]),
    neck=dict(in_channels=[192, 384, 768, 1536]),
    auxiliary_head=dict(in_channels=768))
