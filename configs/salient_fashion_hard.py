"""salient_fashion/hard: the salient_fashion recipe on the hardest real-looking variant, kept as a
stress test (docs/results.md, "hard").

    python -m nsnet_jax.demo --config=configs/salient_fashion_hard.py --workdir=/tmp/sf_hard

configs/salient_fashion.py pointed at `hard` with a 64 px sampler input. It is the measured
baseline, not a fix: its recognizer stays at chance (all-16 19.4%, 5 classes), so NSNet, uniform
and oracle are all at chance too. The probes that did not learn it either: CHANGELOG.md.
"""

from nsnet_jax.configs import salient_fashion


def get_config():
    c = salient_fashion.get_config()
    with c.unlocked():
        c.data.name = "salient_fashion/hard"
        c.data.sampler_size = 64  # the user set gained most from 32 -> 64 px
    c.lock()
    return c
