# Runtime settings shared by every SenFormer config.
default_scope = 'mmseg'
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(
    type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False

# multi-scale + flip testing (tools/test.py --aug-test) wraps the model in
# this and runs the dataset config's tta_pipeline
tta_model = dict(type='SegTTAModel')

# every published SenFormer config trains its DDP model with
# find_unused_parameters=True; mmengine's Runner reads it from here
find_unused_parameters = True
