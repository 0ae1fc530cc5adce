# SenFormer with a ResNet-50 (V1c) backbone and the FPNT neck.
# Experiment files set data_preprocessor.size to their crop size and
# num_classes of both heads when the dataset is not ADE20K (150 classes);
# SenFormerNWS (no weight sharing) only changes decode_head.type.
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
    pretrained='open-mmlab://resnet50_v1c',
    backbone=dict(
        type='ResNetV1c',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 1, 1),
        strides=(1, 2, 2, 2),
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        contract_dilation=True,
        # memory only (not in the published configs): the first three
        # stages' activations are recomputed in backward, with equal
        # results (docs/benchmarks.md)
        recompute_stages=(0, 1, 2)),
    neck=dict(
        type='FPNT',
        in_channels=[256, 512, 1024, 2048],
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
        # each learner's loss is averaged over the non-ignored pixels, as the
        # published head computes it (its config does not say so)
        loss_decode=dict(
            type='CrossEntropyLoss',
            use_sigmoid=False,
            loss_weight=1.0,
            avg_non_ignore=True)),
    # reads the backbone's stage-3 map (1024 channels), not the neck's
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=1024,
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
