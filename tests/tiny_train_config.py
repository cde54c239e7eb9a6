"""A tiny, locked training config for command-line tests (data_dir comes from an override)."""

from tests.tiny import tiny_config


def get_config():
    c = tiny_config()
    c.data.name = "salient_fashion/tiny_test"
    c.data.num_frames = 6
    c.data.sampler_size = 16
    c.data.recognizer_size = 32
    c.batch_size = 8
    c.eval_batch_size = 8
    c.recognizer_training.num_steps = 4
    c.recognizer_training.frames_per_video = 3
    c.sampler_training.num_steps = 2
    c.log_every_steps = 1
    c.checkpoint_every_steps = 2
    c.eval.num_select = "1,2"
    c.eval.timing_repeats = 1
    c.lock()
    return c
