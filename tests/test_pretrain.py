"""Stage 0, `pretrain`: labelled stills, still classifiers, their backbones in the video stages."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from nsnet_jax import pipeline_run
from nsnet_jax.config_checks import validate_config
from nsnet_jax.input_pipeline import stills
from nsnet_jax.models.nsnet import build_model
from nsnet_jax.sharding import data_mesh
from nsnet_jax.train import checkpointing, init, pretrain, provenance
from tests import tiny_train_config
from tests.processes import NullWriter
from tests.tiny import set_fields, tiny_config


def test_stills_are_labelled_items_drawn_like_the_variant_and_reproducible():
    images, labels = stills.make_stills("small", "train", 64, seed=0)
    assert images.shape == (64, 64, 64, 3) and images.dtype == np.uint8
    assert labels.min() >= 0 and labels.max() < stills.NUM_CLASSES and len(set(labels)) >= 6
    # `small` draws opaque items on black: every still shows a bright item on a dark canvas
    bright = (images.max(-1) > 128).reshape(64, -1).mean(1)
    assert bright.min() > 0.002 and bright.max() < 0.5
    again, again_labels = stills.make_stills("salient_fashion/small", "train", 64, seed=0)
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(labels, again_labels)
    test_images, _ = stills.make_stills("small", "test", 64, seed=0)
    assert not np.array_equal(images, test_images)  # the test split's own Fashion-MNIST images


def test_an_unknown_variant_names_the_choices():
    with pytest.raises(ValueError, match="'lookalike'"):
        stills.variant_config("lookalikes")


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(pretrain__stills_variant="small", pretrain__parts="sampler,decoder"), "parts"),
        (dict(stage="pretrain"), "stills_variant"),
        (dict(pretrain__stills_variant="nope"), "not a salient_fashion config"),
        (
            dict(pretrain__stills_variant="small", model__sampler__init_from__format="orbax"),
            "both set",
        ),
        (dict(pretrain__num_epochs=0.0), "pretrain.num_epochs"),
        (dict(pretrain__stills_variant="small", pretrain__part_epochs="sampler=0"), "part_epochs"),
        (dict(pretrain__stills_variant="small", pretrain__part_epochs="decoder=3"), "part_epochs"),
    ],
)
def test_bad_pretrain_settings_fail_naming_the_field(overrides, match):
    with pytest.raises(ValueError, match=match):
        validate_config(set_fields(tiny_config(), **overrides))


def test_the_pretrain_record_holds_only_what_the_still_classifiers_depend_on():
    fields = provenance.stage_fields(tiny_config(pretrain__stills_variant="small"), "pretrain")
    assert {"pretrain.num_epochs", "model.sampler.width", "data.recognizer_size"} <= set(fields)
    later = ("loss.", "sampler_training.", "recognizer_training.", "eval.", "pseudo_label.")
    assert not [k for k in fields if k.startswith(later)]
    # records written before the stage existed still match a config that leaves it off
    current = provenance.stage_fields(tiny_config(), "recognizer")
    old_record = {k: v for k, v in current.items() if not k.startswith("pretrain.")}
    assert provenance.differences(old_record, current) == []
    on = provenance.stage_fields(tiny_config(pretrain__stills_variant="small"), "recognizer")
    assert provenance.differences(old_record, on) == [("pretrain.stills_variant", None, "small")]


def test_pretraining_only_the_sampler_keeps_a_trained_recognizer_current():
    # a finished recognizer (and its pseudo labels) does not depend on the sampler's stills
    off = tiny_config()
    sampler_only = tiny_config(pretrain__stills_variant="small", pretrain__parts="sampler")
    both = tiny_config(pretrain__stills_variant="small")
    for stage in ("recognizer", "pseudo_labels"):
        record = provenance.stage_fields(off, stage)
        assert provenance.differences(record, provenance.stage_fields(sampler_only, stage)) == []
        assert provenance.differences(record, provenance.stage_fields(both, stage))
    # the sampler stage starts from the pretrained backbone, so it does depend on the stage
    changed = provenance.differences(
        provenance.stage_fields(off, "sampler"), provenance.stage_fields(sampler_only, "sampler")
    )
    assert ("pretrain.stills_variant", "", "small") in changed


def test_a_recognizer_recorded_with_sampler_only_pretrain_fields_still_resumes(tmp_path):
    # earlier code recorded pretrain's fields in the recognizer's record even with parts=sampler
    sampler_only = tiny_config(pretrain__stills_variant="small", pretrain__parts="sampler")
    old = provenance.stage_fields(tiny_config(pretrain__stills_variant="small"), "recognizer")
    old["pretrain.parts"] = "sampler"
    for stage in ("recognizer", "pseudo_labels"):
        (tmp_path / stage).mkdir()
        (tmp_path / stage / "stage_config.json").write_text(json.dumps(old))
        (tmp_path / stage / "DONE.json").write_text("{}")
    assert provenance.check_finished_stages(sampler_only, str(tmp_path)) == []
    # while a recognizer that did start from the stills' backbone is stale without it
    old["pretrain.parts"] = "sampler,recognizer"
    (tmp_path / "recognizer" / "stage_config.json").write_text(json.dumps(old))
    with pytest.raises(provenance.StaleWorkdirError, match="pretrain.parts"):
        provenance.check_finished_stages(sampler_only, str(tmp_path))
    # a record without pretrain.parts means both parts, as config_upgrade fills it in
    both = tiny_config(pretrain__stills_variant="small")
    del old["pretrain.parts"]
    for stage in ("recognizer", "pseudo_labels"):
        (tmp_path / stage / "stage_config.json").write_text(json.dumps(old))
    assert provenance.check_finished_stages(both, str(tmp_path)) == []


def test_pretrain_learns_the_stills_and_the_video_stages_start_from_its_backbones(
    tiny_fashion_dir, tmp_path
):
    # the tiny config's recognizer (resnet18, mean_logits) keeps its video head inside the
    # backbone: that head must keep its fresh init, everything else comes from the stage
    config = set_fields(
        tiny_train_config.get_config(),
        data__data_dir=tiny_fashion_dir,
        stage="pretrain",
        pretrain__stills_variant="small",
        pretrain__num_train=1536,
        pretrain__num_test=256,
        pretrain__num_epochs=4.0,
        pretrain__part_epochs="sampler=6",  # the sampler's own length; the recognizer keeps 4
        pretrain__batch_size=64,
        pretrain__learning_rate=5e-3,
        pretrain__warmup_steps=5,
        log_every_steps=1000,
    )
    workdir = str(tmp_path)
    summary = pipeline_run.train_and_evaluate(config, workdir)["pretrain"]
    model = build_model(config)
    mesh = data_mesh()
    fresh = init.create_variables(config, model, mesh)
    started = init.create_variables(config, model, mesh, workdir=workdir)
    assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(started))  # nothing left abstract
    assert (summary["sampler"]["steps"], summary["recognizer"]["steps"]) == (6 * 24, 4 * 24)
    for part in ("sampler", "recognizer"):
        assert summary[part]["test_accuracy"] > 0.2, summary  # 10 classes: chance is 0.1
        saved = checkpointing.restore_variables(pretrain.variables_dir(workdir, part))
        headless = pretrain.headless_shapes(config, part)
        assert set(saved["params"]) == set(headless["params"])  # no still classifier
        backbone = {c: started[c][part]["backbone"] for c in ("params", "batch_stats")}
        for collection in ("params", "batch_stats"):
            got = _flat(backbone[collection])
            for path, want in _flat(saved[collection]).items():
                np.testing.assert_array_equal(np.asarray(got[path]), np.asarray(want))
        extra = set(started["params"][part]["backbone"]) - set(saved["params"])
        for name in extra:  # e.g. the recognizer's video head: as a run without the stage
            _assert_equal(
                started["params"][part]["backbone"][name], fresh["params"][part]["backbone"][name]
            )
        first = sorted(_flat(saved["params"]))[0]
        assert not np.array_equal(
            np.asarray(_flat(backbone["params"])[first]),
            np.asarray(_flat(fresh["params"][part]["backbone"])[first]),
        )
    assert set(started["params"]["recognizer"]["backbone"]) - set(
        pretrain.headless_shapes(config, "recognizer")["params"]
    ), "the tiny recognizer was meant to hold its video head in the backbone"
    # the heads are the video stages' own: they start where a run without the stage starts
    _assert_equal(
        started["params"]["sampler"]["frame_head"], fresh["params"]["sampler"]["frame_head"]
    )
    # and the recognizer stage trains from there
    config = set_fields(config, stage="recognizer")
    assert pipeline_run.train_and_evaluate(config, workdir)["recognizer"]["steps"] == 4


def _assert_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_a_video_stage_without_the_pretrain_result_says_how_to_get_it(tiny_fashion_dir, tmp_path):
    config = set_fields(
        tiny_train_config.get_config(),
        data__data_dir=tiny_fashion_dir,
        stage="sampler",
        pretrain__stills_variant="small",
        pretrain__parts="sampler",
    )
    with pytest.raises(FileNotFoundError, match="--config.stage=pretrain"):
        pipeline_run.train_and_evaluate(config, str(tmp_path))


def _flat(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        if hasattr(value, "items"):
            out.update(_flat(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("variant, expected", [("", []), ("small", ["pretrain"])])
def test_stage_all_runs_pretrain_first_only_where_a_variant_is_named(
    monkeypatch, tmp_path, variant, expected
):
    ran = []
    for name in pipeline_run.STAGES:
        monkeypatch.setitem(
            pipeline_run.STAGES, name, lambda *a, _n=name, **k: ran.append(_n) or {}
        )
    config = set_fields(tiny_train_config.get_config(), pretrain__stills_variant=variant)
    pipeline_run.train_and_evaluate(config, str(tmp_path), writer=NullWriter())
    assert ran == expected + ["recognizer", "pseudo_labels", "sampler", "eval"]
