# ImageNet, few-shot: data/imagenet/train/<wnid>/*.JPEG and data/imagenet/val/<wnid>/*.JPEG, or CoOp's layout
# data/imagenet/images/{train,val}/<wnid>/*.JPEG + classnames.txt (detected; the same sampled lists).
# The cache is K images per class from train; the validation split (for alpha/beta) is held out of the
# remaining train images (min(K, 4) per class); the test split is the 50k ILSVRC val images.
_base_ = ['./fewshot_224.py']
dataset_name = 'imagenet'
data_root = 'data/imagenet'
# what alpha/beta (and Tip-Adapter-F's epoch) are chosen on: ImageNet has no validation split, so its
# validation images are held out of train, min(K, 4) per class ('legacy_test': the official test tuning)
hp_selection = 'fewshot_val'
# the official settings (configs/imagenet.yaml); the method configs put them into the head and the loop
num_classes = 1000
init_alpha = 1.17
init_beta = 1.
search_scale = [7, 3]

split_dirs = dict(train='train', val=None, test='val')
train_dataloader = dict(dataset=dict(type='FewShotImageFolder', data_root=data_root, classnames='imagenet',
                                     templates='imagenet', split_dirs=split_dirs))
val_dataloader = dict(dataset=dict(type='FewShotImageFolder', data_root=data_root, classnames='imagenet',
                                   templates='imagenet', split_dirs=split_dirs))
test_dataloader = dict(dataset=dict(type='FewShotImageFolder', data_root=data_root, classnames='imagenet',
                                    templates='imagenet', split_dirs=split_dirs))
