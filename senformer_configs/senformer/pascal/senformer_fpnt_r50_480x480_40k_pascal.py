_base_ = [
    '../../_base_/models/senformer_fpnt_r50.py',
    '../../_base_/datasets/pascal_context_59.py',
    '../../_base_/default_runtime.py',
    '../../_base_/schedules/schedule_40k.py',
    '../../_base_/schedules/adamw_resnet.py'
]
crop_size = (480, 480)
model = dict(
    data_preprocessor=dict(size=crop_size),
    decode_head=dict(num_classes=59),
    auxiliary_head=dict(num_classes=59))
