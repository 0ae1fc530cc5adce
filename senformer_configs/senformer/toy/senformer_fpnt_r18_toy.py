# A small SenFormer for CPU runs: ResNetV1c-18, FPNT with 64 channels, two
# learner blocks of 2 heads, 128x128 crops, on a folder in ADE20K layout
# (images/{training,validation}/*.jpg, annotations/{training,validation}/*.png,
# label 0 ignored through reduce_zero_label). The defaults match the data of
# tools/misc/generate_toy_dataset.py:
#   python tools/misc/generate_toy_dataset.py data/toy
#   python tools/train.py \
#     senformer_configs/senformer/toy/senformer_fpnt_r18_toy.py
# For another folder with other classes, override the three dataloaders and
# both heads (the toy palette, one colour per toy class, then gives way to
# generated colours, with a log line), e.g.
#   --cfg-options train_dataloader.dataset.data_root=data/mine \
#     val_dataloader.dataset.data_root=data/mine \
#     test_dataloader.dataset.data_root=data/mine \
#     "train_dataloader.dataset.metainfo.classes=[a,b,c]" \
#     "val_dataloader.dataset.metainfo.classes=[a,b,c]" \
#     "test_dataloader.dataset.metainfo.classes=[a,b,c]" \
#     model.decode_head.num_classes=3 model.auxiliary_head.num_classes=3
_base_ = [
    '../../_base_/models/senformer_fpnt_r50.py',
    '../../_base_/default_runtime.py',
]
norm_cfg = dict(type='BN', requires_grad=True)
num_classes = 5
crop_size = (128, 128)
img_scale = (256, 128)
model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(depth=18, norm_cfg=norm_cfg),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=64, num_heads=2),
    decode_head=dict(
        num_heads=2,
        branch_depth=2,
        in_channels=[64, 64, 64, 64],
        channels=32,
        num_classes=num_classes,
        norm_cfg=norm_cfg),
    auxiliary_head=dict(
        in_channels=256,
        channels=64,
        num_classes=num_classes,
        norm_cfg=norm_cfg))

dataset_type = 'BaseSegDataset'
data_root = 'data/toy'
metainfo = dict(
    classes=('background', 'square', 'disc', 'triangle', 'bar'),
    palette=[[100, 110, 90], [200, 40, 40], [40, 180, 40], [40, 60, 200],
             [220, 200, 40]])
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(
        type='RandomResize',
        scale=img_scale,
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
# three scales, not the published six: the CPU quick start stays quick
img_ratios = [0.75, 1.0, 1.25]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[
            [
                dict(
                    type='Resize',
                    scale=(int(img_scale[0] * r), int(img_scale[1] * r)),
                    keep_ratio=True) for r in img_ratios
            ],
            [
                dict(type='RandomFlip', prob=0., direction='horizontal'),
                dict(type='RandomFlip', prob=1., direction='horizontal')
            ],
            [dict(type='LoadAnnotations', reduce_zero_label=True)],
            [dict(type='PackSegInputs')],
        ])
]
# batch 4 x 200 iterations: about 85 mIoU in ~75 s on 2 idle CPU cores
# (batch 8 x 100, the same number of images, stops at ~80)
train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(
            img_path='images/training', seg_map_path='annotations/training'),
        reduce_zero_label=True,
        metainfo=metainfo,
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(
            img_path='images/validation',
            seg_map_path='annotations/validation'),
        reduce_zero_label=True,
        metainfo=metainfo,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=0.001, betas=(0.9, 0.999), weight_decay=0.0001),
    clip_grad=dict(max_norm=1.0, norm_type=2),
    paramwise_cfg=dict(custom_keys={
        'norm': dict(decay_mult=0.),
        'queries': dict(decay_mult=0.)
    }))
max_iters = 200
warmup_iters = 20
param_scheduler = [
    dict(
        type='PolyLRWithWarmup',
        power=1.0,
        eta_min=0.0,
        warmup_iters=warmup_iters,
        warmup_ratio=1e-3,
        begin=0,
        end=max_iters,
        by_epoch=False)
]
# 4 crops per iteration on one process; --auto-scale-lr scales from there
auto_scale_lr = dict(enable=False, base_batch_size=4)
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=100)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(
        type='CheckpointHook',
        by_epoch=False,
        interval=100,
        save_best='mIoU',
        rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
randomness = dict(seed=0)
