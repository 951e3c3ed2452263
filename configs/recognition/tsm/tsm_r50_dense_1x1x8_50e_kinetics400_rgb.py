_base_ = 'tsm_r50_dense_1x1x8_100e_kinetics400_rgb.py'

lr_config = dict(step=[20, 40])
total_epochs = 50

work_dir = './work_dirs/tsm_r50_dense_1x1x8_50e_kinetics400_rgb/'
