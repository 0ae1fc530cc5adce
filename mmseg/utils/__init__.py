from .cpu_allocator import keep_freed_memory
from .setup_env import register_all_modules
from .typing_utils import (ConfigType, ForwardResults, MultiConfig,
                           OptConfigType, OptMultiConfig, OptSampleList,
                           SampleList)

__all__ = [
    'keep_freed_memory', 'register_all_modules', 'ConfigType', 'ForwardResults', 'MultiConfig',
    'OptConfigType', 'OptMultiConfig', 'OptSampleList', 'SampleList'
]
