import pytest

from caffe_mlic.caffe.params import REQUIRED, Param, ParamError, parse_params

SPEC = (
    Param('pooled_h', 'int', REQUIRED, low=1),
    Param('spatial_scale', 'float', 1.0, low=0, low_open=True),
    Param('mirror', 'bool', False),
    Param('source', 'str', ''),
    Param('scale_factors', 'float_list', [1.0], low=0, low_open=True, min_len=1),
    Param('mode', 'str', 'a', choices=['a', 'b']),
)


def test_defaults_and_conversion():
    p = parse_params('ROIPooling', '{"pooled_h": 7, "spatial_scale": 1}', SPEC)
    assert p.pooled_h == 7 and p.spatial_scale == 1.0 and isinstance(p.spatial_scale, float)
    assert p.mirror is False and p.scale_factors == [1.0] and p.mode == 'a'


@pytest.mark.parametrize('text, fragments', [
    ('{"pooled_h": 7, "pooledw": 7}', ['ROIPooling', "unknown parameter 'pooledw'", 'known parameters']),
    ('{"pooled_h": "7"}', ['ROIPooling', "'pooled_h'", 'an integer', '"7"']),
    ('{"pooled_h": 7.0}', ["'pooled_h'", 'an integer']),
    ('{"pooled_h": true}', ["'pooled_h'", 'an integer']),
    ('{"pooled_h": 0}', ["'pooled_h'", '>= 1', 'got 0']),
    ('{"pooled_h": 7, "spatial_scale": 0}', ["'spatial_scale'", '> 0']),
    ('{"pooled_h": 7, "mirror": 1}', ["'mirror'", 'true or false']),
    ('{"pooled_h": 7, "scale_factors": []}', ["'scale_factors'", 'at least 1']),
    ('{"pooled_h": 7, "scale_factors": [1, -2]}', ["'scale_factors'", 'list of numbers']),
    ('{"pooled_h": 7, "mode": "c"}', ["'mode'", 'one of "a", "b"']),
    ('{}', ['ROIPooling', "required parameter 'pooled_h' is missing", 'an integer']),
    ('', ["required parameter 'pooled_h'"]),
    ('{"pooled_h": 7', ['ROIPooling', 'not valid JSON']),
    ('[1, 2]', ['ROIPooling', 'JSON object']),
    ('{"pooled_h": 7, "spatial_scale": 1e-46}', ["'spatial_scale'", '> 0', 'got 1e-46']),    # 0 in float32
    ('{"pooled_h": 7, "spatial_scale": 1e39}', ["'spatial_scale'", 'within float32', 'got 1e+39']),
    ('{"pooled_h": 7, "scale_factors": [1, -1e39]}', ["'scale_factors'", 'within float32']),
    ('{"pooled_h": 7, "pooled_h": 3}', ['ROIPooling', 'not valid JSON', "the key 'pooled_h' is given twice"]),
])
def test_rejections_name_layer_key_and_expectation(text, fragments):
    with pytest.raises(ParamError) as info:
        parse_params('ROIPooling', text, SPEC)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_nan_is_rejected():
    with pytest.raises(ParamError, match='spatial_scale'):
        parse_params('ROIPooling', '{"pooled_h": 7, "spatial_scale": NaN}', SPEC)
