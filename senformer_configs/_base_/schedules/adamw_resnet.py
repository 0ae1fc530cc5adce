# AdamW of the ResNet SenFormers: the backbone (ImageNet weights) learns at a
# tenth of the rate; no weight decay on norms, position embeddings and the
# learners' queries. The ADE20K 512x512 configs clip gradients at 0.1.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.0001),
    clip_grad=dict(max_norm=1.0, norm_type=2),
    paramwise_cfg=dict(
        custom_keys=dict(
            absolute_pos_embed=dict(decay_mult=0.),
            relative_position_bias_table=dict(decay_mult=0.),
            norm=dict(decay_mult=0.),
            queries=dict(decay_mult=0.),
            pos_embed=dict(decay_mult=0.),
            backbone=dict(lr_mult=0.1))))
