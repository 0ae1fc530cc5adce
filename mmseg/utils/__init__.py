from .setup_env import register_all_modules
from .typing_utils import (ConfigType, ForwardResults, MultiConfig,
                           OptConfigType, OptMultiConfig, OptSampleList,
                           SampleList)

__all__ = [
    'register_all_modules', 'ConfigType', 'ForwardResults', 'MultiConfig',
    'OptConfigType', 'OptMultiConfig', 'OptSampleList', 'SampleList'
]
