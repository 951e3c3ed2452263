_base_ = './i3d_nl_dot_product_r50_32x2x1_100e_kinetics400_rgb.py'

model = dict(backbone=dict(non_local_cfg=dict(mode='gaussian')))

work_dir = './work_dirs/i3d_nl_gaussian_r50_32x2x1_100e_kinetics400_rgb/'
