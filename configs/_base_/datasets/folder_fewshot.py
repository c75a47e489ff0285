# Your own images, few-shot: <data_root>/{train,val,test}/<class folder>/<image>. The validation folder is optional:
# without it the validation split (min(K, 4) images per class, for alpha/beta and the epoch) is held out of the
# train images, seeded and disjoint from the few-shot sample. The class names are the folder names, or give them in
# each dataset as classnames=dict(<folder>='<name>', ...) (every folder exactly once: a mismatch is an error listing
# both); the prompts are CLIP's generic 'a photo of a {}.'. results.json names the dataset after the data root's folder.
# The class count is counted from the train folders (num_classes = None; set it to check it: a wrong count is an
# error naming both). A config for your data (the README's "Your own images"), e.g. configs/flowers_tip.py:
#     _base_ = ['./tip_folder_16shot.py']
#     data_root = 'data/flowers'
#     train_dataloader = dict(dataset=dict(data_root=data_root))
#     val_dataloader = dict(dataset=dict(data_root=data_root))
#     test_dataloader = dict(dataset=dict(data_root=data_root))
_base_ = ['./fewshot_224.py']
dataset_name = None  # the data root's folder name
data_root = 'data/my_dataset'
num_classes = None  # counted from the train split's class folders (or set it: a wrong count is an error)
templates = ['a photo of a {}.']
init_alpha = 1.
init_beta = 1.
search_scale = [7, 3]  # the CoOp datasets' default grid
hp_selection = 'full_val'  # the validation split (held out of train without a val folder)
split_dirs = dict(train='train', val='val', test='test')
short_classes = 'error'  # a class with fewer than K train images: 'error', 'keep_all' or 'replace'
train_dataloader = dict(dataset=dict(type='FewShotImageFolder', data_root=data_root,
                                     templates=templates, split_dirs=split_dirs, short_classes=short_classes))
val_dataloader = dict(dataset=dict(type='FewShotImageFolder', data_root=data_root,
                                   templates=templates, split_dirs=split_dirs, short_classes=short_classes))
test_dataloader = dict(dataset=dict(type='FewShotImageFolder', data_root=data_root,
                                    templates=templates, split_dirs=split_dirs, short_classes=short_classes))
# top-1 and top-5 over all classes (top-k with k >= the class count, always 100 %, is left out)
val_evaluator = dict(_delete_=True, type='BaseNovelAccuracy', topk=(1, 5))
test_evaluator = dict(_delete_=True, type='BaseNovelAccuracy', topk=(1, 5))
