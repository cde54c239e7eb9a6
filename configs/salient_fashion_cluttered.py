"""salient_fashion/cluttered: a recipe for real-looking video (README "Real-looking video").

    python -m nsnet_jax.demo --config=configs/salient_fashion_cluttered.py --workdir=/tmp/sf_clut

Today's recipe (`configs/salient_fashion.py` on this variant) loses the evidence in the
recognizer: after 2 epochs on 4,000 cluttered videos all-16 is 28.4% (5 classes), its pseudo
labels mark evidence frames with precision 0.28 and recall 0.22, and NSNet-2 recovers 9% (32 px
sampler) or 71% (64 px; oracle-2 is only 30.9%) of the uniform-2 -> oracle-2 distance.
The changes, each a config switch of every config:
  - the recognizer trains for 16 epochs instead of 2 (all-16 56.4%, pseudo labels 0.61 / 0.52),
  - with augmentation (the same flip and mild crop, scale >= 0.7, for every frame of a video)
    so that the longer training does not memorise the three background clips,
  - the sampler sees 64 px frames instead of 32 px and trains for 30 epochs instead of 3
    (10 -> 20 -> 30 epochs: recall 0.73 -> 0.81 -> 0.82; train and test recall stay within
    0.02 of each other, so the small sampler was under-trained, not over-fitted),
  - the sampler's frame features see their two neighbours (`model.sampler.temporal=conv1d`):
    recall 0.44 -> 0.73 at the same cost (10 sampler epochs).
Measured on the 2-core CPU with nothing else running: NSNet-2 54.8% against uniform-2 28.5% and
oracle-2 60.2% (83% of the distance), evidence recall 0.82, 34 minutes for all stages.
The issue's recall target (0.9) is not reached: README "Real-looking video". On `lookalike`,
which is hard for today's recipe at both sampler sizes, this recipe reaches NSNet-2 50.6%
(`--config.data.name=salient_fashion/lookalike`); configs/salient_fashion_lookalike.py adds
pretrained backbones to it.
"""

from configs import salient_fashion


def get_config():
    c = salient_fashion.get_config()
    with c.unlocked():
        c.data.name = "salient_fashion/cluttered"
        c.data.sampler_size = 64
        c.data.augment = True
        c.data.crop_scale_min = 0.7  # a mild crop keeps the 26-44 px item in the frame
        c.recognizer_training.num_epochs = 16.0
        c.sampler_training.num_epochs = 30.0  # 10 -> 20 -> 30: recall 0.73 -> 0.81 -> 0.82
        # each frame's features see its two neighbours: the evidence is a short segment between
        # longer distractor segments, which the frame alone cannot tell from a Shirt look-alike
        c.model.sampler.temporal = "conv1d"
    c.lock()
    return c
