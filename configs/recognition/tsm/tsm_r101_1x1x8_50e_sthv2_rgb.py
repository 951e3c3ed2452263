_base_ = './tsm_r50_1x1x8_50e_sthv2_rgb.py'

model = dict(backbone=dict(pretrained='torchvision://resnet101', depth=101))

data = dict(videos_per_gpu=8)

optimizer = dict(lr=0.01)

work_dir = './work_dirs/tsm_r101_1x1x8_50e_sthv2_rgb/'
