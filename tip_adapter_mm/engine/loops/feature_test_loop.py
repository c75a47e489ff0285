import copy
from typing import Dict, List, Union

from mmengine.runner import TestLoop
from mmpretrain.registry import LOOPS

from ..hooks.build_cache_hook import find_cache_hook, split_features


@LOOPS.register_module()
class FeatureTestLoop(TestLoop):
    """mmengine's test loop on the CLIP features of the test split, each image encoded once.

    The configured test dataset is read as a :class:`~tip_adapter_mm.datasets.FeatureBankDataset` of one
    view per image: before the loop runs, its features are taken from the run (the cache hook already encoded
    them, e.g. for a test-split protocol) or from the feature store (``cfg.feature_store``), and only the
    images the store lacks are decoded and encoded (split across ranks, written to the store). The loop then
    is mmengine's: the same hooks, sampler, model ``test_step`` (the backbone passes stored features
    through), evaluator and metrics as on images.

    Args:
        runner: the runner.
        dataloader (dict): the test dataloader config (its dataset: the image test split).
        evaluator: as for mmengine's ``TestLoop``.
        fp16 (bool): as for mmengine's ``TestLoop``.
    """

    def __init__(self, runner, dataloader: Union[Dict, object], evaluator: Union[Dict, List, object],
                 fp16: bool = False):
        if isinstance(dataloader, dict):
            dataloader = copy.deepcopy(dataloader)
            dataloader['dataset'] = dict(type='FeatureBankDataset', dataset=dataloader['dataset'])
            dataloader['num_workers'], dataloader['persistent_workers'] = 0, False  # features are in memory
        super().__init__(runner, dataloader, evaluator, fp16)

    def run(self) -> dict:
        bank = self.dataloader.dataset
        if getattr(bank, 'features', 1) is None:
            hook = find_cache_hook(self.runner, required=False)
            found = hook.raw_features(self.runner, 'test') if hook is not None else \
                split_features(self.runner, 'test')
            if found is None:
                raise ValueError('the test split is empty: nothing to evaluate')
            bank.set_features(*found)
        return super().run()
