_base_ = [
    '../../_base_/models/senformer_fpnt_swin.py',
    '../../_base_/datasets/ade20k_640x640.py',
    '../../_base_/default_runtime.py',
    '../../_base_/schedules/schedule_160k.py',
    '../../_base_/schedules/adamw_swin.py'
]
crop_size = (640, 640)
model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained='pretrain/swin_base_patch4_window12_384_22k.pth',
    backbone=dict(
        pretrain_img_size=384,
        embed_dims=128,
        window_size=12,
        depths=[2, 2, 18, 2],
        num_heads=[4, 8, 16, 32]),
    neck=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
train_dataloader = dict(batch_size=2)
