# Poly learning-rate decay to 80000 iterations, the first 1500 scaled by a
# linear warm-up (the published schedule, one product: PolyLRWithWarmup);
# validation every 1000 iterations, a checkpoint every 8000 plus the one with
# the best mIoU. The optimizer is in adamw_resnet.py / adamw_swin.py.
param_scheduler = [
    dict(
        type='PolyLRWithWarmup',
        power=1.0,
        eta_min=0.0,
        warmup_iters=1500,
        warmup_ratio=1e-6,
        begin=0,
        end=80000,
        by_epoch=False)
]
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=80000, val_interval=1000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(
        type='CheckpointHook',
        by_epoch=False,
        interval=8000,
        save_best='mIoU',
        rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
# The schedules assume 16 images per iteration (8 GPUs x 2 or 4 x 4, see the
# dataset files); `tools/train.py --auto-scale-lr` scales the rate linearly
# to the actual total batch size.
auto_scale_lr = dict(enable=False, base_batch_size=16)
