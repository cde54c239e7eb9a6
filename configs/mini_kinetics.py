"""Mini-Kinetics (200 classes, top-1): T=16, K=4, MobileNetV2 @128 sampler, ResNet-50 @224.

Paper: 73.6 top-1 at 18.1 GFLOPs (multiply-adds). This config counts 17.53 GMACs per video (README
"FLOPs at the paper's shapes"):
    python -m nsnet_jax.flops --config=configs/mini_kinetics.py
Its accuracy has not been measured in this project (the dataset is not on these machines).
"""

from nsnet_jax.configs import default


def get_config():
    c = default.get_config()
    c.data.name = "video_folder/mini_kinetics"
    c.data.num_classes = 200
    c.data.eval_split = "validation"
    c.model.num_select = 4
    c.lock()
    return c
