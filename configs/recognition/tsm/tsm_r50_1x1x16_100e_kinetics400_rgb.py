_base_ = 'tsm_r50_1x1x16_50e_kinetics400_rgb.py'

lr_config = dict(step=[40, 80])
total_epochs = 100

work_dir = './work_dirs/tsm_r50_1x1x16_100e_kinetics400_rgb/'
