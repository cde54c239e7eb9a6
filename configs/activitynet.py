"""ActivityNet-v1.3: T=16 candidates, K=6 frames, MobileNetV2 @128 sampler, ResNet-50 @224.

Paper: 76.8 mAP at 26.0 GFLOPs (multiply-adds). This config counts 25.47 GMACs per video (README
"FLOPs at the paper's shapes"):
    python -m nsnet_jax.flops --config=configs/activitynet.py
Train (frames prepared as in docs/data.md):
    python -m nsnet_jax.main --config=configs/activitynet.py --workdir=/tmp/anet
Its accuracy has not been measured in this project (the dataset is not on these machines).
On a GPU, MobileNetV2's depthwise convolutions make the sampler far slower than its FLOPs; a
sampler without them, at fewer GMACs per frame (0.087 against 0.103; its speed is not measured
and its accuracy fell short of MobileNetV2's on salient_fashion, docs/performance.md):
    --config.model.sampler.backbone=fused_mbconv
"""

from nsnet_jax.configs import default


def get_config():
    c = default.get_config()
    c.data.name = "video_folder/activitynet"
    c.data.num_classes = 200
    c.data.multi_label = True  # validation videos can carry several labels
    c.data.eval_split = "validation"
    c.model.num_select = 6
    c.lock()
    return c
