"""salient_fashion: the offline benchmark with ground-truth evidence frames (docs/results.md).

Small networks on purpose: the recognizer is a PatchCNN (stride-4 patchify stem, widths
32/64/128) with max-pooled MLP aggregation on 64 px frames, the sampler a half-width PatchCNN on
32 px frames, so all 16 sampler frames cost about one recognizer frame. A stride-4 patchify stem
doubled training frames/s on the 2-core CPU against a 3x3 stride-2 stem.

    python -m nsnet_jax.main --config=configs/salient_fashion.py --workdir=/tmp/salient_fashion

(the dataset must be built first; `bash launch/quickstart.sh` does both). Evaluated at K = 1, 2, 4.
Result (2-core CPU with nothing else running, 9.8 minutes without the dataset build): NSNet 75.0%
top-1 at K=2 with evidence recall 0.989, uniform-2 35.3%, all-16 76.2% at 5.5x the GMACs of
NSNet-2.
"""

from nsnet_jax.configs import default


def get_config():
    c = default.get_config()
    c.data.name = "salient_fashion"
    c.data.num_classes = 5
    c.data.num_frames = 16
    c.data.sampler_size = 32
    c.data.recognizer_size = 64  # the canvas is 64 px: no upsampling
    c.data.augment = False  # a random crop often cuts the moving object out of the frame
    c.data.num_threads = 2

    c.model.num_select = 2
    c.model.sampler.backbone = "patch_cnn"
    c.model.sampler.width = 0.5
    c.model.recognizer.backbone = "patch_cnn"
    c.model.recognizer.aggregation = "maxpool_mlp"  # evidence is 1-3 frames: max-pool finds it
    c.model.recognizer.mlp_dim = 256

    c.batch_size = 16
    c.eval_batch_size = 64
    c.log_every_steps = 50
    c.checkpoint_every_steps = 250

    c.recognizer_training.optimizer = "adamw"
    c.recognizer_training.learning_rate = 2e-3
    c.recognizer_training.weight_decay = 1e-4
    c.recognizer_training.warmup_steps = 100
    c.recognizer_training.num_epochs = 2.0
    c.recognizer_training.frames_per_video = -1  # all 16: evidence is 1-3 frames of a video

    c.sampler_training.optimizer = "adamw"
    c.sampler_training.learning_rate = 5e-3  # 2e-3 left the tiny sampler near chance (recall 0.53)
    c.sampler_training.warmup_steps = 50
    c.sampler_training.grad_clip = 40.0
    c.sampler_training.num_epochs = 3.0

    c.eval.num_select = "1,2,4"
    c.lock()
    return c
