import itertools

from mmengine.registry import DefaultScope

_scope_ids = itertools.count()


def register_all_modules(init_default_scope: bool = True) -> None:
    """Import every module that registers something in the ``mmseg`` scope.

    Args:
        init_default_scope: make ``mmseg`` the current default scope, so that
            configs without ``default_scope`` still build our modules.
    """
    import mmseg.datasets  # noqa: F401
    import mmseg.engine  # noqa: F401
    import mmseg.evaluation  # noqa: F401
    import mmseg.models  # noqa: F401
    import mmseg.structures  # noqa: F401
    import mmseg.visualization  # noqa: F401

    if not init_default_scope:
        return
    current = DefaultScope.get_current_instance()
    if current is None or current.scope_name != 'mmseg':
        # instance names are global and immutable: each switch needs a new one
        DefaultScope.get_instance(
            f'mmseg-{next(_scope_ids)}', scope_name='mmseg')
