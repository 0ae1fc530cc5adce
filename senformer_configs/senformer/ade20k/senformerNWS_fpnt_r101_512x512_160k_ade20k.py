# Without weight sharing: each learner has branch_depth decoder blocks of
# its own instead of one block applied branch_depth times.
_base_ = './senformer_fpnt_r101_512x512_160k_ade20k.py'
model = dict(decode_head=dict(type='SenFormerNWS'))
