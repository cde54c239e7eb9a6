"""salient_fashion/lookalike: the cluttered recipe, unchanged, on the variant that is hard for
today's recipe at both sampler sizes (README "Real-looking video").

    python -m nsnet_jax.demo --config=configs/salient_fashion_lookalike.py --workdir=/tmp/sf_look

`lookalike` is `cluttered` with Shirt look-alikes in 80% of the distractor segments instead of
40%. Today's recipe (`configs/salient_fashion.py` pointed at it) recovers -3% (32 px sampler) and
29% (64 px) of the uniform-2 -> oracle-2 distance; this config, measured once after that on the
2-core CPU (33 minutes for all stages): NSNet-2 50.6% against uniform-2 28.6% and oracle-2 57.3%
(77% of the distance), evidence recall 0.70, all-16 49.2% (today's recipe: 27.3%).
"""

from configs import salient_fashion_cluttered


def get_config():
    c = salient_fashion_cluttered.get_config()
    with c.unlocked():
        c.data.name = "salient_fashion/lookalike"
    c.lock()
    return c
