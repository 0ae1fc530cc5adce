_base_ = [
    '../../_base_/models/senformer_fpnt_r50.py',
    '../../_base_/datasets/cityscapes.py', '../../_base_/default_runtime.py',
    '../../_base_/schedules/schedule_100k.py',
    '../../_base_/schedules/adamw_resnet.py'
]
crop_size = (512, 1024)
model = dict(
    data_preprocessor=dict(size=crop_size),
    decode_head=dict(num_classes=19),
    auxiliary_head=dict(num_classes=19))
