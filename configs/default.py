"""Shared defaults: every dataset config imports this and overrides only what differs.

Each open choice of the method (see README "Method") is a field here, with the default the
README names. Dataset configs lock the ConfigDict, so a mistyped override key fails loudly
instead of being silently ignored.
"""

from __future__ import annotations

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.stage = "all"  # recognizer | pseudo_labels | sampler | eval | all
    c.seed = 0

    # ---- data ------------------------------------------------------------------------------
    c.data = ml_collections.ConfigDict()
    c.data.name = "salient_fashion"  # a TFDS name, optionally "name/builder_config"
    c.data.data_dir = ""  # TFDS data dir; "" means $TFDS_DATA_DIR or ~/tensorflow_datasets
    c.data.num_classes = 5
    c.data.multi_label = False
    c.data.num_frames = 16  # T candidate frames per video
    c.data.sampler_size = 128  # square side of the sampler's low-resolution view
    c.data.recognizer_size = 224  # square side of the recognizer's full-resolution view
    c.data.train_split = "train"
    c.data.eval_split = "test"
    c.data.augment = True  # random resized crop + flip, the same for every frame of a video
    c.data.crop_scale_min = 0.25
    c.data.num_threads = 2
    c.data.prefetch = 2

    # ---- model -----------------------------------------------------------------------------
    c.model = ml_collections.ConfigDict()
    c.model.num_select = 6  # K frames the recognizer sees
    c.model.dtype = "float32"  # compute dtype: float32 | bfloat16 (parameters stay float32)
    c.model.depthwise_impl = "auto"  # auto | grouped | shifted (auto: shifted on CPU)
    c.model.sampler = ml_collections.ConfigDict()
    c.model.sampler.backbone = "mobilenet_v2"
    c.model.sampler.width = 1.0
    c.model.sampler.temporal = "none"  # none | conv1d | transformer
    c.model.sampler.transformer_heads = 4
    c.model.sampler.fusion = "sum"  # sum | product | rank
    c.model.sampler.fusion_beta = 1.0  # s = s_f + beta * a for `sum` and `rank`
    c.model.recognizer = ml_collections.ConfigDict()
    c.model.recognizer.backbone = "resnet50"
    c.model.recognizer.width = 1.0
    c.model.recognizer.aggregation = "mean_logits"  # mean_logits | mean_softmax | maxpool_mlp
    c.model.recognizer.mlp_dim = 4096  # hidden size of maxpool_mlp
    c.model.recognizer.dropout_rate = 0.0

    # ---- objectives ------------------------------------------------------------------------
    c.pseudo_label = ml_collections.ConfigDict()
    c.pseudo_label.rule = "correct_and_rank"  # rank | threshold | correct | soft | correct_and_rank
    c.pseudo_label.ratio = -1.0  # `rank` keeps the top ceil(ratio*T); -1 means K/T
    c.pseudo_label.threshold = 0.5  # `threshold` rule's tau
    c.loss = ml_collections.ConfigDict()
    c.loss.frame_weight = 1.0  # lambda_f
    c.loss.video_weight = 1.0  # lambda_v
    c.loss.nonsalient = "background"  # background | uniform | complement
    c.loss.nonsalient_weight = 1.0  # lambda_ns
    c.loss.pos_weight = 1.0  # w+ on salient frames in the frame BCE

    # ---- selection -------------------------------------------------------------------------
    c.selection = ml_collections.ConfigDict()
    c.selection.train_mode = "none"  # none | perturbed | gumbel (gradients through top-k)
    c.selection.num_samples = 100  # perturbed: Monte-Carlo samples
    c.selection.sigma = 0.05  # perturbed: noise scale
    c.selection.temperature = 0.5  # gumbel: softmax temperature of the relaxation
    c.selection.recognizer_loss_weight = 1.0  # weight of the recognizer loss through selection
    return c
