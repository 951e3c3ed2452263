_base_ = './ircsn_ig65m_pretrained_bnfrozen_r152_32x2x1_58e_kinetics400_rgb.py'

model = dict(backbone=dict(pretrained=None, depth=50))

data = dict(videos_per_gpu=4)

optimizer = dict(lr=0.08)
lr_config = dict(policy='CosineAnnealing', warmup_iters=40, min_lr=0)
total_epochs = 180

work_dir = './work_dirs/ircsn_bnfrozen_r50_32x2x1_180e_kinetics400_rgb'
