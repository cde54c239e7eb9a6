"""salient_fashion/hard: today's salient_fashion recipe on the real-looking variant (README
"Real-looking video"; `configs/salient_fashion_cluttered.py` is the learnable variant's recipe).

    python -m nsnet_jax.demo --config=configs/salient_fashion_hard.py --workdir=/tmp/sf_hard

The variant (3,000 train / 1,000 test videos, T=16, 64 px) pans real clips at full brightness
under items that are alpha-blended, change size, are partly occluded, and share distractor
segments with Shirt look-alikes. This config is `configs/salient_fashion.py` pointed at it with a
64 px sampler input; it is the measured baseline, not a fix: its recognizer stays at chance
(all-16 19.4%), so NSNet, uniform and oracle are all at chance too. The switches measured
against it (README) are `model.recognizer.init_from` (ImageNet EfficientNet-Lite0) and
`model.recognizer.freeze_backbone`.
"""

from configs import salient_fashion


def get_config():
    c = salient_fashion.get_config()
    with c.unlocked():
        c.data.name = "salient_fashion/hard"
        c.data.sampler_size = 64  # the user set gained most from 32 -> 64 px
    c.lock()
    return c
