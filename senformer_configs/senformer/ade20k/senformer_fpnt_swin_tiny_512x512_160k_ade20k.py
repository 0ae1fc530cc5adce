_base_ = [
    '../../_base_/models/senformer_fpnt_swin.py',
    '../../_base_/datasets/ade20k.py', '../../_base_/default_runtime.py',
    '../../_base_/schedules/schedule_160k.py',
    '../../_base_/schedules/adamw_swin.py'
]
crop_size = (512, 512)
model = dict(data_preprocessor=dict(size=crop_size))
optim_wrapper = dict(clip_grad=dict(max_norm=0.1))
