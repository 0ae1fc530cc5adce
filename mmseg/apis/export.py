"""Export of a segmentor to ONNX or a ``torch.export`` program, checked
against PyTorch.

The exported network maps the normalised image (``1 x 3 x H x W``, what
``encode_decode`` takes, i.e. after the data preprocessor's mean/std and
BGR->RGB) to the scores at the same size (``1 x K x H x W``; for SenFormer
the ensemble, the sum of the learners' softmax maps). Resizing, padding,
sliding windows and test-time augmentation stay outside, as in
MMSegmentation's deployments.

The CPU key-block attention kernels and the custom autograd functions are
for eager PyTorch; the export traces the plain computation instead (under
``torch.no_grad`` and the ``reference`` implementation of
:mod:`mmseg.models.ops`), so the exported graph holds only standard
operators. The check compares it with the eager model
on its fast path.
"""
import contextlib
import io
import os.path as osp
from typing import Callable, Iterator, List, NamedTuple, Optional, Tuple

import torch
import torch.nn as nn

#: the share of pixels whose arg-max must agree with PyTorch
MIN_ARGMAX_AGREEMENT = 0.999
FORMATS = ('onnx', 'exported-program')


class ExportError(RuntimeError):
    """The model could not be exported, or the exported model disagrees
    with PyTorch."""


class ExportCheck(NamedTuple):
    """How the exported model's scores compare with PyTorch's."""
    max_abs_diff: float
    argmax_agreement: float  # share of pixels with the same arg-max
    shape: Tuple[int, ...]

    @property
    def passed(self) -> bool:
        return self.argmax_agreement >= MIN_ARGMAX_AGREEMENT


class ScoresFromImage(nn.Module):
    """A segmentor as ``normalised image -> scores`` at the image size.

    Args:
        segmentor: an :class:`~mmseg.models.segmentors.EncoderDecoder`.
    """

    def __init__(self, segmentor: nn.Module):
        super().__init__()
        self.segmentor = segmentor

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        shape = tuple(inputs.shape[2:])
        metas = [
            dict(
                ori_shape=shape,
                img_shape=shape,
                batch_input_shape=shape,
                padding_size=(0, 0, 0, 0))
        ] * inputs.shape[0]
        return self.segmentor.encode_decode(inputs, metas)


