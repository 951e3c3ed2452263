_base_ = './tsm_r50_1x1x8_50e_kinetics400_rgb.py'

lr_config = dict(step=[40, 80])
total_epochs = 100
