"""The bottom layer: type aliases, the base exception and the registry
scope set-up. It imports only the standard library, torch, numpy, mmengine
and mmcv at module level, so every other package may import it
(``tests/test_layering.py`` checks this)."""
from .setup_env import register_all_modules
from .typing_utils import (ConfigType, ForwardResults, MultiConfig,
                           OptConfigType, OptMultiConfig, OptSampleList,
                           SampleList)

__all__ = [
    'register_all_modules', 'ConfigType', 'ForwardResults', 'MultiConfig',
    'OptConfigType', 'OptMultiConfig', 'OptSampleList', 'SampleList'
]
