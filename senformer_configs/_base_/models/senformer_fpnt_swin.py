# SenFormer with a Swin Transformer backbone (Swin-T sizes) and the FPNT
# neck. Larger Swins change embed_dims, depths, num_heads, window_size and
# pretrain_img_size, and with them the neck's in_channels and the auxiliary
# head's in_channels (4 x embed_dims); see senformer_fpnt_swin_large.py.
# The pretrained weights are looked for in pretrain/ (see pretrain/README.md).
norm_cfg = dict(type='SyncBN', requires_grad=True)
# Normalize and Pad of the published pipelines, applied to whole batches
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    pretrained='pretrain/swin_tiny_patch4_window7_224.pth',
    backbone=dict(
        type='SwinTransformer',
        pretrain_img_size=224,
        embed_dims=96,
        patch_size=4,
        window_size=7,
        mlp_ratio=4,
        depths=[2, 2, 6, 2],
        num_heads=[3, 6, 12, 24],
        strides=(4, 2, 2, 2),
        out_indices=(0, 1, 2, 3),
        qkv_bias=True,
        qk_scale=None,
        patch_norm=True,
        drop_rate=0.,
        attn_drop_rate=0.,
        drop_path_rate=0.3,
        use_abs_pos_embed=False,
        act_cfg=dict(type='GELU'),
        norm_cfg=dict(type='LN', requires_grad=True),
        with_cp=False),
    neck=dict(
        type='FPNT',
        in_channels=[96, 192, 384, 768],
        out_channels=512,
        num_outs=4,
        depth_swin=1,
        num_heads=8,
        window_size=7,
        mlp_ratio=4.,
        qkv_bias=True,
        qk_scale=None,
        drop_rate=0.,
        attn_drop_rate=0.),
    decode_head=dict(
        type='SenFormer',
        num_heads=8,
        branch_depth=6,
        in_channels=[512, 512, 512, 512],
        in_index=[0, 1, 2, 3],
        feature_strides=[4, 8, 16, 32],
        channels=128,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    # reads the backbone's stage-3 map (4 x embed_dims channels)
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=384,
        in_index=2,
        channels=512,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    aux_head_input='backbone',
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
