_base_ = [
    '../../_base_/models/senformer_fpnt_swin_large.py',
    '../../_base_/datasets/coco-stuff10k.py',
    '../../_base_/default_runtime.py',
    '../../_base_/schedules/schedule_80k.py',
    '../../_base_/schedules/adamw_swin.py'
]
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    decode_head=dict(num_classes=171),
    auxiliary_head=dict(num_classes=171))
train_dataloader = dict(batch_size=2)
