_base_ = './senformer_fpnt_r50_512x1024_100k_cityscapes.py'
model = dict(
    pretrained='open-mmlab://resnet101_v1c', backbone=dict(depth=101))
train_dataloader = dict(batch_size=4)
