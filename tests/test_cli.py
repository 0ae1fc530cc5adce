"""mmseg.cli: the config that names a bad key travels explicitly, with the
exception, and nothing of one run is left for the next."""
import pytest

from mmseg import cli
from mmseg.registry import MODELS
from mmseg.utils import register_all_modules

MODEL = dict(model=dict(type='EncoderDecoder',
                        backbone=dict(type='ResNetV1c', depth=18)))


@pytest.fixture(scope='module', autouse=True)
def registered():
    register_all_modules()


def _error(cfg: dict) -> Exception:
    """What building ``cfg`` raises (mmengine's real message)."""
    with pytest.raises(Exception) as info:
        MODELS.build(cfg)
    return info.value


def _with_backbone(**backbone) -> dict:
    config = {'model': dict(MODEL['model'])}
    config['model']['backbone'] = dict(type='ResNetV1c', **backbone)
    return config


def test_unknown_type_is_named_by_the_config_given():
    config = _with_backbone()
    config['model']['backbone']['type'] = 'ResNetV1k'
    error = _error(config['model']['backbone'])
    message = cli.explain(error, config).message
    assert message.startswith(
        "unknown type 'ResNetV1k' (config key model.backbone.type)"), message
    assert 'ResNetV1c' in message.split('closest registered names:')[1]
    # without a config the same error names no key
    alone = cli.explain(error).message
    assert 'config key' not in alone and "'ResNetV1k'" in alone


def test_unexpected_argument_is_named_by_the_attached_config():
    config = _with_backbone(dpeth=18)
    with pytest.raises(TypeError) as info:
        with cli.attach_config_to_errors(config):
            MODELS.build(config['model']['backbone'])
    assert cli.config_attached_to(info.value) is config
    explanation = cli.explain(info.value)
    assert "'dpeth' (config key model.backbone.dpeth)" in \
        explanation.message, explanation.message
    assert 'did you mean depth' in explanation.message
    assert explanation.exit_code == cli.EXIT_USAGE and explanation.expected


def test_innermost_config_wins_and_causes_carry_theirs():
    inner, outer = _with_backbone(dpeth=1), _with_backbone(depht=1)
    with pytest.raises(TypeError) as info:
        with cli.attach_config_to_errors(outer):
            with cli.attach_config_to_errors(inner):
                MODELS.build(inner['model']['backbone'])
    assert cli.config_attached_to(info.value) is inner
    # an error raised while handling one that carries a config
    with pytest.raises(RuntimeError) as wrapped:
        try:
            with cli.attach_config_to_errors(outer):
                raise TypeError('x')
        except TypeError as e:
            raise RuntimeError('wrapped') from e
    assert cli.config_attached_to(wrapped.value) is outer


def test_run_names_the_key_and_keeps_nothing_for_the_next_run(capsys):
    config = _with_backbone(dpeth=18)

    def builds_with_config(argv):
        with cli.attach_config_to_errors(config):
            MODELS.build(config['model']['backbone'])

    def builds_without_config(argv):
        MODELS.build(config['model']['backbone'])

    assert cli.run(builds_with_config, []) == cli.EXIT_USAGE
    first = capsys.readouterr().err
    assert 'config key model.backbone.dpeth' in first, first
    # the next tool never gave a config: none is left over from the first
    assert cli.run(builds_without_config, []) == cli.EXIT_USAGE
    second = capsys.readouterr().err
    assert "ResNet has no argument 'dpeth'" in second
    assert 'config key' not in second, second


def test_load_config_returns_the_config_and_keeps_no_copy(tmp_path):
    path = tmp_path / 'cfg.py'
    path.write_text("model = dict(type='EncoderDecoder')\n")
    cfg = cli.load_config(str(path), {'model.type': 'Other'})
    assert cfg.model.type == 'Other'
    for module in (cli.config_loading, cli.explanation, cli.entry_point):
        kept = [name for name, value in vars(module).items()
                if value is cfg]
        assert not kept, (module.__name__, kept)
