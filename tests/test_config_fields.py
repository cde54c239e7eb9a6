"""String config fields parsed once into Settings; old workdir configs upgraded in one place."""

from __future__ import annotations

import collections
import dataclasses
import json

import ml_collections
import pytest

from nsnet_jax import config_fields, config_upgrade, pipeline_run
from nsnet_jax.config_checks import validate_config
from nsnet_jax.configs import default
from nsnet_jax.inference.trained import config_from_workdir
from nsnet_jax.models.nsnet import build_model
from nsnet_jax.train import provenance
from tests import tiny_train_config
from tests.processes import NullWriter
from tests.tiny import set_fields, tiny_config


def test_every_string_field_becomes_a_typed_value():
    config = tiny_config(
        pretrain__stills_variant="small",
        pretrain__parts="recognizer,sampler",
        pretrain__num_epochs=2.0,
        pretrain__part_epochs="sampler=15",
        eval__num_select="1,2",
        sampler_training__lr_multipliers="sampler/backbone=0.1, /recognizer/=0.5",
        init_from__skip="recognizer/fc/*, sampler/*",
        model__sampler__init_from__skip="conv_0/*",
    )
    settings = config_fields.parse(config)
    assert settings.pretrain_parts == ("recognizer", "sampler")
    assert settings.pretrain_epochs == {"recognizer": 2.0, "sampler": 15.0}
    assert settings.eval_ks == (1, 2)
    assert settings.lr_multipliers == {
        "recognizer": {},
        "sampler": {"sampler/backbone": 0.1, "recognizer": 0.5},
    }
    assert settings.init_skip == ("recognizer/fc/*", "sampler/*")
    assert settings.backbone_init_skip == {"sampler": ("conv_0/*",), "recognizer": ()}
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.eval_ks = (3,)
    off = config_fields.parse(tiny_config())  # no stills variant: stage pretrain is off
    assert (off.pretrain_parts, off.pretrain_epochs, off.eval_ks) == ((), {}, (2,))


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(pretrain__stills_variant="small", pretrain__parts="sampler,head"), "pretrain.parts"),
        (
            dict(pretrain__stills_variant="small", pretrain__part_epochs="sampler=x"),
            "pretrain.part_epochs",
        ),
        (
            dict(pretrain__stills_variant="small", pretrain__part_epochs="head=3"),
            "pretrain.part_epochs",
        ),
        (dict(eval__num_select="1,a"), "eval.num_select"),
        (dict(eval__num_select="1,9"), "eval.num_select"),
        (dict(sampler_training__lr_multipliers="b0.5"), "sampler_training.lr_multipliers"),
        (dict(recognizer_training__lr_multipliers="fc=x"), "recognizer_training.lr_multipliers"),
    ],
)
def test_a_bad_value_names_its_field_in_parse_and_in_validation(overrides, field):
    config = tiny_config(**overrides)
    with pytest.raises(ValueError, match=field.replace(".", r"\.")) as parsed:
        config_fields.parse(config)
    with pytest.raises(ValueError, match=field.replace(".", r"\.")) as validated:
        validate_config(config)  # before any work, with the same message
    assert str(parsed.value) == str(validated.value)


def test_the_runner_parses_each_field_once_and_hands_every_stage_the_same_settings(
    monkeypatch, tmp_path
):
    calls = collections.Counter()
    real = config_fields.parse_multipliers

    def counting(spec, field="lr_multipliers", example="path/prefix=0.1"):
        calls[field] += 1
        return real(spec, field, example)

    monkeypatch.setattr(config_fields, "parse_multipliers", counting)
    for fn in ("pretrain_parts", "eval_ks"):
        orig = getattr(config_fields, fn)
        monkeypatch.setattr(
            config_fields, fn, lambda *a, _f=fn, _o=orig: calls.update([_f]) or _o(*a)
        )
    seen = []
    for name in pipeline_run.STAGES:
        monkeypatch.setitem(
            pipeline_run.STAGES, name, lambda *a, _n=name: seen.append((_n, a[-1])) or {}
        )
    config = set_fields(
        tiny_train_config.get_config(),
        pretrain__stills_variant="small",
        pretrain__part_epochs="sampler=3",
    )
    pipeline_run.train_and_evaluate(config, str(tmp_path), writer=NullWriter(), validate=False)
    assert calls == {
        "pretrain_parts": 1,
        "pretrain.part_epochs": 1,
        "eval_ks": 1,
        "recognizer_training.lr_multipliers": 1,
        "sampler_training.lr_multipliers": 1,
    }
    assert [n for n, _ in seen] == ["pretrain", "recognizer", "pseudo_labels", "sampler", "eval"]
    assert len({id(s) for _, s in seen}) == 1
    assert seen[0][1].pretrain_epochs == {"sampler": 3.0, "recognizer": 2.0}


def _flat(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _drop(tree: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        tree = tree[p]
    tree.pop(leaf)


def test_an_old_config_gets_each_added_field_at_its_earlier_value(tmp_path):
    current = json.loads(default.get_config().to_json_best_effort())
    old = json.loads(json.dumps(current))
    for field in config_upgrade.ADDED_FIELDS:
        _drop(old, field)
    old.pop("pretrain")  # the whole section came later
    (tmp_path / "config.json").write_text(json.dumps(old))

    upgraded = config_from_workdir(str(tmp_path))  # how predict, export and diagnose read it
    assert isinstance(upgraded, ml_collections.ConfigDict)
    got, want = _flat(upgraded.to_dict()), _flat(current)
    assert set(got) == set(want)
    differs = {f: (got[f], want[f]) for f in want if got[f] != want[f]}
    # every value is configs/default.py's, except where the field's arrival changed the default
    assert differs == {"selection.perturbed_estimator": ("first_order", "loss")}
    build_model(upgraded)  # the model reads every field directly
    assert config_upgrade.upgrade(upgraded).to_dict() == upgraded.to_dict()  # a no-op now


def test_provenance_matches_an_old_record_at_the_upgrade_values():
    assert provenance.ADDED_FIELDS is config_upgrade.ADDED_FIELDS  # one list
    current = provenance.stage_fields(tiny_config(), "sampler")
    old = {k: v for k, v in current.items() if k not in config_upgrade.ADDED_FIELDS}
    changed = {k for k, _, _ in provenance.differences(old, current)}
    assert changed == {"selection.perturbed_estimator"}  # 'loss' now; older runs were first order
    first_order = provenance.stage_fields(
        tiny_config(selection__perturbed_estimator="first_order"), "sampler"
    )
    assert provenance.differences(old, first_order) == []
