"""FCVID: T=16 candidates, K=6 frames, MobileNetV2 @128 sampler, ResNet-50 @224 (mAP).

Paper: 83.9 mAP at 26.0 GFLOPs (multiply-adds). This config counts 25.47 GMACs per video (README
"FLOPs at the paper's shapes"):
    python -m nsnet_jax.flops --config=configs/fcvid.py
Its accuracy has not been measured in this project (the dataset is not on these machines).
"""

from nsnet_jax.configs import default


def get_config():
    c = default.get_config()
    c.data.name = "video_folder/fcvid"
    c.data.num_classes = 239
    c.data.multi_label = True
    c.data.eval_split = "test"
    c.model.num_select = 6
    c.lock()
    return c
