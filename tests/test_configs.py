"""Config files load and validate; overrides work; unknown keys and bad switch values are named."""

import subprocess
import sys
from pathlib import Path

import pytest

from nsnet_jax.config_checks import CHOICES, validate_config, with_overrides
from nsnet_jax.models.nsnet import build_model
from tests.helpers import parse_config

ROOT = Path(__file__).resolve().parents[1]
CONFIG_FILES = sorted(p.name for p in (ROOT / "configs").glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("config_file", CONFIG_FILES)
def test_every_config_file_loads_and_validates(config_file):
    config = parse_config(config_file)
    validate_config(config)
    build_model(config)


def test_overrides_reach_the_config():
    config = parse_config(
        "activitynet.py",
        "--config.model.num_select=5",
        "--config.model.sampler.temporal=transformer",
        "--config.loss.nonsalient_weight=0.5",
    )
    assert config.model.num_select == 5
    assert config.model.sampler.temporal == "transformer"
    assert config.loss.nonsalient_weight == 0.5


def test_temporal_kernel_must_be_odd():
    with pytest.raises(ValueError, match="temporal_kernel=4 must be an odd int"):
        validate_config(
            parse_config("salient_fashion.py", "--config.model.sampler.temporal_kernel=4")
        )


def test_self_training_fields_are_bounded():
    validate_config(parse_config("salient_fashion.py", "--config.pseudo_label.own_top_k=2"))
    with pytest.raises(ValueError, match=r"own_top_k=17 must be an int in \[0, config.data"):
        validate_config(parse_config("salient_fashion.py", "--config.pseudo_label.own_top_k=17"))
    with pytest.raises(ValueError, match=r"own_from=1.5 must be a fraction"):
        validate_config(parse_config("salient_fashion.py", "--config.pseudo_label.own_from=1.5"))


def test_maxpool_share_rule_needs_a_maxpool_recognizer():
    validate_config(parse_config("salient_fashion.py", "--config.pseudo_label.rule=maxpool_share"))
    config = parse_config("activitynet.py", "--config.pseudo_label.rule=maxpool_share")
    with pytest.raises(ValueError, match="aggregation='mean_logits': set it to 'maxpool_mlp'"):
        validate_config(config)


def test_unknown_override_key_is_rejected_with_its_name():
    with pytest.raises(Exception, match="num_selct"):
        parse_config("activitynet.py", "--config.model.num_selct=5")


def test_unknown_key_on_the_command_line_fails_the_program():
    result = subprocess.run(
        [sys.executable, "-m", "nsnet_jax.flops", "--config=configs/fcvid.py",
         "--config.loss.nonsalent=uniform"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "nonsalent" in result.stderr


@pytest.mark.parametrize("field", sorted(CHOICES))
def test_bad_switch_value_names_field_value_and_choices(field):
    config = with_overrides(parse_config("activitynet.py"), {field: "no_such_value"})
    with pytest.raises(ValueError, match=rf"config\.{field}='no_such_value' is not allowed"):
        validate_config(config)


@pytest.mark.parametrize(
    "field, value, match",
    [
        (
            "eval.num_select",
            "1,40",
            r"eval\.num_select='1,40' has K=40, outside \[1, data.num_frames=16\]",
        ),
        ("eval.num_select", "1;2", r"eval\.num_select='1;2' must be comma-separated integers"),
        ("batch_size", 0, r"config\.batch_size=0 must be a number >= 1"),
        ("model.sampler.width", 0.0, r"config\.model\.sampler\.width=0.0 must be a number > 0"),
        ("sampler_training.learning_rate", -1.0, r"sampler_training\.learning_rate=-1.0"),
        ("selection.sigma", 0.0, r"config\.selection\.sigma=0.0 must be a number > 0"),
        (
            "sampler_training.optimizer",
            "lamb",
            r"sampler_training\.optimizer='lamb' is not allowed",
        ),
    ],
)
def test_every_field_is_checked_before_any_work(field, value, match):
    config = with_overrides(parse_config("activitynet.py"), {field: value})
    with pytest.raises(ValueError, match=match):
        validate_config(config)


def test_an_override_without_its_dashes_is_an_error_not_ignored():
    result = subprocess.run(
        [sys.executable, "-m", "nsnet_jax.flops", "--config=configs/fcvid.py",
         "config.model.num_select=4"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "unexpected argument(s) ['config.model.num_select=4']" in result.stderr
    assert "needs two dashes" in result.stderr
