from .fewshot_runner import FewShotRunner, prepare_config, resolve_config
from .preflight import check_checkpoint, preflight

__all__ = ['FewShotRunner', 'prepare_config', 'resolve_config', 'preflight', 'check_checkpoint']
