_base_ = './senformer_fpnt_r50_480x480_40k_pascal.py'
model = dict(
    pretrained='open-mmlab://resnet101_v1c', backbone=dict(depth=101))
