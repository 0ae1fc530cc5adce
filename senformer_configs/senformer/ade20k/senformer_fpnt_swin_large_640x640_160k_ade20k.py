_base_ = [
    '../../_base_/models/senformer_fpnt_swin_large.py',
    '../../_base_/datasets/ade20k_640x640.py',
    '../../_base_/default_runtime.py',
    '../../_base_/schedules/schedule_160k.py',
    '../../_base_/schedules/adamw_swin.py'
]
crop_size = (640, 640)
model = dict(data_preprocessor=dict(size=crop_size))
train_dataloader = dict(batch_size=2)
