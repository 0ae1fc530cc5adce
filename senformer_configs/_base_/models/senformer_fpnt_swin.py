# SenFormer with a Swin Transformer backbone (Swin-T sizes) and the FPNT
# neck: the ResNet model with another backbone. Larger Swins change
# embed_dims, depths, num_heads, window_size and pretrain_img_size, and with
# them the neck's in_channels and the auxiliary head's in_channels
# (4 x embed_dims); see senformer_fpnt_swin_large.py.
# The pretrained weights are looked for in pretrain/ (see pretrain/README.md).
_base_ = ['./senformer_fpnt_r50.py']
model = dict(
    pretrained='pretrain/swin_tiny_patch4_window7_224.pth',
    backbone=dict(
        _delete_=True,
        type='SwinTransformer',
        pretrain_img_size=224,
        embed_dims=96,
        patch_size=4,
        window_size=7,
        mlp_ratio=4,
        depths=[2, 2, 6, 2],
        num_heads=[3, 6, 12, 24],
        strides=(4, 2, 2, 2),
        out_indices=(0, 1, 2, 3),
        qkv_bias=True,
        qk_scale=None,
        patch_norm=True,
        drop_rate=0.,
        attn_drop_rate=0.,
        drop_path_rate=0.3,
        use_abs_pos_embed=False,
        act_cfg=dict(type='GELU'),
        norm_cfg=dict(type='LN', requires_grad=True),
        with_cp=False),
    neck=dict(in_channels=[96, 192, 384, 768]),
    # reads the backbone's stage-3 map (4 x embed_dims channels)
    auxiliary_head=dict(in_channels=384))
