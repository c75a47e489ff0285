"""The Python API on features (issue 12): Tip-Adapter, zero-shot CLIP and Meta-Adapter without a runner give the
results of the runs on the demo, and their files round-trip."""
import pytest
import torch

from conftest import run_checkpoint, run_config
from tip_adapter_mm.apis import MetaAdapter, TipAdapter, load, zero_shot_weights
from tip_adapter_mm.utils.checkpoint import safe_load


def _run_features(work_dir):
    """(config, model, head state, {split: (raw features [N, D], labels)}) of a demo run, the features encoded
    here by the run's own model and test pipeline."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS, MODELS

    from tip_adapter_mm.engine.features import extract_features
    cfg = Config.fromfile(run_config(work_dir))
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg.model)
    state = safe_load(run_checkpoint(work_dir))
    head = {k[len('head.'):]: v for k, v in state['state_dict'].items() if k.startswith('head.')}
    feats = {}
    for split in ('val', 'test'):
        dataset = DATASETS.build(cfg[f'{split}_dataloader'].dataset)
        f, labels, _ = extract_features(model, dataset)
        feats[split] = (f[0], labels)
    return cfg, model, state, head, feats


def _top1(adapter, feats):
    f, labels = feats
    return 100. * (adapter.predict(f) == labels).float().mean().item()


@pytest.mark.slow
def test_tip_adapter_on_features_reproduces_the_run(tip_run, tmp_path):
    """The search on the run's validation features picks the run's alpha and beta; test top-1 is the run's; the
    zero-shot weights are the run's text classifier; save -> load keeps the logits."""
    from mmpretrain.registry import DATASETS
    work_dir, res = tip_run[:2]
    cfg, model, state, head, feats = _run_features(work_dir)
    meta = state['meta']['dataset_meta']
    text = zero_shot_weights(meta['classes'], meta['templates'], backbone=model.backbone)
    assert torch.equal(text, head['clip_weights'])
    tip = TipAdapter(text, head['cache_keys'], head['cache_labels'], classes=meta['classes'])
    beta, alpha, top1 = tip.search(*feats['val'], search_scale=cfg.search_scale)
    from tip_adapter_mm.engine.hooks.results_hook import rounded  # results.json: 6 significant digits
    assert rounded([alpha, beta]) == [res['alpha'], res['beta']] and abs(top1 - res['val_top1']) < 1e-4
    assert abs(_top1(tip, feats['test']) - res['test_top1']) < 1e-4
    zero = TipAdapter(text)
    assert zero.method == 'Zero-shot CLIP' and _top1(zero, feats['test']) < _top1(tip, feats['test'])
    # images: encoded as the run encodes its test images, they give the same predictions as the features
    from tip_adapter_mm.apis import encode_images
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    paths = [dataset.get_data_info(i)['img_path'] for i in range(0, len(dataset), 25)]
    images = encode_images(cfg, paths)
    assert torch.equal(images, feats['test'][0][::25])
    assert torch.equal(tip.predict(images), tip.predict(feats['test'][0][::25]))
    path = str(tmp_path / 'tip.safetensors')
    tip.save(path)
    again = load(path)
    assert isinstance(again, TipAdapter) and again.classes == tuple(meta['classes'])
    assert torch.equal(again.logits(feats['test'][0]), tip.logits(feats['test'][0]))
    with pytest.raises(FileExistsError):
        tip.save(path)
    with pytest.raises(ValueError, match='MetaAdapter loads MetaAdapterHead files'):
        MetaAdapter.load(path)


