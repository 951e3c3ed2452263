# featx: MMAction2 1.2.0 ships uniformerv2-base-p16-res224_clip-pre_u8_kinetics710-rgb.py
# model-only (no test_dataloader, so no test pipeline). This is its model, the same dict (the keys saying where
# initial weights come from aside: pretrained, clip_pretrained; tests/test_model_index.py holds the two equal), with the test pipeline and
# loader of 1.2.0's config of the same model,
# uniformerv2-base-p16-res224_clip_u8_kinetics710-rgb.py
# (its own training config: the same model trained on Kinetics-710 from CLIP).
_base_ = ['../uniformerv2-base-p16-res224_clip_u8_kinetics710-rgb.py']

model = dict(cls_head=dict(num_classes=710))