def distinct_class_queries(model: nn.Module) -> None:
    """Random SenFormer weights give every class almost the same score (the
    class queries start at std 0.02 and the blocks' shared terms swamp
    them), so comparing arg-maxes would compare ties: draw the queries
    with std 1, which makes the classes differ. For checks of an exported
    or compiled model without a checkpoint; it changes no cost."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.rsplit('.', 1)[-1] == 'queries':
                param.copy_(torch.randn(param.shape, generator=generator))


@contextlib.contextmanager
def plain_path() -> Iterator[None]:
    """Context in which the model runs only standard operators: no
    autograd (so no custom autograd function or saved-tensor hook) and the
    reference operations instead of the CPU kernels."""
    from mmseg.models import ops
    with torch.no_grad(), ops.implementation('reference'):
        yield


def _dynamic_shapes(dynamic: bool, export_size: Tuple[int, int]):
    if not dynamic:
        return None
    from torch.export import Dim

    # backbones down-sample by 32 at most: sizes that are multiples of 32
    # keep every stage's size an integer expression of the input's
    height = 32 * Dim('h32', min=1, max=4096 // 32)
    width = 32 * Dim('w32', min=1, max=4096 // 32)
    if export_size[0] % 32 or export_size[1] % 32:
        raise ExportError(
            f'--dynamic needs a --shape that is a multiple of 32, got '
            f'{export_size[0]} x {export_size[1]}')
    return ({2: height, 3: width}, )


def _compare(reference: torch.Tensor, exported: torch.Tensor) -> ExportCheck:
    if tuple(exported.shape) != tuple(reference.shape):
        raise ExportError(
            f'the exported model gives scores of shape '
            f'{tuple(exported.shape)}, PyTorch {tuple(reference.shape)}')
    diff = (exported.float() - reference.float()).abs().max().item()
    same = (exported.argmax(dim=1) == reference.argmax(dim=1)).float()
    return ExportCheck(diff, same.mean().item(), tuple(reference.shape))


def _export_program(network: nn.Module, example: torch.Tensor,
                    dynamic: bool) -> Tuple[bytes, Callable]:
    """Serialised ``torch.export`` program and a runner of its reloaded
    copy."""
    with plain_path():
        program = torch.export.export(
            network, (example, ),
            dynamic_shapes=_dynamic_shapes(dynamic, example.shape[2:]))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    data = buffer.getvalue()
    reloaded = torch.export.load(io.BytesIO(data)).module()

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return reloaded(x)

    return data, run


def _require(module: str, purpose: str):
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ExportError(
            f'{purpose} needs the package {module!r}, which is not '
            f'installed: pip install {module}') from e


def _export_onnx(network: nn.Module, example: torch.Tensor,
                 dynamic: bool) -> Tuple[bytes, Optional[Callable]]:
    """Serialised ONNX model and, when onnxruntime is installed, a runner
    of it (None otherwise)."""
    _require('onnx', 'ONNX export')
    _require('onnxscript', 'ONNX export (torch.onnx with dynamo=True)')
    with plain_path():
        program = torch.onnx.export(
            network, (example, ),
            dynamo=True,
            input_names=['inputs'],
            output_names=['scores'],
            dynamic_shapes=_dynamic_shapes(dynamic, example.shape[2:]),
            verbose=False)
    if program is None:
        raise ExportError('torch.onnx.export returned no ONNX program')
    data = program.model_proto.SerializeToString()
    try:
        import onnxruntime
    except ImportError:
        return data, None
    session = onnxruntime.InferenceSession(
        data, providers=['CPUExecutionProvider'])

    def run(x: torch.Tensor) -> torch.Tensor:
        (scores, ) = session.run(['scores'], {'inputs': x.numpy()})
        return torch.from_numpy(scores)

    return data, run


def export_model(segmentor: nn.Module,
                 out: str,
                 fmt: str,
                 shape: Tuple[int, int],
                 dynamic: bool = False,
                 check: bool = True,
                 seed: int = 0) -> List[ExportCheck]:
    """Export ``segmentor`` (on the CPU, in eval mode) and check it.

    Args:
        segmentor: the model, e.g. from :func:`~mmseg.apis.init_model`.
        out: the file to write (atomically, and only once the check passed).
        fmt: ``'onnx'`` or ``'exported-program'`` (``torch.export.save``).
        shape: ``(H, W)`` of the example input.
        dynamic: let height and width vary (multiples of 32).
        check: run the exported model on a random image and compare.
        seed: of the random images.

    Returns:
        The comparisons: at ``shape`` and, when ``dynamic``, at a second
        size; none when ``check=False`` or for ONNX without onnxruntime.

    Raises:
        ExportError: the export failed, or the exported model's arg-max
            agrees with PyTorch's on less than 99.9 % of the pixels (the
            file is then not written).
    """
    from mmseg.engine import atomic_write

    if fmt not in FORMATS:
        raise ExportError(f'unknown export format {fmt!r}; choose from '
                          f'{", ".join(FORMATS)}')
    network = ScoresFromImage(segmentor).eval()
    generator = torch.Generator().manual_seed(seed)
    example = torch.randn(1, 3, *shape, generator=generator)
    exporter = _export_onnx if fmt == 'onnx' else _export_program
    try:
        data, run = exporter(network, example, dynamic)
    except ExportError:
        raise
    except Exception as e:
        first = (str(e).strip().splitlines() or [''])[0]
        raise ExportError(
            f'{fmt} export of {type(segmentor).__name__} at '
            f'{shape[0]} x {shape[1]}' + (' (dynamic)' if dynamic else '') +
            f' failed: {type(e).__name__}: {first}') from e

    checks = []
    if check and run is not None:
        # fresh images, not the one traced; a dynamic model also at another
        # size than the traced one
        shapes = [tuple(shape)]
        if dynamic:
            shapes.append((shape[0] + 32, shape[1] + 64))
        for size in shapes:
            image = torch.randn(1, 3, *size, generator=generator)
            with torch.no_grad():
                reference = network(image)
            try:
                exported = run(image)
            except Exception as e:
                first = (str(e).strip().splitlines() or [''])[0]
                raise ExportError(
                    f'the exported model does not run at {size[0]} x '
                    f'{size[1]} ({type(e).__name__}: {first}): the trace '
                    'fixed a size-dependent step (for SenFormer the number '
                    'of attention windows of the FPNT and Swin blocks), so '
                    'it only runs at sizes like the traced one; export '
                    f'without --dynamic at the size you need; {out} not '
                    'written') from e
            result = _compare(reference, exported)
            checks.append(result)
            if not result.passed:
                raise ExportError(
                    f'the exported model disagrees with PyTorch at '
                    f'{size[0]} x {size[1]}: arg-max equal on '
                    f'{100 * result.argmax_agreement:.2f} % of the pixels '
                    f'(needs {100 * MIN_ARGMAX_AGREEMENT:.1f} %), max abs '
                    f'difference {result.max_abs_diff:.3g}; {out} not '
                    'written')
    atomic_write(osp.abspath(out), lambda f: f.write(data))
    return checks