@pytest.mark.slow
def test_meta_adapter_on_features_reproduces_the_run(meta_run, tmp_path):
    """An exported Meta-Adapter run classifies the run's test features as the run did; applied to a subset of
    the classes with their own supports (online, no gradient step) it gives that subset's refined weights."""
    from tip_adapter_mm.apis import export_adapter
    work_dir, res = meta_run[:2]
    _, _, state, head, feats = _run_features(work_dir)
    path = str(tmp_path / 'meta.safetensors')
    export_adapter(run_checkpoint(work_dir), path)
    meta = load(path)
    assert isinstance(meta, MetaAdapter) and meta.num_classes == 10
    assert abs(_top1(meta, feats['test']) - res['test_top1']) < 1e-4
    for key, value in meta.adapter_state().items():
        assert torch.equal(value, head[key])
    subset = [7, 8, 9]  # the novel digits alone
    novel = MetaAdapter(meta.adapter_state(), head['clip_weights'][subset], head['support'][subset])
    f, labels = feats['test']
    keep = labels >= 7
    logits = novel.logits(f[keep])
    assert logits.shape == (int(keep.sum()), 3)
    # the refined weight of a class depends on its own text and supports only: the subset's logits are the
    # columns of the full model's
    assert torch.allclose(logits, meta.logits(f[keep])[:, subset], atol=1e-4)
    saved = str(tmp_path / 'novel.safetensors')
    novel.save(saved)
    assert torch.equal(MetaAdapter.load(saved).logits(f[keep]), logits)


def test_fit_searches_on_validation_features():
    """fit() on separable synthetic features: the cache from averaged views, the search raises validation
    accuracy above zero-shot, and without validation features alpha and beta stay as given."""
    g = torch.Generator().manual_seed(0)
    centers = torch.nn.functional.normalize(torch.randn(4, 16, generator=g), dim=-1)
    text = torch.nn.functional.normalize(centers + 0.9 * torch.randn(4, 16, generator=g), dim=-1)

    def sample(n):
        labels = torch.arange(4).repeat_interleave(n)
        return centers[labels] + 0.3 * torch.randn(len(labels), 16, generator=g), labels

    views = torch.stack([sample(8)[0] for _ in range(3)])  # 3 views of 32 images
    labels = torch.arange(4).repeat_interleave(8)
    val, val_labels = sample(20)
    zero = TipAdapter(text)
    tip = TipAdapter.fit(text, views, labels, val, val_labels, search_scale=(7, 3), search_step=(20, 10))
    assert _top1(tip, (val, val_labels)) > _top1(zero, (val, val_labels))
    kept = TipAdapter.fit(text, views, labels, alpha=2., beta=3.)
    assert (kept.alpha, kept.beta) == (2., 3.)
    assert torch.allclose(kept.head.cache_keys.norm(dim=-1), torch.ones(32))
    with pytest.raises(ValueError, match=r'must have shape \[N, 16\]'):
        tip.predict(torch.zeros(3, 8))
    with pytest.raises(ValueError, match='no alpha or beta'):
        zero.search(val, val_labels)


@pytest.mark.slow
def test_tip_adapter_f_on_features(tip_run):
    """finetune() on the cache images' augmented views (encoded as the run encodes them): the keys move, the
    kept epoch is the best on validation, and Tip-Adapter-F beats the training-free adapter on validation."""
    from mmpretrain.registry import DATASETS

    from tip_adapter_mm.engine.features import extract_features
    work_dir, res = tip_run[:2]
    cfg, model, _, head, feats = _run_features(work_dir)
    train = DATASETS.build(cfg.train_dataloader.dataset)
    views, labels, _ = extract_features(model, train, num_views=10, seed=cfg.fewshot_seed)
    tip = TipAdapter(head['clip_weights'], head['cache_keys'], head['cache_labels'])
    assert torch.equal(labels, head['cache_labels'])
    before = tip.search(*feats['val'], search_scale=cfg.search_scale)[2]
    out = tip.finetune(views, labels, *feats['val'], search_scale=cfg.search_scale, seed=1)
    history = out['epoch_top1']
    assert len(history) == 20 and out['selected_epoch'] == max(i for i, v in enumerate(history)
                                                               if v == max(history)) + 1
    assert out['val_top1'] > before and tip.method == 'Tip-Adapter-F'
    assert not torch.equal(tip.head.cache_keys.detach(), head['cache_keys'])
