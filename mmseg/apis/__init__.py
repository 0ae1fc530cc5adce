from .cpu_allocator import keep_freed_memory
from .inference import inference_model, init_model
from .inferencer import Inferencer

__all__ = ['init_model', 'inference_model', 'Inferencer', 'keep_freed_memory']
